//! The Azure Monitor metrics provider for rollout gates: the metrics REST API (api-version
//! 2023-10-01) on the online endpoint resource, through the crate's ARM client (its token
//! source, the 401 refresh, the one retry policy and the error mapping to `BackendError`).
//!
//! Per read, at most three requests ([MON §5]):
//! - once per endpoint, `metricDefinitions`, for each metric's grain (the smallest
//!   `metricAvailabilities[].timeGrain`, [MON R2], [MON R17]); cached for the process;
//! - `RequestsPerMinute` split by `deployment eq 'a' or deployment eq 'b' and statusCodeClass
//!   eq '*'` with `aggregation=Total,Count,Average` for requests and the error rate;
//! - `RequestLatency_P95` / `_P99` (`Average`), split by deployment, for latency.
//!
//! Both send `ValidateDimensions=false`: a deployment that has not served yet is no series,
//! not a 400 [MON R22]. Buckets that end later than now − `ingestion_delay` are not counted
//! and the reading's window says so [MON R18]. The bucket arithmetic is in `series` (pure).

mod series;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Method;
use url::Url;

use super::auth::{TokenSource, arm_scope};
use super::client::ArmClient;
use super::error::AzureMlError;
use super::{DEFAULT_ARM_ENDPOINT, check_name, check_target, iso};
use flightdeck_core::backend::BackendError;
use flightdeck_core::metrics::{
    MetricsProvider, MetricsRequest, Reading, Readings, Signal, Window,
};
use flightdeck_core::model::AzureMlTarget;
use flightdeck_core::retry::RetryPolicy;
use series::{Evaluated, MetricsResponse};

/// The Azure Monitor metrics api-version this provider speaks [MON §0].
pub const MONITOR_API_VERSION: &str = "2023-10-01";
/// The metric namespace of an online endpoint resource [MON R20].
pub const ENDPOINT_NAMESPACE: &str = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints";
/// Default for [`AzureMonitorConfig::ingestion_delay`]: 3 minutes [MON R18].
pub const DEFAULT_INGESTION_DELAY: Duration = Duration::from_secs(3 * 60);

const REQUESTS: &str = "RequestsPerMinute";
const P95: &str = "RequestLatency_P95";
const P99: &str = "RequestLatency_P99";

#[derive(Clone, Debug)]
pub struct AzureMonitorConfig {
    /// ARM base URL (the same as the backend's; the sandbox's base URL in tests).
    pub arm_endpoint: Url,
    /// `2023-10-01`.
    pub api_version: String,
    /// Buckets that end later than now − this are not yet complete and are not counted
    /// [MON R18]. Default 3 minutes.
    pub ingestion_delay: Duration,
    /// Retries of 429 / 5xx / 529 answers and transport errors [MON R15].
    pub retry: RetryPolicy,
    /// Cap on a `Retry-After` the metrics API asks for.
    pub max_retry_after: Duration,
}

