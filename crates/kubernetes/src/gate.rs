//! The pre-traffic test: POST the test body straight to one version, through the API server's
//! service proxy (`/api/v1/namespaces/N/services/E-D:PORT/proxy/score`) or, when the target sets
//! `test_base_url`, to `{test_base_url}/E-D/score`. What an answer must be, and the retries,
//! are `flightdeck_core::smoke`'s.

use k8s_openapi::api::core::v1::Service;

use super::KubernetesBackend;
use super::objects::{service_port, version_name};
use super::ssa::{get_owned, kube_error};
use flightdeck_core::backend::{BackendError, StepDetail};
use flightdeck_core::model::{TestRequest, TestSpec};
use flightdeck_core::smoke::{self, Answer, SmokeError};

impl KubernetesBackend {
    pub(super) async fn run_test(
        &self,
        subject: &str,
        e: &str,
        d: &str,
        test: &TestSpec,
    ) -> Result<StepDetail, BackendError> {
        let name = version_name(e, d);
        let via = std::sync::Mutex::new(String::new());
        let send = |request: &TestRequest| {
            let body = request.body.clone();
            let (name, via) = (&name, &via);
            async move {
                let started = tokio::time::Instant::now();
                let (status, body, path) = match &self.target.test_base_url {
                    Some(base) => self.post_direct(subject, base, name, d, body).await?,
                    None => self.post_via_proxy(subject, name, body).await?,
                };
                *via.lock().expect("not poisoned") = path;
                Ok::<_, BackendError>(Answer {
                    status,
                    body,
                    elapsed: started.elapsed(),
                })
            }
        };
        match smoke::run(test, d, send).await {
            Ok(detail) => Ok(StepDetail { detail }),
            Err(SmokeError::Send(e)) => Err(e),
            Err(SmokeError::Failed(failure)) => Err(BackendError::TestFailed {
                subject: subject.to_string(),
                message: format!("POST {}: {failure}", via.lock().expect("not poisoned")),
            }),
        }
    }

    async fn post_via_proxy(
        &self,
        subject: &str,
        name: &str,
        body: String,
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
            .body(kube::client::Body::from(body.into_bytes()))
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
        body: String,
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
            .body(body)
            .timeout(limit)
            .send()
            .await
            .map_err(failed)?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(failed)?;
        Ok((status, body, url))
    }
}
