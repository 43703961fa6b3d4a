//! The Prometheus provider against a fake query API on 127.0.0.1 answering recorded,
//! contract-shaped envelopes (`tests/fixtures/`, [PROM P3], [PROM P4]): the queries it sends,
//! no data (empty result, NaN), error envelopes (400, 422, 503), throttling, the bearer token.

use std::time::Duration;

use chrono::{DateTime, Utc};
use flightdeck_core::metrics::{MetricsProvider, MetricsRequest, Signal, Window};
use flightdeck_prometheus::{
    PrometheusConfig, PrometheusProvider, QueryTemplates, RetryPolicy, Secret,
};
// The one fake Prometheus (the test kit's), driven here by a script per request.
use flightdeck_core::rollout::gates;
use flightdeck_core::rollout::{Comparison, Gate, GateResult, Threshold};
use flightdeck_testkit::fake_prometheus::{Answer, FakePrometheus as Fake, Scenario, Seen, Served};

const ONE: &str = include_str!("fixtures/vector_one.json");
const EMPTY: &str = include_str!("fixtures/vector_empty.json");
const TWO_SERIES: &str = include_str!("fixtures/vector_two_series.json");
const BAD_DATA: &str = include_str!("fixtures/error_bad_data.json");
const EXECUTION: &str = include_str!("fixtures/error_execution.json");
const TIMEOUT: &str = include_str!("fixtures/error_unavailable.json");
const WARNINGS: &str = include_str!("fixtures/vector_with_warnings.json");

fn value(v: &str) -> Answer {
    (200, None, ONE.replace("{value}", v))
}

fn fixture(status: u16, body: &str) -> Answer {
    (status, None, body.to_string())
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        ..RetryPolicy::default()
    }
}

