//! The pre-traffic test gate: invoke one deployment directly, as `az ml online-endpoint invoke
//! --deployment-name D` does ([AML §5]): GET the endpoint for scoringUri and authMode, get
//! the credential for that mode, POST the request with `azureml-model-deployment: D`.

use std::time::Duration;
use tokio::time::Instant;

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use url::Url;

use super::auth::{ML_SCOPE, Secret};
use super::client::ArmClient;
use super::error::AzureMlError;
use super::loopback::is_loopback_http;
use super::mapping::auth_mode_from_arm;
use flightdeck_core::model::{AuthMode, TestRequest, TestSpec};
use flightdeck_core::retry::{Verdict, retry};
use flightdeck_core::smoke::{self, Answer, SmokeError};

/// Data-plane statuses worth another try: the deployment may still be warming up.
fn transient(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// One test request that did not give an answer to judge.
enum Try {
    /// A warming-up status (with the answer's body, `Retry-After` and how long it took):
    /// tried again.
    Busy(u16, String, Option<Duration>, Duration),
    /// No answer within the request timeout: not tried again.
    Hung,
    /// Connect or read failed: tried again.
    Unreachable(String),
}

impl Try {
    fn verdict(&self) -> Verdict {
        match self {
            Try::Busy(_, _, Some(after), _) => Verdict::RetryAfter(*after),
            Try::Busy(..) | Try::Unreachable(_) => Verdict::Retry,
            Try::Hung => Verdict::GiveUp,
        }
    }
}

/// Where an endpoint is invoked and how, as last seen in one of its bodies (the live read, or
/// the answer to this process's own write of it). The test step uses it instead of a GET of
/// its own: the traffic step that follows reads the endpoint anyway, and two GETs for one
/// decision is what #13 item 5 forbids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Scoring {
    pub uri: String,
    pub mode: AuthMode,
}

impl Scoring {
    /// From an ARM endpoint body; `None` until the platform reports a scoring URI.
    pub fn of_body(body: &serde_json::Value) -> Option<Scoring> {
        let props = &body["properties"];
        let uri = props["scoringUri"].as_str().filter(|s| !s.is_empty())?;
        Some(Scoring {
            uri: uri.to_string(),
            mode: props["authMode"]
                .as_str()
                .and_then(auth_mode_from_arm)
                .unwrap_or(AuthMode::Key),
        })
    }

    /// From the live read of the endpoint.
    pub fn of_live(endpoint: &flightdeck_core::model::LiveEndpoint) -> Option<Scoring> {
        let uri = endpoint.scoring_uri.as_deref().filter(|s| !s.is_empty())?;
        Some(Scoring {
            uri: uri.to_string(),
            mode: endpoint.settings.auth_mode.unwrap_or(AuthMode::Key),
        })
    }
}

/// Runs the test; Ok carries a short detail for the report ("200 from green in 12ms").
/// `known` is the endpoint's scoring URI and auth mode when this process has seen them; without
/// it the endpoint is read first.
pub(crate) async fn run(
    client: &ArmClient,
    endpoint_url: &Url,
    known: Option<Scoring>,
    deployment: &str,
    test: &TestSpec,
    limit: Duration,
) -> Result<String, AzureMlError> {
    let scoring = match known {
        Some(known) => known,
        None => {
            let endpoint = client.get_resource(endpoint_url).await?;
            Scoring::of_body(&endpoint).ok_or_else(|| AzureMlError::Unexpected {
                what: "endpoint".into(),
                message: "no scoringUri yet".into(),
            })?
        }
    };
    let mode = scoring.mode;
    let scoring = Url::parse(&scoring.uri).map_err(|e| AzureMlError::Unexpected {
        what: "endpoint".into(),
        message: format!("scoringUri is not a URL: {e}"),
    })?;
    if scoring.scheme() != "https" && !is_loopback_http(&scoring) {
        return Err(AzureMlError::Unexpected {
            what: "endpoint".into(),
            message: format!("scoringUri {scoring} is plain http; not sending a credential to it"),
        });
    }
    let credential = scoring_credential(client, endpoint_url, mode).await?;
    invoke(client, &scoring, &credential, deployment, test, limit).await
}

