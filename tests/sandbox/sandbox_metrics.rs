//! The data plane's metrics, as Prometheus `/metrics` (Istio series [PROM P8–P10]) and as the
//! Azure Monitor metrics API on the endpoint [MON R1–R14, §7] (docs/sandbox.md, "Metrics").
//! Paused time: the sandbox clock only moves when the test (or the idle runtime) advances it,
//! so injected latency is measured exactly and buckets close when the test says so.

use std::collections::BTreeMap;
use std::time::Duration;

use flightdeck::sandbox::{MetricsConfig, SandboxConfig};
use flightdeck_testkit::sandbox::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// `timespan`: the two hours before the sandbox's now (a bare duration ends at its clock).
pub(crate) const WIDE: (&str, &str) = ("timespan", "PT2H");

pub(crate) fn config(grain: u64, lag: u64, retention: u64) -> SandboxConfig {
    SandboxConfig {
        metrics: MetricsConfig {
            grain: Duration::from_secs(grain),
            lag: Duration::from_secs(lag),
            retention: Duration::from_secs(retention),
        },
        ..Default::default()
    }
}

/// e1 with blue and green at `traffic` (and `mirror`); its scoring URL and key.
pub(crate) async fn blue_green(
    env: &Env,
    traffic: Value,
    mirror: Option<Value>,
) -> (String, String) {
    env.create_endpoint("e1", "Key").await;
    env.create_deployment("e1", "blue", "m1").await;
    env.create_deployment("e1", "green", "m2").await;
    let (status, body) = env.set_traffic("e1", traffic, mirror).await;
    assert!(status.is_success(), "{body}");
    env.scoring("e1").await
}

pub(crate) async fn query(env: &Env, params: &[(&str, &str)]) -> Value {
    let r = env.monitor("e1", "metrics", params).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// Per series (its metadata values, in order), the sum of `field` over its points.
pub(crate) fn sums(metric: &Value, field: &str) -> BTreeMap<Vec<String>, f64> {
    assert_eq!(metric["errorCode"], "Success", "{metric}");
    metric["timeseries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let key = s["metadatavalues"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["value"].as_str().unwrap().to_string())
                .collect();
            let sum = s["data"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|p| p[field].as_f64())
                .sum();
            (key, sum)
        })
        .collect()
}

pub(crate) fn key(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| p.to_string()).collect()
}

/// The non-empty points' `field` values of every series.
fn values(metric: &Value, field: &str) -> BTreeMap<Vec<String>, Vec<f64>> {
    metric["timeseries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let key = s["metadatavalues"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["value"].as_str().unwrap().to_string())
                .collect();
            let v = s["data"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|p| p[field].as_f64())
                .collect();
            (key, v)
        })
        .collect()
}

/// The Istio labels of one deployment's series with `code`.
fn istio(deployment: &str, code: u16) -> String {
    format!(
        r#"reporter="destination",destination_service_name="e1",destination_workload="e1-{deployment}",destination_version="{deployment}",destination_workload_namespace="ws",response_code="{code}""#
    )
}

/// The value of the sample line `name{labels}` in the exposition.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse().unwrap())
}