fn config(fake: &Fake) -> PrometheusConfig {
    PrometheusConfig {
        retry: fast_retry(),
        ..PrometheusConfig::new(fake.url.clone(), "ml")
    }
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn request(signals: &[Signal]) -> MetricsRequest {
    MetricsRequest {
        endpoint: "fraud".into(),
        deployments: vec!["green".into(), "blue".into()],
        signals: signals.to_vec(),
        window: Window {
            start: at("2026-11-30T10:00:00Z"),
            end: at("2026-11-30T10:05:00Z"),
        },
    }
}

/// Answers like a server holding a canary at 10 % errors and a baseline at 1 %.
fn canary(seen: &Seen, _: usize) -> Answer {
    let green = seen.promql.contains(r#"destination_version="green""#);
    match () {
        _ if seen.promql.starts_with("histogram_quantile(0.99") => {
            value(if green { "250" } else { "100" })
        }
        _ if seen.promql.starts_with("histogram_quantile(0.95") => {
            value(if green { "+Inf" } else { "50" })
        }
        _ if seen.promql.contains("response_code") => value(if green { "0.1" } else { "0.01" }),
        _ => value(if green { "200" } else { "1800" }),
    }
}

#[tokio::test]
async fn a_canary_with_errors_reads_its_error_rate_through_the_default_istio_queries() {
    let fake = Fake::start(canary).await;
    let provider = PrometheusProvider::new(config(&fake)).unwrap();

    let readings = provider.read(&request(&Signal::ALL)).await.unwrap();
    assert_eq!(readings["green"][&Signal::ErrorRate].value, Some(0.1));
    assert_eq!(readings["blue"][&Signal::ErrorRate].value, Some(0.01));
    assert_eq!(readings["green"][&Signal::Requests].value, Some(200.0));
    assert_eq!(readings["blue"][&Signal::LatencyP99].value, Some(100.0));
    // +Inf is a value (the quantile fell in the last bucket), not no data.
    assert_eq!(
        readings["green"][&Signal::LatencyP95].value,
        Some(f64::INFINITY)
    );

    let seen = fake.seen();
    assert_eq!(seen.len(), 8, "one instant query per deployment and signal");
    assert!(
        seen.iter().all(|s| s.path == "/prom/api/v1/query"),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|s| s.time == "2026-11-30T10:05:00Z"),
        "evaluated at the window's end"
    );
    let error_rate = &readings["green"][&Signal::ErrorRate];
    let expected = r#"(sum(rate(istio_requests_total{reporter="destination",destination_service_name="fraud",destination_version="green",response_code=~"5.."}[300s])) or vector(0)) / sum(rate(istio_requests_total{reporter="destination",destination_service_name="fraud",destination_version="green"}[300s]))"#;
    assert_eq!(error_rate.query, expected);
    assert_eq!(error_rate.window, request(&[]).window);
    assert!(
        seen.iter().any(|s| s.promql == expected),
        "the server got the query as rendered"
    );
}

#[tokio::test]
async fn an_overridden_template_gets_every_placeholder_substituted_and_url_encoded() {
    let fake = Fake::start(|_, _| value("0.5")).await;
    let templates = QueryTemplates {
        error_rate: r#"sum(rate(http_total{ns="{namespace}",svc="{endpoint}",v="{deployment}",code=~"5.+"}[{window}])) / sum(rate(http_total{v="{deployment}"}[{window}]))"#.into(),
        ..QueryTemplates::default()
    };
    let provider = PrometheusProvider::new(PrometheusConfig {
        templates,
        ..config(&fake)
    })
    .unwrap();
    let mut req = request(&[Signal::ErrorRate]);
    req.deployments = vec!["green".into()];
    req.window.start = at("2026-11-30T09:55:00Z");

    let readings = provider.read(&req).await.unwrap();
    let expected = r#"sum(rate(http_total{ns="ml",svc="fraud",v="green",code=~"5.+"}[600s])) / sum(rate(http_total{v="green"}[600s]))"#;
    assert_eq!(readings["green"][&Signal::ErrorRate].query, expected);
    let seen = &fake.seen()[0];
    assert_eq!(seen.promql, expected);
    // On the wire: `+` and `/` and quotes percent-encoded, so the server decodes the same text.
    for encoded in [
        "%2B",
        "%2F",
        "%22ml%22",
        "%7B",
        "%5B600s%5D",
        "time=2026-11-30T10%3A05%3A00Z",
    ] {
        assert!(
            seen.raw_query.contains(encoded),
            "{encoded} in {}",
            seen.raw_query
        );
    }
}

#[tokio::test]
async fn an_empty_result_and_a_nan_are_no_data() {
    let fake = Fake::start(|seen, _| {
        if seen.promql.contains("response_code") {
            value("NaN")
        } else {
            fixture(200, EMPTY)
        }
    })
    .await;
    let provider = PrometheusProvider::new(config(&fake)).unwrap();
    let readings = provider
        .read(&request(&[Signal::Requests, Signal::ErrorRate]))
        .await
        .unwrap();
    for d in ["green", "blue"] {
        assert_eq!(
            readings[d][&Signal::Requests].value,
            None,
            "{d}: empty result"
        );
        assert_eq!(
            readings[d][&Signal::ErrorRate].value,
            None,
            "{d}: NaN (0/0)"
        );
    }
}

#[tokio::test]
async fn warnings_do_not_change_the_value() {
    let fake = Fake::start(|_, _| (200, None, WARNINGS.replace("{value}", "42"))).await;
    let provider = PrometheusProvider::new(config(&fake)).unwrap();
    let readings = provider
        .read(&request(&[Signal::LatencyP99]))
        .await
        .unwrap();
    assert_eq!(readings["blue"][&Signal::LatencyP99].value, Some(42.0));
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_is_waited_out_then_the_answer_is_used() {
    let fake = Fake::start(|_, n| match n {
        0 => (429, Some(3), "too many requests".into()),
        _ => value("0.25"),
    })
    .await;
    let provider = PrometheusProvider::new(config(&fake)).unwrap();
    let mut req = request(&[Signal::ErrorRate]);
    req.deployments = vec!["green".into()];
    // Paused time: the wait is virtual; the assertion is on what the client chose.
    let started = tokio::time::Instant::now();
    let readings = provider.read(&req).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(readings["green"][&Signal::ErrorRate].value, Some(0.25));
    assert_eq!(fake.seen().len(), 2);
}

#[tokio::test]
async fn bad_data_and_execution_errors_fail_at_once_naming_the_deployment_and_signal() {
    for (status, body, error_type) in [(400, BAD_DATA, "bad_data"), (422, EXECUTION, "execution")] {
        let fake = Fake::start(move |_, _| fixture(status, body)).await;
        let provider = PrometheusProvider::new(config(&fake)).unwrap();
        let err = provider
            .read(&request(&[Signal::ErrorRate]))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "endpoint fraud: deployment green: error_rate: {error_type}: "
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("prometheus answered {status}")),
            "{text}"
        );
        assert!(!err.is_transient(), "{text}");
        assert_eq!(fake.seen().len(), 1, "{status} is not retried");
    }
}

