//! The Azure Monitor metrics provider against the scripted ARM fake answering recorded,
//! contract-shaped bodies (`tests/fixtures/monitor/`, shaped after the 2023-10-01 examples
//! `GetMetric.json`, `GetMetricError.json`, `GetMetricDefinitions.json`): the queries it sends
//! ([MON §5]), the values it derives, no data, per-metric failures [MON R12], throttling
//! [MON R15], a refused token [MON R16] and young buckets [MON R18].

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use flightdeck::backend::azureml::monitor::AzureMonitorConfig;
use flightdeck::backend::azureml::{
    AzureMlError, AzureMonitorProvider, RetryPolicy, Secret, TokenSource,
};
use flightdeck::metrics::{MetricsProvider, MetricsRequest, Signal, Window};
use flightdeck_testkit::arm_fake::*;
use serde_json::{Value, json};

const DEFINITIONS: &str = include_str!("../fixtures/monitor/definitions.json");
const REQUESTS: &str = include_str!("../fixtures/monitor/requests_canary_with_errors.json");
const NO_SERIES: &str = include_str!("../fixtures/monitor/requests_no_series.json");
const LATENCY: &str = include_str!("../fixtures/monitor/latency.json");
const P99_FAILED: &str = include_str!("../fixtures/monitor/latency_p99_failed.json");

fn metrics_path() -> String {
    eps("/scoring/providers/Microsoft.Insights/metrics")
}

fn definitions_path() -> String {
    eps("/scoring/providers/Microsoft.Insights/metricDefinitions")
}

fn fixture(text: &str) -> Canned {
    Canned::json(200, serde_json::from_str(text).unwrap())
}

fn monitor_config(fake: &Fake) -> AzureMonitorConfig {
    AzureMonitorConfig {
        arm_endpoint: fake.url(),
        retry: RetryPolicy {
            max_attempts: 4,
            base_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            ..RetryPolicy::default()
        },
        ..AzureMonitorConfig::default()
    }
}