#[tokio::test(start_paused = true)]
async fn a_90_10_split_with_a_failing_green_shows_per_deployment_counts_and_5xx_share_in_both_apis()
{
    let env = Env::start_with(config(60, 0, 7200)).await;
    let (url, key_) = blue_green(&env, json!({"blue": 90, "green": 10}), None).await;
    env.add_fault(json!({"endpoint": "e1", "deployment": "green", "error_rate": 0.5}))
        .await;
    for _ in 0..100 {
        env.score(&url, &key_, None).await;
    }
    tokio::time::advance(Duration::from_secs(61)).await;
    let body = query(
        &env,
        &[
            ("metricnames", "RequestsPerMinute"),
            ("aggregation", "Total,Count,Average"),
            ("interval", "PT1M"),
            ("$filter", "deployment eq '*' and statusCodeClass eq '*'"),
            WIDE,
        ],
    )
    .await;
    let m = &body["value"][0];
    assert_eq!(m["name"]["value"], "RequestsPerMinute");
    let totals = sums(m, "total");
    assert_eq!(
        totals,
        BTreeMap::from([
            (key(&["blue", "2xx"]), 90.0),
            (key(&["green", "2xx"]), 5.0),
            (key(&["green", "5xx"]), 5.0),
        ])
    );
    let green_5xx_share = totals[&key(&["green", "5xx"])]
        / (totals[&key(&["green", "2xx"])] + totals[&key(&["green", "5xx"])]);
    assert_eq!(green_5xx_share, 0.5);
    let names = &m["timeseries"][0]["metadatavalues"];
    assert_eq!(names[0]["name"]["value"], "deployment");
    assert_eq!(names[1]["name"]["value"], "statuscodeclass", "lowercased");
    // [MON R22 emu]: one sample per minute and series, so count 1 and total = average.
    for s in m["timeseries"].as_array().unwrap() {
        for p in s["data"].as_array().unwrap() {
            if let Some(total) = p.get("total") {
                assert_eq!((&p["count"], &p["average"]), (&json!(1.0), total));
            } else {
                assert_eq!(p.as_object().unwrap().len(), 1, "an empty bucket: {p}");
            }
        }
    }

    let text = env.prometheus_text().await;
    let total = "istio_requests_total";
    assert_eq!(
        sample(&text, total, &istio("blue", 200)),
        Some(90.0),
        "{text}"
    );
    assert_eq!(sample(&text, total, &istio("green", 200)), Some(5.0));
    assert_eq!(sample(&text, total, &istio("green", 500)), Some(5.0));
    assert_eq!(sample(&text, total, &istio("blue", 500)), None);
    let count = "istio_request_duration_milliseconds_count";
    assert_eq!(sample(&text, count, &istio("green", 500)), Some(5.0));
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test(start_paused = true)]
async fn injected_latency_shows_in_the_latency_average_p95_p99_and_the_histogram() {
    let env = Env::start_with(config(60, 0, 7200)).await;
    let (url, key_) = blue_green(&env, json!({"blue": 100, "green": 0}), None).await;
    env.add_fault(json!({"endpoint": "e1", "deployment": "green", "latency_ms": 250}))
        .await;
    for _ in 0..10 {
        env.score(&url, &key_, Some("blue")).await;
        env.score(&url, &key_, Some("green")).await;
    }
    tokio::time::advance(Duration::from_secs(61)).await;
    let body = query(
        &env,
        &[
            (
                "metricnames",
                "RequestLatency,RequestLatency_P50,RequestLatency_P95,RequestLatency_P99",
            ),
            ("aggregation", "Average,Maximum"),
            ("$filter", "deployment eq '*'"),
            WIDE,
        ],
    )
    .await;
    for m in body["value"].as_array().unwrap() {
        assert_eq!(m["unit"], "MilliSeconds");
        let v = values(m, "maximum");
        assert!(!v[&key(&["green"])].is_empty(), "{m}");
        assert!(v[&key(&["green"])].iter().all(|x| *x == 250.0), "{m}");
        assert!(v[&key(&["blue"])].iter().all(|x| *x == 0.0), "{m}");
    }
    let text = env.prometheus_text().await;
    let bucket = |le: &str| {
        let labels = format!("le=\"{le}\",{}", istio("green", 200));
        sample(&text, "istio_request_duration_milliseconds_bucket", &labels)
    };
    assert_eq!(bucket("100.0"), Some(0.0), "{text}");
    assert_eq!(bucket("250.0"), Some(10.0));
    let sum = sample(
        &text,
        "istio_request_duration_milliseconds_sum",
        &istio("green", 200),
    );
    assert_eq!(sum, Some(2500.0));
}

