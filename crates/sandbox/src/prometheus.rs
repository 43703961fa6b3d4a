//! `GET /metrics`: the data plane's requests as the cumulative Istio standard metrics a
//! destination sidecar would export [PROM P8–P10], rendered by `prometheus-client` in the
//! OpenMetrics text format, so the gate PromQL of [PROM P10] works unchanged against a real
//! Prometheus scraping the sandbox.
//!
//! Series: `istio_requests_total` and `istio_request_duration_milliseconds_{bucket,sum,count}`
//! with Istio's default duration buckets [PROM P10 note] and the labels `reporter="destination"`,
//! `destination_service_name=<endpoint>`, `destination_workload=<endpoint>-<deployment>`,
//! `destination_version=<deployment>`, `destination_workload_namespace=<workspace>`,
//! `response_code`. No auth (like `/_sandbox/*`): the sandbox listens on loopback by default.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::AppState;
use super::metrics::EndpointKey;

/// The OpenMetrics text `Content-Type`.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Istio's default `istio_request_duration_milliseconds` buckets [PROM P10 note].
pub const ISTIO_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

type Labels = Vec<(&'static str, String)>;

fn histogram() -> Histogram {
    Histogram::new(ISTIO_BUCKETS)
}

/// The cumulative series, and when each was last updated (idle ones are pruned).
#[derive(Debug)]
pub struct Istio {
    registry: Registry,
    requests: Family<Labels, Counter>,
    durations: Family<Labels, Histogram, fn() -> Histogram>,
    last: HashMap<Labels, DateTime<Utc>>,
}

fn labels(endpoint: &EndpointKey, deployment: &str, status: u16) -> Labels {
    vec![
        ("reporter", "destination".to_string()),
        ("destination_service_name", endpoint.endpoint.clone()),
        (
            "destination_workload",
            format!("{}-{deployment}", endpoint.endpoint),
        ),
        ("destination_version", deployment.to_string()),
        (
            "destination_workload_namespace",
            endpoint.ws.workspace.clone(),
        ),
        ("response_code", status.to_string()),
    ]
}

impl Istio {
    pub fn new() -> Self {
        let requests = Family::<Labels, Counter>::default();
        let durations: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(histogram);
        let mut registry = Registry::default();
        registry.register(
            "istio_requests",
            "Requests the sandbox data plane answered, per deployment and response code",
            requests.clone(),
        );
        registry.register(
            "istio_request_duration_milliseconds",
            "Request duration on the sandbox clock (injected latency included)",
            durations.clone(),
        );
        Istio {
            registry,
            requests,
            durations,
            last: HashMap::new(),
        }
    }

    pub fn observe(
        &mut self,
        endpoint: &EndpointKey,
        deployment: &str,
        status: u16,
        ms: f64,
        at: DateTime<Utc>,
    ) {
        let labels = labels(endpoint, deployment, status);
        self.requests.get_or_create(&labels).inc();
        self.durations.get_or_create(&labels).observe(ms);
        let last = self.last.entry(labels).or_insert(at);
        *last = (*last).max(at);
    }

    /// Removes the series last updated before `idle_since`.
    pub fn prune(&mut self, idle_since: DateTime<Utc>) {
        let (requests, durations) = (&self.requests, &self.durations);
        self.last.retain(|labels, last| {
            let keep = *last >= idle_since;
            if !keep {
                requests.remove(labels);
                durations.remove(labels);
            }
            keep
        });
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// `GET /metrics`.
pub async fn get_metrics(State(state): State<AppState>) -> Response {
    let body = {
        let mut metrics = state.metrics();
        metrics.prune(state.clock.now_utc());
        metrics.render_prometheus()
    };
    ([(CONTENT_TYPE, OPENMETRICS)], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::WorkspaceKey;

    #[test]
    fn series_carry_the_istio_labels_and_idle_ones_are_pruned() {
        let ep = EndpointKey {
            ws: WorkspaceKey {
                subscription: "s".into(),
                resource_group: "rg".into(),
                workspace: "ml".into(),
            },
            endpoint: "fraud".into(),
        };
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut istio = Istio::new();
        istio.observe(&ep, "green", 503, 7.0, t0);
        let text = istio.render();
        assert!(
            text.contains(
                r#"istio_requests_total{reporter="destination",destination_service_name="fraud",destination_workload="fraud-green",destination_version="green",destination_workload_namespace="ml",response_code="503"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"le="10.0""#), "{text}");
        istio.prune(t0 + chrono::Duration::seconds(1));
        assert!(!istio.render().contains("fraud"));
    }
}
