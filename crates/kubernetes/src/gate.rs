//! The pre-traffic test: POST the test body straight to one version, through the API server's
//! service proxy (`/api/v1/namespaces/N/services/E-D:PORT/proxy/score`) or, when the target sets
//! `test_base_url`, to `{test_base_url}/E-D/score`.

use k8s_openapi::api::core::v1::Service;

use super::KubernetesBackend;
use super::objects::{service_port, version_name};
use super::ssa::{get_owned, kube_error};
use flightdeck_core::backend::{BackendError, StepDetail};
use flightdeck_core::model::TestSpec;

/// Longest part of a response body quoted in an error.
const BODY_EXCERPT: usize = 200;

/// Checks a response against the test's expectations.
pub fn judge(test: &TestSpec, status: u16, body: &str) -> Result<(), String> {
    let status_ok = match test.expect_status {
        Some(want) => status == want,
        None => (200..300).contains(&status),
    };
    let excerpt: String = body.chars().take(BODY_EXCERPT).collect();
    if !status_ok {
        let want = test
            .expect_status
            .map_or("a 2xx status".to_string(), |s| s.to_string());
        return Err(format!("got status {status}, expected {want}: {excerpt}"));
    }
    if let Some(needle) = &test.expect_body_contains
        && !body.contains(needle.as_str())
    {
        return Err(format!(
            "response body does not contain {needle:?}: {excerpt}"
        ));
    }
    Ok(())
}

impl KubernetesBackend {
    pub(super) async fn run_test(
        &self,
        subject: &str,
        e: &str,
        d: &str,
        test: &TestSpec,
    ) -> Result<StepDetail, BackendError> {
        let name = version_name(e, d);
        let (status, body, via) = match &self.target.test_base_url {
            Some(base) => self.post_direct(subject, base, &name, d, test).await?,
            None => self.post_via_proxy(subject, &name, test).await?,
        };
        judge(test, status, &body).map_err(|message| BackendError::TestFailed {
            subject: subject.to_string(),
            message: format!("POST {via}: {message}"),
        })?;
        Ok(StepDetail {
            detail: format!("{status} from {d}"),
        })
    }

    async fn post_via_proxy(
        &self,
        subject: &str,
        name: &str,
        test: &TestSpec,
    ) -> Result<(u16, String, String), BackendError> {
        let services: kube::Api<Service> = self.services();
        let Some(svc) = get_owned(&services, subject, name).await? else {
            return Err(BackendError::Platform {
                transient: false,
                source: None,
                subject: subject.to_string(),
                code: "NotFound".to_string(),
                message: format!("service {name} does not exist"),
            });
        };
        let port = service_port(&svc).unwrap_or(80);
        let path = format!(
            "/api/v1/namespaces/{}/services/{name}:{port}/proxy/score",
            self.ns()
        );
        let request = http::Request::post(&path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(kube::client::Body::from(
                test.request_body.clone().into_bytes(),
            ))
            .map_err(|err| {
                BackendError::transport(subject, err.to_string(), Some(Box::new(err)))
            })?;
        let response = self
            .client
            .send(request)
            .await
            .map_err(|err| kube_error(subject, &format!("POST {path}"), err))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect_bytes()
            .await
            .map_err(|err| kube_error(subject, &format!("POST {path}"), err))?;
        Ok((status, String::from_utf8_lossy(&bytes).into_owned(), path))
    }

    async fn post_direct(
        &self,
        subject: &str,
        base: &str,
        name: &str,
        deployment: &str,
        test: &TestSpec,
    ) -> Result<(u16, String, String), BackendError> {
        let url = format!("{}/{name}/score", base.trim_end_matches('/'));
        let limit = self.opts.test_request_timeout;
        let failed = |err: reqwest::Error| {
            if err.is_timeout() {
                BackendError::TimedOut {
                    subject: subject.to_string(),
                    message: format!(
                        "test of deployment {} timed out after {} (pre-traffic request to {url})",
                        deployment,
                        humantime::format_duration(limit)
                    ),
                }
            } else {
                BackendError::transport(subject, format!("POST {url}: {err}"), Some(Box::new(err)))
            }
        };
        let response = reqwest::Client::new()
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(test.request_body.clone())
            .timeout(limit)
            .send()
            .await
            .map_err(failed)?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(failed)?;
        Ok((status, body, url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test(expect_status: Option<u16>, contains: Option<&str>) -> TestSpec {
        TestSpec {
            request_file: "sample.json".into(),
            request_body: "{}".into(),
            expect_status,
            expect_body_contains: contains.map(str::to_string),
        }
    }

    #[test]
    fn any_2xx_passes_when_no_status_is_expected() {
        assert!(judge(&test(None, None), 204, "").is_ok());
        assert_eq!(
            judge(&test(None, None), 500, "boom").unwrap_err(),
            "got status 500, expected a 2xx status: boom"
        );
    }

    #[test]
    fn an_expected_status_and_body_substring_are_both_required() {
        assert!(judge(&test(Some(201), Some("score")), 201, "{\"score\":1}").is_ok());
        assert!(judge(&test(Some(201), None), 200, "").is_err());
        assert_eq!(
            judge(&test(None, Some("score")), 200, "{}").unwrap_err(),
            "response body does not contain \"score\": {}"
        );
    }
}
