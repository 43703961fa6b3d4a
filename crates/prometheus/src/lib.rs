//! The Prometheus metrics provider for rollout gates: one instant query
//! (`GET /api/v1/query?query=..&time=..`, [PROM P1]) per deployment and signal, evaluated at the
//! window's end over `[<window seconds>s]`, with the PromQL of [`QueryTemplates`] (the Istio
//! defaults of [PROM P10], each replaceable). Ground truth: the reference contract
//! `reference/prometheus/CONTRACT.md` (cited as `[PROM Pn]`).
//!
//! `template` renders the queries, `envelope` parses the answers (both pure); this file holds
//! the configuration and the HTTP side: an optional bearer token, never logged; 429 and 5xx
//! retried under the one retry policy with the server's `Retry-After`.

mod envelope;
mod error;
mod template;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::SecondsFormat;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use url::Url;

pub use error::PrometheusError;
pub use flightdeck_core::retry::RetryPolicy;
pub use flightdeck_core::secret::Secret;
pub use template::{PLACEHOLDERS, QueryTemplates, Vars};

use flightdeck_core::backend::BackendError;
use flightdeck_core::metrics::{MetricsProvider, MetricsRequest, Reading, Readings};
use flightdeck_core::retry::retry;

/// Where and how to query.
#[derive(Clone, Debug)]
pub struct PrometheusConfig {
    /// The server's base URL (`http://prometheus.istio-system:9090`, or a prefix such as
    /// `https://host/prometheus`); `/api/v1/query` is appended.
    pub url: Url,
    /// The value of `{namespace}` in templates (the Kubernetes target's namespace).
    pub namespace: String,
    pub templates: QueryTemplates,
    /// Sent as `Authorization: Bearer <token>` when set (managed Prometheus, [PROM P6]).
    /// Never logged: `Secret` prints `***`.
    pub bearer_token: Option<Secret>,
    /// Longest one query may go unanswered. Default 30 s.
    pub request_timeout: Duration,
    /// Retries of 429 / 5xx answers and lost connections.
    pub retry: RetryPolicy,
}

impl PrometheusConfig {
    /// The defaults: Istio templates, no token, 30 s per request, the default retry policy.
    pub fn new(url: Url, namespace: impl Into<String>) -> PrometheusConfig {
        PrometheusConfig {
            url,
            namespace: namespace.into(),
            templates: QueryTemplates::default(),
            bearer_token: None,
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

pub struct PrometheusProvider {
    http: reqwest::Client,
    query_url: Url,
    namespace: String,
    templates: QueryTemplates,
    bearer_token: Option<Secret>,
    retry: RetryPolicy,
}

impl PrometheusProvider {
    /// Checks the URL and the templates; sends nothing.
    pub fn new(config: PrometheusConfig) -> Result<PrometheusProvider, PrometheusError> {
        if !matches!(config.url.scheme(), "http" | "https") || config.url.cannot_be_a_base() {
            return Err(PrometheusError::Config(format!(
                "prometheus URL {} must be an http(s) URL",
                config.url
            )));
        }
        if config.url.query().is_some() || !config.url.username().is_empty() {
            return Err(PrometheusError::Config(
                "prometheus URL must carry no query string and no credentials (use the bearer token)"
                    .into(),
            ));
        }
        check_value("namespace", &config.namespace)?;
        config.templates.validate()?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10).min(config.request_timeout))
            .timeout(config.request_timeout)
            // A redirect would carry the bearer token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| PrometheusError::Config(format!("http client: {e}")))?;
        let mut query_url = config.url.clone();
        query_url
            .path_segments_mut()
            .expect("checked: a base URL")
            .pop_if_empty()
            .extend(["api", "v1", "query"]);
        Ok(PrometheusProvider {
            http,
            query_url,
            namespace: config.namespace,
            templates: config.templates,
            bearer_token: config.bearer_token,
            retry: config.retry,
        })
    }

    /// One instant query at `time`, under the retry policy.
    async fn instant(&self, promql: &str, time: &str) -> Result<envelope::Answer, PrometheusError> {
        let mut url = self.query_url.clone();
        url.query_pairs_mut()
            .append_pair("query", promql)
            .append_pair("time", time);
        retry(&self.retry, PrometheusError::verdict, |attempt| {
            let url = url.clone();
            async move {
                let mut request = self.http.get(url.clone());
                if let Some(token) = &self.bearer_token {
                    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                        .map_err(|_| {
                            PrometheusError::Config(
                                "bearer token contains characters not allowed in a header".into(),
                            )
                        })?;
                    value.set_sensitive(true);
                    request = request.header(AUTHORIZATION, value);
                }
                let transport = |e: reqwest::Error| {
                    let e = e.without_url();
                    PrometheusError::Transport {
                        path: url.path().to_string(),
                        message: e.to_string(),
                        source: e,
                    }
                };
                let response = request.send().await.map_err(transport)?;
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let body = response.bytes().await.map_err(transport)?;
                tracing::debug!(path = url.path(), status, attempt, "prometheus query");
                envelope::parse(status, retry_after, &body, promql)
            }
        })
        .await
    }
}

/// Names go into PromQL strings (escaped) and error messages: no control characters.
fn check_value(what: &str, value: &str) -> Result<(), PrometheusError> {
    if value.trim().is_empty() || value.chars().any(char::is_control) {
        return Err(PrometheusError::Config(format!(
            "{what} {value:?} must be non-empty without control characters"
        )));
    }
    Ok(())
}

#[async_trait]
impl MetricsProvider for PrometheusProvider {
    fn name(&self) -> &'static str {
        "prometheus"
    }

    async fn read(&self, request: &MetricsRequest) -> Result<Readings, BackendError> {
        let endpoint_subject = format!("endpoint {}: metrics", request.endpoint);
        check_value("endpoint", &request.endpoint)
            .map_err(|e| e.into_backend(&endpoint_subject))?;
        let w = request.window;
        let seconds = (w.end - w.start).num_seconds();
        if seconds < 1 {
            return Err(PrometheusError::Config(format!(
                "metrics window {} .. {} is shorter than 1s",
                w.start, w.end
            ))
            .into_backend(&endpoint_subject));
        }
        let window = template::window_duration(seconds);
        let time = w.end.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        let mut readings: Readings = BTreeMap::new();
        for deployment in &request.deployments {
            let subject = format!("endpoint {}: deployment {deployment}", request.endpoint);
            check_value("deployment", deployment).map_err(|e| e.into_backend(&subject))?;
            let vars = Vars {
                endpoint: &request.endpoint,
                deployment,
                namespace: &self.namespace,
                window: &window,
            };
            let mut by_signal = BTreeMap::new();
            for &signal in &request.signals {
                let query = self.templates.render(signal, &vars);
                let answer = self
                    .instant(&query, &time)
                    .await
                    .map_err(|e| e.into_backend(&format!("{subject}: {signal}")))?;
                for warning in &answer.warnings {
                    tracing::warn!(
                        endpoint = %request.endpoint,
                        deployment = %deployment,
                        signal = %signal,
                        warning = %warning,
                        "prometheus warned about a gate query"
                    );
                }
                by_signal.insert(
                    signal,
                    Reading {
                        value: answer.value,
                        query,
                        window: w,
                    },
                );
            }
            readings.insert(deployment.clone(), by_signal);
        }
        Ok(readings)
    }
}
