//! The scoring share per deployment over the last minutes: one `requests` read of the
//! environment's metrics source (`rollout.metrics`: Azure Monitor, Prometheus, the sandbox's
//! either) per endpoint, shown as each deployment's part of the total. Without a metrics source,
//! or without requests in the window, nothing is shown.

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::{MetricsProvider, MetricsRequest, Signal, Window};

/// The window the share is taken over.
pub const WINDOW: Duration = Duration::from_secs(5 * 60);
/// Endpoints read per poll at most (the rest show no share): a dashboard must not cost the
/// metrics backend more than the rollouts do.
pub const MAX_ENDPOINTS: usize = 50;

/// Each deployment's share of the requests `endpoint` served in the last [`WINDOW`]; `None`
/// when the source has no requests for it (or could not be read).
pub async fn shares(
    provider: &Arc<dyn MetricsProvider>,
    endpoint: &str,
    deployments: Vec<String>,
) -> Option<Vec<(String, f64)>> {
    if deployments.is_empty() {
        return None;
    }
    let end = crate::clock::now_utc();
    let start = end - chrono::Duration::from_std(WINDOW).ok()?;
    let request = MetricsRequest {
        endpoint: endpoint.to_string(),
        deployments,
        signals: vec![Signal::Requests],
        window: Window { start, end },
    };
    let readings = match provider.read(&request).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(endpoint, error = %e, "scoring share: metrics read failed");
            return None;
        }
    };
    let counts: Vec<(String, f64)> = request
        .deployments
        .iter()
        .map(|d| {
            let value = readings
                .get(d)
                .and_then(|r| r.get(&Signal::Requests))
                .and_then(|r| r.value)
                .filter(|v| v.is_finite() && *v > 0.0)
                .unwrap_or(0.0);
            (d.clone(), value)
        })
        .collect();
    let total: f64 = counts.iter().map(|(_, v)| v).sum();
    (total > 0.0).then(|| counts.into_iter().map(|(d, v)| (d, v / total)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendError;
    use crate::metrics::{Reading, Readings};

    /// Answers fixed request counts per deployment.
    struct Counts(Vec<(&'static str, Option<f64>)>);

    #[async_trait::async_trait]
    impl MetricsProvider for Counts {
        fn name(&self) -> &'static str {
            "counts"
        }

        async fn read(&self, request: &MetricsRequest) -> Result<Readings, BackendError> {
            assert_eq!(request.signals, vec![Signal::Requests]);
            assert_eq!(
                (request.window.end - request.window.start).num_seconds(),
                300
            );
            Ok(self
                .0
                .iter()
                .map(|(d, v)| {
                    let reading = Reading {
                        value: *v,
                        query: String::new(),
                        window: request.window,
                    };
                    (d.to_string(), [(Signal::Requests, reading)].into())
                })
                .collect())
        }
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[tokio::test]
    async fn the_share_is_each_deployments_part_of_the_requests_in_the_window() {
        let provider: Arc<dyn MetricsProvider> = Arc::new(Counts(vec![
            ("blue", Some(30.0)),
            ("green", Some(10.0)),
            ("red", None),
        ]));
        let shares = shares(&provider, "ep", names(&["blue", "green", "red"])).await;
        assert_eq!(
            shares,
            Some(vec![
                ("blue".to_string(), 0.75),
                ("green".to_string(), 0.25),
                ("red".to_string(), 0.0)
            ])
        );
    }

    #[tokio::test]
    async fn no_requests_in_the_window_shows_no_share() {
        let provider: Arc<dyn MetricsProvider> =
            Arc::new(Counts(vec![("blue", Some(0.0)), ("green", None)]));
        assert_eq!(
            shares(&provider, "ep", names(&["blue", "green"])).await,
            None
        );
        assert_eq!(shares(&provider, "ep", Vec::new()).await, None);
    }
}