#[tokio::test]
async fn a_503_timeout_is_retried_then_reported_as_transient() {
    let fake = Fake::start(|_, _| fixture(503, TIMEOUT)).await;
    let provider = PrometheusProvider::new(config(&fake)).unwrap();
    let err = provider
        .read(&request(&[Signal::Requests]))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(
        err.to_string().contains("timeout: query timed out"),
        "{err}"
    );
    assert_eq!(fake.seen().len(), 3, "max_attempts tries");
}

#[tokio::test]
async fn a_query_returning_several_series_is_refused_with_a_hint() {
    let fake = Fake::start(|_, _| fixture(200, TWO_SERIES)).await;
    let provider = PrometheusProvider::new(config(&fake)).unwrap();
    let err = provider
        .read(&request(&[Signal::ErrorRate]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("returned 2 series"), "{err}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn the_bearer_token_is_sent_and_never_shown() {
    let fake = Fake::start(|_, _| fixture(400, BAD_DATA)).await;
    let token = "prom-token-s3cret";
    let cfg = PrometheusConfig {
        bearer_token: Some(Secret::new(token)),
        ..config(&fake)
    };
    assert!(!format!("{cfg:?}").contains(token));
    let provider = PrometheusProvider::new(cfg).unwrap();
    let err = provider
        .read(&request(&[Signal::Requests]))
        .await
        .unwrap_err();
    assert_eq!(
        fake.seen()[0].headers.get("authorization").unwrap(),
        &format!("Bearer {token}")
    );
    assert!(!err.to_string().contains(token) && !format!("{err:?}").contains(token));
}

#[tokio::test]
async fn a_bad_template_or_url_is_refused_before_anything_is_sent() {
    let fake = Fake::start(|_, _| value("1")).await;
    let templates = QueryTemplates {
        latency_p99: r#"max(x{v="{deploymnet}"})"#.into(),
        ..QueryTemplates::default()
    };
    let err = PrometheusProvider::new(PrometheusConfig {
        templates,
        ..config(&fake)
    })
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("query template for p99: unknown placeholder {deploymnet}"),
        "{err}"
    );
    let with_password = url::Url::parse("http://u:p@127.0.0.1:9/").unwrap();
    assert!(PrometheusProvider::new(PrometheusConfig::new(with_password, "ml")).is_err());
    assert!(fake.seen().is_empty());
}

/// The gates `error_rate < 2%`, `p99 < 500ms` and `requests >= 300` judged on one read.
fn judge(readings: &flightdeck_core::metrics::Readings, window: Window) -> Vec<GateResult> {
    let gate = |signal, comparison, value| Gate {
        signal,
        comparison,
        threshold: Threshold::Absolute(value),
    };
    let gates = [
        gate(Signal::ErrorRate, Comparison::Below, 0.02),
        gate(Signal::LatencyP99, Comparison::Below, 500.0),
        gate(Signal::Requests, Comparison::AtLeast, 300.0),
    ];
    gates::evaluate(&gates, readings, "green", Some("blue"), window)
        .into_iter()
        .map(|v| v.result)
        .collect()
}

#[tokio::test]
async fn samples_outside_the_query_range_or_after_its_time_do_not_count_toward_a_gate() {
    let fake = Fake::scenarios().await;
    fake.set("blue", Scenario::good());
    let t = |hms: &str| at(&format!("2026-11-30T{hms}Z"));
    let served = |requests, errors, latency_ms| Served {
        requests,
        errors,
        latency_ms,
    };
    // Before the window 10:00–10:05: half of 300 requests fail, at 2 s.
    fake.scrape("green", t("09:54:00"), Served::NOTHING);
    fake.scrape("green", t("09:58:00"), served(300, 150, 2000.0));
    // Inside: 400 clean requests at 20 ms (the first scrape inside is the counters' base).
    fake.scrape("green", t("10:00:30"), Served::NOTHING);
    fake.scrape("green", t("10:02:00"), served(200, 0, 20.0));
    fake.scrape("green", t("10:04:30"), served(200, 0, 20.0));
    // After the window's end: 200 requests, all failing, at 5 s.
    fake.scrape("green", t("10:06:00"), served(200, 200, 5000.0));
    let provider = PrometheusProvider::new(config(&fake)).unwrap();
    let signals = [Signal::ErrorRate, Signal::LatencyP99, Signal::Requests];

    let req = request(&signals);
    let readings = provider.read(&req).await.unwrap();
    let green = &readings["green"];
    assert_eq!(green[&Signal::Requests].value, Some(400.0));
    assert_eq!(green[&Signal::ErrorRate].value, Some(0.0));
    // All 400 in the (10, 25] ms bucket: p99 interpolates to 10 + 15 × 0.99.
    let p99 = green[&Signal::LatencyP99].value.unwrap();
    assert!((p99 - 24.85).abs() < 1e-9, "{p99}");
    use GateResult::Pass;
    assert_eq!(judge(&readings, req.window), vec![Pass, Pass, Pass]);

    // The same 5-minute range evaluated at 10:07 takes in the failing scrape: the gates fail.
    let mut later = request(&signals);
    later.window = Window {
        start: t("10:02:00"),
        end: t("10:07:00"),
    };
    let readings = provider.read(&later).await.unwrap();
    let green = &readings["green"];
    // (10:02, 10:07]: the base is 10:04:30, so only the failing 200 count.
    assert_eq!(green[&Signal::Requests].value, Some(200.0));
    assert_eq!(green[&Signal::ErrorRate].value, Some(1.0));
    use GateResult::Fail;
    assert_eq!(judge(&readings, later.window), vec![Fail, Fail, Fail]);

    // A range holding one scrape has no rate [PROM P7]: an empty result, no data.
    let mut short = request(&signals);
    short.window = Window {
        start: t("10:05:00"),
        end: t("10:06:30"),
    };
    let readings = provider.read(&short).await.unwrap();
    assert!(
        readings["green"].values().all(|r| r.value.is_none()),
        "{readings:?}"
    );
    assert_eq!(judge(&readings, short.window), vec![GateResult::NoData; 3]);
    // The queries carried the window as their range and its end as `time` [PROM P1].
    let seen = fake.seen();
    assert!(
        seen.iter()
            .any(|s| s.promql.contains("[90s]") && s.time == "2026-11-30T10:06:30Z")
    );
}

// The fake's own parsing (the test kit's lib has no test target of its own).
#[test]
fn the_fake_reads_promql_durations_and_one_range_per_query() {
    use flightdeck_testkit::fake_prometheus::samples::{parse_duration, parse_time, range_of};
    assert_eq!(parse_duration("300s"), Some(300.0));
    assert_eq!(parse_duration("5m"), Some(300.0));
    assert_eq!(parse_duration("1h30m"), Some(5400.0));
    assert_eq!(parse_duration("500ms"), Some(0.5));
    assert_eq!(parse_duration("5"), None);
    assert_eq!(parse_duration(""), None);
    assert_eq!(parse_duration("m"), None);
    assert_eq!(range_of("sum(increase(x[5m]))"), Ok(300.0));
    assert!(range_of("rate(x[5m]) / rate(x[1m])").is_err());
    assert!(range_of("x").is_err());
    assert_eq!(parse_time("2026-11-30T10:05:00Z"), Some(1796033100.0));
    assert_eq!(parse_time("1796033100.5"), Some(1796033100.5));
    assert_eq!(parse_time("soon"), None);
}