impl Default for AzureMonitorConfig {
    fn default() -> Self {
        AzureMonitorConfig {
            arm_endpoint: Url::parse(DEFAULT_ARM_ENDPOINT).expect("constant URL"),
            api_version: MONITOR_API_VERSION.to_string(),
            ingestion_delay: DEFAULT_INGESTION_DELAY,
            retry: RetryPolicy::default(),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// Reads gate signals of one Azure ML workspace's endpoints from Azure Monitor.
pub struct AzureMonitorProvider {
    client: ArmClient,
    target: AzureMlTarget,
    ingestion_delay: Duration,
    /// Per endpoint: metric name (lowercased) → grain, from `metricDefinitions`.
    grains: Mutex<HashMap<String, Arc<BTreeMap<String, Duration>>>>,
}

impl AzureMonitorProvider {
    /// `credential` is the same ARM token source the backend uses (scope
    /// `https://management.azure.com/.default`, [MON R7]).
    pub fn new(
        target: &AzureMlTarget,
        config: AzureMonitorConfig,
        credential: Arc<dyn TokenSource>,
    ) -> Result<Self, AzureMlError> {
        check_target(target, &config.arm_endpoint)?;
        let scope = arm_scope(&config.arm_endpoint);
        let client = ArmClient::new(
            config.arm_endpoint,
            config.api_version,
            credential,
            scope,
            config.retry.clone(),
            config.retry.min_retry_after,
            config.max_retry_after,
        )?;
        Ok(AzureMonitorProvider {
            client,
            target: target.clone(),
            ingestion_delay: config.ingestion_delay,
            grains: Mutex::new(HashMap::new()),
        })
    }

    fn endpoint_url(&self, endpoint: &str, leaf: &str) -> Url {
        let t = &self.target;
        self.client.url(&[
            "subscriptions",
            &t.subscription_id,
            "resourceGroups",
            &t.resource_group,
            "providers",
            "Microsoft.MachineLearningServices",
            "workspaces",
            &t.workspace,
            "onlineEndpoints",
            endpoint,
            "providers",
            "Microsoft.Insights",
            leaf,
        ])
    }

    /// Each metric's grain on this endpoint, fetched once ([MON R2], [MON R17]).
    async fn grains(
        &self,
        endpoint: &str,
    ) -> Result<Arc<BTreeMap<String, Duration>>, AzureMlError> {
        if let Some(g) = self.grains.lock().expect("grain cache").get(endpoint) {
            return Ok(g.clone());
        }
        let url = with_query(
            self.endpoint_url(endpoint, "metricDefinitions"),
            &[("metricnamespace", ENDPOINT_NAMESPACE)],
        );
        let body = self
            .client
            .call(Method::GET, &url, None)
            .await?
            .json("metric definitions")?;
        let grains = Arc::new(parse_grains(&body)?);
        self.grains
            .lock()
            .expect("grain cache")
            .insert(endpoint.to_string(), grains.clone());
        Ok(grains)
    }

    async fn read_inner(&self, request: &MetricsRequest) -> Result<Readings, AzureMlError> {
        check_name("endpoint", &request.endpoint)?;
        for d in &request.deployments {
            check_name("deployment", d)?;
        }
        let window = request.window;
        if window.end <= window.start {
            return Err(AzureMlError::Config(format!(
                "metrics window {} .. {} is empty",
                window.start, window.end
            )));
        }
        let mut readings: Readings = BTreeMap::new();
        if request.deployments.is_empty() || request.signals.is_empty() {
            return Ok(readings);
        }
        let wants = |s: Signal| request.signals.contains(&s);
        let latency: Vec<&str> = [(Signal::LatencyP95, P95), (Signal::LatencyP99, P99)]
            .into_iter()
            .filter(|(s, _)| wants(*s))
            .map(|(_, m)| m)
            .collect();
        let grains = self.grains(&request.endpoint).await?;
        // The cutoff is taken once, before the queries: a bucket completes only with time.
        let cutoff = flightdeck_core::clock::now_utc()
            - chrono::Duration::from_std(self.ingestion_delay).unwrap_or(chrono::Duration::MAX);
        let evaluated_end = window.end.min(cutoff).max(window.start);
        let trimmed = Window {
            start: window.start,
            end: evaluated_end,
        };
        let deployments = deployment_filter(&request.deployments);

        if wants(Signal::Requests) || wants(Signal::ErrorRate) {
            let filter = format!("{deployments} and statusCodeClass eq '*'");
            let (query, response, grain) = self
                .query(
                    request,
                    &grains,
                    &[REQUESTS],
                    "Total,Count,Average",
                    &filter,
                )
                .await?;
            let metric = response
                .value
                .iter()
                .find(|m| m.name.value.eq_ignore_ascii_case(REQUESTS));
            warn_if_failed(&request.endpoint, metric);
            let evaluated = Evaluated {
                start: window.start,
                end: evaluated_end,
                grain,
            };
            for d in &request.deployments {
                let (requests, rate) = metric
                    .map(|m| series::requests_and_error_rate(m, d, evaluated))
                    .unwrap_or((None, None));
                let entry = readings.entry(d.clone()).or_default();
                for (signal, value) in [(Signal::Requests, requests), (Signal::ErrorRate, rate)] {
                    if wants(signal) {
                        entry.insert(signal, reading(value, &query, trimmed));
                    }
                }
            }
        }
        if !latency.is_empty() {
            let (query, response, grain) = self
                .query(request, &grains, &latency, "Average", &deployments)
                .await?;
            let evaluated = Evaluated {
                start: window.start,
                end: evaluated_end,
                grain,
            };
            for (signal, name) in [(Signal::LatencyP95, P95), (Signal::LatencyP99, P99)] {
                if !wants(signal) {
                    continue;
                }
                let metric = response
                    .value
                    .iter()
                    .find(|m| m.name.value.eq_ignore_ascii_case(name));
                warn_if_failed(&request.endpoint, metric);
                for d in &request.deployments {
                    let value = metric.and_then(|m| series::max_percentile(m, d, evaluated));
                    readings
                        .entry(d.clone())
                        .or_default()
                        .insert(signal, reading(value, &query, trimmed));
                }
            }
        }
        Ok(readings)
    }

    /// One `Metrics_List` GET [MON §5]; returns the query as sent (path and query string, no
    /// host, no token), the parsed body and the buckets' grain.
    async fn query(
        &self,
        request: &MetricsRequest,
        grains: &BTreeMap<String, Duration>,
        metrics: &[&str],
        aggregation: &str,
        filter: &str,
    ) -> Result<(String, MetricsResponse, chrono::Duration), AzureMlError> {
        let mut grain = None::<Duration>;
        for m in metrics {
            let g = grains
                .get(&m.to_ascii_lowercase())
                .copied()
                .ok_or_else(|| AzureMlError::Unexpected {
                    what: "metric definitions".into(),
                    message: format!(
                        "endpoint {} defines no metric {m} [MON R20]",
                        request.endpoint
                    ),
                })?;
            grain = Some(grain.map_or(g, |x| x.max(g)));
        }
        let grain = grain.unwrap_or(Duration::from_secs(60));
        let w = request.window;
        let timespan = format!("{}/{}", utc(w.start), utc(w.end));
        let interval = duration_iso(grain);
        let url = with_query(
            self.endpoint_url(&request.endpoint, "metrics"),
            &[
                ("metricnamespace", ENDPOINT_NAMESPACE),
                ("metricnames", &metrics.join(",")),
                ("timespan", &timespan),
                ("interval", &interval),
                ("aggregation", aggregation),
                ("$filter", filter),
                ("ValidateDimensions", "false"),
            ],
        );
        let query = format!("{}?{}", url.path(), url.query().unwrap_or(""));
        let resp = self.client.call(Method::GET, &url, None).await?;
        let response: MetricsResponse =
            serde_json::from_slice(&resp.body).map_err(|e| AzureMlError::Malformed {
                status: resp.status.as_u16(),
                what: "a metrics response [MON R9]".into(),
                detail: e.to_string(),
            })?;
        // The answer's interval wins when the service chose another grain [MON R9].
        let actual = response
            .interval
            .as_deref()
            .and_then(iso::to_millis)
            .map(Duration::from_millis)
            .unwrap_or(grain);
        let actual = chrono::Duration::from_std(actual).unwrap_or(chrono::Duration::MAX);
        Ok((query, response, actual))
    }
}

#[async_trait]
impl MetricsProvider for AzureMonitorProvider {
    fn name(&self) -> &'static str {
        "azure_monitor"
    }

    async fn read(&self, request: &MetricsRequest) -> Result<Readings, BackendError> {
        self.read_inner(request)
            .await
            .map_err(|e| e.into_backend(&format!("endpoint {}: metrics", request.endpoint)))
    }
}

/// A metric the platform failed inside a 200 [MON R12] is logged once per read; its signals
/// read as no data.
fn warn_if_failed(endpoint: &str, metric: Option<&series::Metric>) {
    if let Some(m) = metric.filter(|m| !m.succeeded()) {
        tracing::warn!(
            endpoint,
            metric = %m.name.value,
            code = m.error_code.as_deref().unwrap_or(""),
            message = m.error_message.as_deref().unwrap_or(""),
            "azure monitor failed one metric; no data for it"
        );
    }
}

fn reading(value: Option<f64>, query: &str, window: Window) -> Reading {
    Reading {
        value,
        query: query.to_string(),
        window,
    }
}

/// `deployment eq 'a' or deployment eq 'b'`: `or` joins values of one dimension [MON R4]. The
/// names were checked against the ARM name rule, so they hold no quote.
fn deployment_filter(deployments: &[String]) -> String {
    deployments
        .iter()
        .map(|d| format!("deployment eq '{d}'"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Appends query pairs, percent-encoding spaces as `%20` rather than `+` (the whole filter
/// value is URL-encoded, [MON R4]).
fn with_query(mut url: Url, pairs: &[(&str, &str)]) -> Url {
    let mut query = url.query().unwrap_or("").to_string();
    for (k, v) in pairs {
        let enc = |s: &str| {
            url::form_urlencoded::byte_serialize(s.as_bytes())
                .collect::<String>()
                .replace('+', "%20")
        };
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(&enc(k));
        query.push('=');
        query.push_str(&enc(v));
    }
    url.set_query(Some(&query));
    url
}

fn utc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A grain as ISO-8601: `PT1M`, `PT5M`, `PT1H`, `P1D`.
fn duration_iso(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s > 0 && s % 86_400 == 0 => format!("P{}D", s / 86_400),
        s if s > 0 && s % 3_600 == 0 => format!("PT{}H", s / 3_600),
        s if s > 0 && s % 60 == 0 => format!("PT{}M", s / 60),
        s => format!("PT{s}S"),
    }
}

/// `{value: [{name: {value}, metricAvailabilities: [{timeGrain}]}]}` → the smallest grain per
/// metric name (lowercased) [MON R2].
fn parse_grains(body: &serde_json::Value) -> Result<BTreeMap<String, Duration>, AzureMlError> {
    let malformed = |detail: &str| AzureMlError::Malformed {
        status: 200,
        what: "a metric definitions list [MON R2]".into(),
        detail: detail.to_string(),
    };
    let list = body
        .get("value")
        .and_then(|v| v.as_array())
        .ok_or_else(|| malformed("no `value` array"))?;
    let mut grains = BTreeMap::new();
    for def in list {
        let Some(name) = def.pointer("/name/value").and_then(|v| v.as_str()) else {
            return Err(malformed("a definition without name.value"));
        };
        let smallest = def
            .get("metricAvailabilities")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|a| a.get("timeGrain")?.as_str())
            .filter_map(iso::to_millis)
            .filter(|ms| *ms > 0)
            .min();
        if let Some(ms) = smallest {
            grains.insert(name.to_ascii_lowercase(), Duration::from_millis(ms));
        }
    }
    Ok(grains)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn grains_are_the_smallest_availability_per_metric() {
        let body = json!({"value": [
            {"name": {"value": "RequestsPerMinute"}, "metricAvailabilities": [
                {"timeGrain": "PT5M", "retention": "P93D"}, {"timeGrain": "PT1M", "retention": "P93D"}]},
            {"name": {"value": "RequestLatency_P99"}, "metricAvailabilities": []}
        ]});
        let grains = parse_grains(&body).unwrap();
        assert_eq!(
            grains.get("requestsperminute"),
            Some(&Duration::from_secs(60))
        );
        assert_eq!(grains.get("requestlatency_p99"), None);
        assert!(parse_grains(&json!({"nope": 1})).is_err());
    }

    #[test]
    fn grains_are_written_in_iso_8601() {
        assert_eq!(duration_iso(Duration::from_secs(60)), "PT1M");
        assert_eq!(duration_iso(Duration::from_secs(3600)), "PT1H");
        assert_eq!(duration_iso(Duration::from_secs(86_400)), "P1D");
        assert_eq!(duration_iso(Duration::from_secs(90)), "PT90S");
    }

    #[test]
    fn query_values_encode_spaces_and_quotes() {
        let url = with_query(
            Url::parse("http://x/p?api-version=1").unwrap(),
            &[("$filter", "deployment eq 'a+b'")],
        );
        assert_eq!(
            url.query(),
            Some("api-version=1&%24filter=deployment%20eq%20%27a%2Bb%27")
        );
    }
}