/// Key → POST listKeys; AMLToken → POST token; AADToken → Entra token for ml.azure.com
/// ([AML §5]).
async fn scoring_credential(
    client: &ArmClient,
    endpoint_url: &Url,
    mode: AuthMode,
) -> Result<Secret, AzureMlError> {
    let action_url = |action: &str| {
        let mut url = endpoint_url.clone();
        url.path_segments_mut()
            .expect("ARM urls have paths")
            .push(action);
        url
    };
    let (url, field) = match mode {
        AuthMode::AadToken => return client.credential().token(ML_SCOPE).await,
        AuthMode::Key => (action_url("listKeys"), "primaryKey"),
        AuthMode::AmlToken => (action_url("token"), "accessToken"),
    };
    let body = client.call(Method::POST, &url, None).await?.json(field)?;
    body[field]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(Secret::new)
        .ok_or_else(|| AzureMlError::Unexpected {
            what: url.path().rsplit('/').next().unwrap_or("credential").into(),
            message: format!("response has no {field}"),
        })
}

async fn invoke(
    client: &ArmClient,
    scoring: &Url,
    credential: &Secret,
    deployment: &str,
    test: &TestSpec,
    limit: Duration,
) -> Result<String, AzureMlError> {
    let mut auth =
        HeaderValue::from_str(&format!("Bearer {}", credential.expose())).map_err(|_| {
            AzureMlError::TestFailed("the endpoint credential is not a valid header".into())
        })?;
    auth.set_sensitive(true);
    let timed_out = || {
        AzureMlError::RequestTimedOut(format!(
            "test of deployment {deployment} timed out after {} (pre-traffic request to {scoring})",
            humantime::format_duration(limit)
        ))
    };
    let send = |request: &TestRequest| {
        let body = request.body.clone();
        let auth = auth.clone();
        async move {
            let sent = retry(&client.retry, Try::verdict, |attempt| {
                let request = client
                    .http()
                    .post(scoring.clone())
                    .header(AUTHORIZATION, auth.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .header("azureml-model-deployment", deployment)
                    .body(body.clone())
                    .timeout(limit);
                async move {
                    let started = Instant::now();
                    let answer = match request.send().await {
                        Ok(resp) => {
                            let status = resp.status().as_u16();
                            let after = super::retry::retry_after(resp.headers());
                            resp.text().await.map(|text| (status, text, after))
                        }
                        Err(e) => Err(e),
                    };
                    let elapsed = started.elapsed();
                    tracing::debug!(
                        deployment,
                        status = answer.as_ref().map(|(s, _, _)| *s).unwrap_or(0),
                        attempt,
                        "test request"
                    );
                    match answer {
                        Ok((status, text, after)) if transient(status) => {
                            Err(Try::Busy(status, text, after, elapsed))
                        }
                        Ok((status, body, _)) => Ok(Answer {
                            status,
                            body,
                            elapsed,
                        }),
                        // A hung model server is not retried: it fails the test at once, naming the wait.
                        Err(e) if e.is_timeout() => Err(Try::Hung),
                        Err(e) => Err(Try::Unreachable(e.without_url().to_string())),
                    }
                }
            })
            .await;
            match sent {
                Ok(answer) => Ok(answer),
                // Still warming up after every try: judge the last answer.
                Err(Try::Busy(status, body, _, elapsed)) => Ok(Answer {
                    status,
                    body,
                    elapsed,
                }),
                Err(Try::Hung) => Err(timed_out()),
                Err(Try::Unreachable(message)) => Err(AzureMlError::TestFailed(format!(
                    "request to {} failed: {message}",
                    scoring.path()
                ))),
            }
        }
    };
    match smoke::run(test, deployment, send).await {
        Ok(detail) => Ok(detail),
        Err(SmokeError::Send(e)) => Err(e),
        Err(SmokeError::Failed(failure)) => Err(AzureMlError::TestFailed(
            format!("deployment {deployment}: {failure}").replace(credential.expose(), "***"),
        )),
    }
}