#[tokio::test(start_paused = true)]
async fn filters_split_by_the_filtered_dimensions_and_collapse_the_others() {
    let env = Env::start_with(config(60, 0, 7200)).await;
    let (url, key_) = blue_green(&env, json!({"blue": 70, "green": 30}), None).await;
    env.add_fault(json!({"endpoint": "e1", "deployment": "green", "error_rate": 0.5}))
        .await;
    for _ in 0..20 {
        env.score(&url, &key_, None).await;
    }
    tokio::time::advance(Duration::from_secs(61)).await;
    let rpm = |filter: &'static str| {
        let env = &env;
        async move {
            let mut params = vec![
                ("metricnames", "RequestsPerMinute"),
                ("aggregation", "total"),
                WIDE,
            ];
            if !filter.is_empty() {
                params.push(("$filter", filter));
            }
            let body = query(env, &params).await;
            sums(&body["value"][0], "total")
        }
    };
    assert_eq!(
        rpm("deployment eq 'green' and statusCodeClass eq '*'").await,
        BTreeMap::from([(key(&["green", "2xx"]), 3.0), (key(&["green", "5xx"]), 3.0)])
    );
    assert_eq!(rpm("").await, BTreeMap::from([(key(&[]), 20.0)]));
    assert_eq!(
        rpm("statusCode eq '500'").await,
        BTreeMap::from([(key(&["500"]), 3.0)])
    );
    assert_eq!(
        rpm("(deployment eq 'blue' or deployment eq 'GREEN')").await,
        BTreeMap::from([(key(&["blue"]), 14.0), (key(&["green"]), 6.0)])
    );
    assert_eq!(
        rpm("modelStatusCode eq '*'").await,
        BTreeMap::from([(key(&["200"]), 17.0), (key(&["500"]), 3.0)])
    );
    // top / orderby apply with a $filter.
    for (order, want) in [("total desc", "blue"), ("total asc", "green")] {
        let body = query(
            &env,
            &[
                ("metricnames", "RequestsPerMinute"),
                ("aggregation", "Total"),
                ("$filter", "deployment eq '*'"),
                ("top", "1"),
                ("orderby", order),
                WIDE,
            ],
        )
        .await;
        let series = body["value"][0]["timeseries"].as_array().unwrap();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0]["metadatavalues"][0]["value"], want, "{order}");
    }
    // Metadata only: the series keys, no data, no interval.
    let body = query(
        &env,
        &[
            ("metricnames", "RequestsPerMinute"),
            ("$filter", "deployment eq '*'"),
            ("resulttype", "metadata"),
            WIDE,
        ],
    )
    .await;
    assert!(body.get("interval").is_none());
    let series = body["value"][0]["timeseries"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    assert!(series.iter().all(|s| s.get("data").is_none()));
}

#[tokio::test(start_paused = true)]
async fn mirrored_copies_count_for_the_mirror_and_refused_requests_count_nowhere() {
    let env = Env::start_with(config(60, 0, 7200)).await;
    let (url, key_) = blue_green(
        &env,
        json!({"blue": 100, "green": 0}),
        Some(json!({"green": 20})),
    )
    .await;
    for _ in 0..50 {
        env.score(&url, &key_, None).await;
    }
    // 401 (wrong key) and 404 (unknown deployment) never reach a deployment.
    assert_eq!(
        env.score(&url, "wrong", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        env.score(&url, &key_, Some("purple")).await.status(),
        StatusCode::NOT_FOUND
    );
    tokio::time::advance(Duration::from_secs(61)).await;
    let body = query(
        &env,
        &[
            ("metricnames", "RequestsPerMinute"),
            ("aggregation", "Total"),
            ("$filter", "deployment eq '*' and statusCode eq '*'"),
            WIDE,
        ],
    )
    .await;
    assert_eq!(
        sums(&body["value"][0], "total"),
        BTreeMap::from([
            (key(&["blue", "200"]), 50.0),
            (key(&["green", "200"]), 10.0)
        ])
    );
    let text = env.prometheus_text().await;
    assert_eq!(
        sample(&text, "istio_requests_total", &istio("green", 200)),
        Some(10.0)
    );
    assert!(!text.contains("response_code=\"401\"") && !text.contains("purple"));
}