fn provider(fake: &Fake, token: Arc<dyn TokenSource>) -> AzureMonitorProvider {
    AzureMonitorProvider::new(&target(), monitor_config(fake), token).unwrap()
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// The recorded window: 2026-11-30 10:00–10:05, long complete.
fn request(signals: &[Signal]) -> MetricsRequest {
    MetricsRequest {
        endpoint: "scoring".into(),
        deployments: vec!["green".into(), "blue".into()],
        signals: signals.to_vec(),
        window: Window {
            start: at("2026-11-30T10:00:00Z"),
            end: at("2026-11-30T10:05:00Z"),
        },
    }
}

/// The decoded query parameters of a request the fake saw.
fn params(seen: &Seen) -> Vec<(String, String)> {
    url::form_urlencoded::parse(seen.query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param(seen: &Seen, name: &str) -> Option<String> {
    params(seen)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Answers the metrics route by `metricnames`.
fn by_metric(fake: &Fake, requests: &'static str, latency: &'static str) {
    fake.on_fn("GET", &metrics_path(), move |seen| {
        match param(seen, "metricnames").as_deref() {
            Some("RequestsPerMinute") => fixture(requests),
            Some(_) => fixture(latency),
            None => Canned::json(
                400,
                json!({"code": "BadRequest", "message": "no metricnames"}),
            ),
        }
    });
}

#[tokio::test]
async fn a_canary_with_errors_reads_its_error_rate_requests_and_worst_minute_latency() {
    let fake = Fake::start().await;
    fake.on("GET", &definitions_path(), vec![fixture(DEFINITIONS)]);
    by_metric(&fake, REQUESTS, LATENCY);

    let readings = provider(&fake, Arc::new(StaticToken))
        .read(&request(&Signal::ALL))
        .await
        .unwrap();

    let green = &readings["green"];
    let blue = &readings["blue"];
    assert_eq!(green[&Signal::Requests].value, Some(200.0));
    assert_eq!(green[&Signal::ErrorRate].value, Some(0.1));
    assert_eq!(blue[&Signal::Requests].value, Some(1000.0));
    assert_eq!(blue[&Signal::ErrorRate].value, Some(0.01));
    // The max of per-minute percentiles, not their mean [MON R22].
    assert_eq!(green[&Signal::LatencyP95].value, Some(120.0));
    assert_eq!(green[&Signal::LatencyP99].value, Some(300.0));
    assert_eq!(blue[&Signal::LatencyP99].value, Some(95.0));
    assert_eq!(green[&Signal::Requests].window, request(&[]).window);

    let metrics: Vec<Seen> = fake
        .log()
        .into_iter()
        .filter(|s| s.path == metrics_path())
        .collect();
    assert_eq!(metrics.len(), 2, "one query per metric family");
    let rpm = &metrics[0];
    for (k, v) in [
        ("api-version", "2023-10-01"),
        (
            "metricnamespace",
            "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
        ),
        ("metricnames", "RequestsPerMinute"),
        ("timespan", "2026-11-30T10:00:00Z/2026-11-30T10:05:00Z"),
        ("interval", "PT1M"),
        ("aggregation", "Total,Count,Average"),
        (
            "$filter",
            "deployment eq 'green' or deployment eq 'blue' and statusCodeClass eq '*'",
        ),
        ("ValidateDimensions", "false"),
    ] {
        assert_eq!(param(rpm, k).as_deref(), Some(v), "{k} in {}", rpm.query);
    }
    assert!(
        rpm.query
            .contains("%24filter=deployment%20eq%20%27green%27"),
        "the filter is percent-encoded: {}",
        rpm.query
    );
    let lat = &metrics[1];
    assert_eq!(
        param(lat, "metricnames").as_deref(),
        Some("RequestLatency_P95,RequestLatency_P99")
    );
    assert_eq!(param(lat, "aggregation").as_deref(), Some("Average"));
    assert_eq!(
        param(lat, "$filter").as_deref(),
        Some("deployment eq 'green' or deployment eq 'blue'")
    );
    // The reading names the query as sent: path and query string, no host, no token.
    let query = &green[&Signal::ErrorRate].query;
    assert_eq!(query, &format!("{}?{}", rpm.path, rpm.query));
    assert!(!query.contains(&fake.base) && !query.contains(TOKEN));
    fake.stop().await;
}

#[tokio::test]
async fn no_series_is_no_data_and_the_grain_is_read_once() {
    let fake = Fake::start().await;
    fake.on("GET", &definitions_path(), vec![fixture(DEFINITIONS)]);
    by_metric(&fake, NO_SERIES, LATENCY);
    let provider = provider(&fake, Arc::new(StaticToken));

    for _ in 0..2 {
        let readings = provider
            .read(&request(&[Signal::Requests, Signal::ErrorRate]))
            .await
            .unwrap();
        for d in ["green", "blue"] {
            assert_eq!(readings[d][&Signal::Requests].value, None, "{d}");
            assert_eq!(readings[d][&Signal::ErrorRate].value, None, "{d}");
        }
    }
    assert_eq!(fake.count("GET", &definitions_path()), 1);
    assert_eq!(fake.count("GET", &metrics_path()), 2);
    fake.stop().await;
}

#[tokio::test]
async fn a_metric_failed_with_invalid_sampling_type_is_no_data_for_that_signal_only() {
    let fake = Fake::start().await;
    fake.on("GET", &definitions_path(), vec![fixture(DEFINITIONS)]);
    by_metric(&fake, REQUESTS, P99_FAILED);

    let readings = provider(&fake, Arc::new(StaticToken))
        .read(&request(&Signal::ALL))
        .await
        .unwrap();
    for d in ["green", "blue"] {
        assert_eq!(readings[d][&Signal::LatencyP99].value, None, "{d}");
    }
    assert_eq!(readings["green"][&Signal::LatencyP95].value, Some(120.0));
    assert_eq!(readings["green"][&Signal::ErrorRate].value, Some(0.1));
    fake.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_is_waited_out_then_the_answer_is_used() {
    let fake = Fake::start().await;
    fake.on("GET", &definitions_path(), vec![fixture(DEFINITIONS)]);
    fake.on(
        "GET",
        &metrics_path(),
        vec![
            Canned::json(
                429,
                json!({"code": "TooManyRequests", "message": "throttled"}),
            )
            .header("Retry-After", "7"),
            fixture(REQUESTS),
        ],
    );

    // Paused time: the wait is virtual; the assertion is on what the client chose.
    let started = tokio::time::Instant::now();
    let readings = provider(&fake, Arc::new(StaticToken))
        .read(&request(&[Signal::ErrorRate]))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(7),
        "Retry-After: 7 honoured, waited {:?}",
        started.elapsed()
    );
    assert_eq!(readings["green"][&Signal::ErrorRate].value, Some(0.1));
    assert_eq!(fake.count("GET", &metrics_path()), 2);
    fake.stop().await;
}

/// Issues `token-1`, `token-2`, ... and counts invalidations.
#[derive(Default)]
struct RotatingToken {
    issued: AtomicU32,
    invalidated: AtomicU32,
}

#[async_trait]
impl TokenSource for RotatingToken {
    async fn token(&self, _scope: &str) -> Result<Secret, AzureMlError> {
        let n = self.issued.load(Ordering::SeqCst).max(1);
        self.issued.store(n, Ordering::SeqCst);
        Ok(Secret::new(format!("token-{n}")))
    }

    async fn invalidate(&self, _scope: &str) {
        self.invalidated.fetch_add(1, Ordering::SeqCst);
        self.issued.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_refused_token_is_replaced_once_and_the_read_succeeds() {
    let fake = Fake::start().await;
    let refuse_first = |ok: &'static str| {
        move |seen: &Seen| match seen.header("authorization") {
            Some("Bearer token-1") => Canned::error(
                401,
                "InvalidAuthenticationToken",
                "the access token is invalid",
            ),
            _ => fixture(ok),
        }
    };
    fake.on_fn("GET", &definitions_path(), refuse_first(DEFINITIONS));
    fake.on_fn("GET", &metrics_path(), refuse_first(REQUESTS));
    let token = Arc::new(RotatingToken::default());

    let readings = provider(&fake, token.clone())
        .read(&request(&[Signal::Requests]))
        .await
        .unwrap();
    assert_eq!(readings["blue"][&Signal::Requests].value, Some(1000.0));
    assert_eq!(token.invalidated.load(Ordering::SeqCst), 1);
    let auth: Vec<_> = fake
        .log()
        .iter()
        .map(|s| s.header("authorization").unwrap_or("").to_string())
        .collect();
    assert_eq!(auth, ["Bearer token-1", "Bearer token-2", "Bearer token-2"]);
    fake.stop().await;
}

#[tokio::test]
async fn a_second_401_fails_the_read_naming_the_endpoint_and_the_platform_code() {
    let fake = Fake::start().await;
    fake.on(
        "GET",
        &definitions_path(),
        vec![Canned::error(401, "InvalidAuthenticationToken", "expired")],
    );
    let err = provider(&fake, Arc::new(RotatingToken::default()))
        .read(&request(&[Signal::Requests]))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("endpoint scoring: metrics: "), "{text}");
    assert!(text.contains("InvalidAuthenticationToken"), "{text}");
    assert!(!err.is_transient());
    assert_eq!(fake.count("GET", &definitions_path()), 2);
    fake.stop().await;
}

#[tokio::test]
async fn flat_and_wrapped_error_bodies_both_give_the_platform_code() {
    for body in [
        json!({"code": "BadRequest", "message": "Failed to find metric configuration"}),
        json!({"error": {"code": "BadRequest", "message": "Failed to find metric configuration"}}),
    ] {
        let fake = Fake::start().await;
        fake.on("GET", &definitions_path(), vec![fixture(DEFINITIONS)]);
        fake.on(
            "GET",
            &metrics_path(),
            vec![Canned::json(400, body.clone())],
        );
        let err = provider(&fake, Arc::new(StaticToken))
            .read(&request(&[Signal::Requests]))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("endpoint scoring: metrics: BadRequest: Failed to find metric"),
            "{body}: {text}"
        );
        assert!(!err.is_transient());
        assert_eq!(
            fake.count("GET", &metrics_path()),
            1,
            "a 400 is not retried"
        );
        fake.stop().await;
    }
}

#[tokio::test]
async fn a_deployment_name_that_could_break_the_filter_is_refused_before_any_request() {
    let fake = Fake::start().await;
    let mut bad = request(&[Signal::Requests]);
    bad.deployments = vec!["green' or deployment eq 'blue".into()];
    let err = provider(&fake, Arc::new(StaticToken))
        .read(&bad)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("deployment name"), "{err}");
    assert!(fake.log().is_empty());
    fake.stop().await;
}

/// One per-minute bucket per minute of `start..start+n`, `value` requests each, all 5xx.
fn live_buckets(start: DateTime<Utc>, n: i64) -> Value {
    let data: Vec<Value> = (0..n)
        .map(|i| {
            let t = start + chrono::Duration::minutes(i);
            json!({"timeStamp": t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                   "total": 10.0, "count": 1.0, "average": 10.0})
        })
        .collect();
    json!({
        "timespan": "", "interval": "PT1M",
        "value": [{
            "id": "x", "type": "Microsoft.Insights/metrics", "unit": "Count",
            "name": {"value": "RequestsPerMinute"}, "errorCode": "Success",
            "timeseries": [{
                "metadatavalues": [
                    {"name": {"value": "deployment"}, "value": "green"},
                    {"name": {"value": "statuscodeclass"}, "value": "5xx"}
                ],
                "data": data
            }]
        }]
    })
}

#[tokio::test]
async fn buckets_younger_than_the_ingestion_delay_are_not_counted_and_the_window_says_so() {
    let fake = Fake::start().await;
    fake.on("GET", &definitions_path(), vec![fixture(DEFINITIONS)]);
    // A minute-aligned window of the last 10 minutes, every bucket present.
    let now = flightdeck::clock::now_utc();
    let end = now
        - chrono::Duration::seconds(now.timestamp() % 60)
        - chrono::Duration::nanoseconds(i64::from(now.timestamp_subsec_nanos()));
    let start = end - chrono::Duration::minutes(10);
    fake.on(
        "GET",
        &metrics_path(),
        vec![Canned::json(200, live_buckets(start, 10))],
    );
    let mut req = request(&[Signal::Requests]);
    req.deployments = vec!["green".into()];
    req.window = Window { start, end };

    let readings = provider(&fake, Arc::new(StaticToken))
        .read(&req)
        .await
        .unwrap();
    let reading = &readings["green"][&Signal::Requests];
    // The cutoff is now − 3 min, with `now` a little past `end`: buckets ending by then count.
    let cutoff = flightdeck::clock::now_utc() - chrono::Duration::minutes(3);
    assert!(
        reading.window.end <= cutoff && reading.window.end > end - chrono::Duration::minutes(4)
    );
    let complete = (0..10)
        .filter(|i| start + chrono::Duration::minutes(i + 1) <= reading.window.end)
        .count();
    assert_eq!(complete, 7, "the newest 3 buckets are too young");
    assert_eq!(reading.value, Some(10.0 * complete as f64));
    assert_eq!(reading.window.start, start);
    fake.stop().await;
}
