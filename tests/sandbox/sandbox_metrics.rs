//! The data plane's metrics, as Prometheus `/metrics` (Istio series [PROM P8–P10]) and as the
//! Azure Monitor metrics API on the endpoint [MON R1–R14, §7] (docs/sandbox.md, "Metrics").
//! Paused time: the sandbox clock only moves when the test (or the idle runtime) advances it,
//! so injected latency is measured exactly and buckets close when the test says so.

use std::collections::BTreeMap;
use std::time::Duration;

use flightdeck::sandbox::{MetricsConfig, SandboxConfig};
use flightdeck_testkit::sandbox::*;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

/// `timespan`: the two hours before the sandbox's now (a bare duration ends at its clock).
const WIDE: (&str, &str) = ("timespan", "PT2H");

fn config(grain: u64, lag: u64, retention: u64) -> SandboxConfig {
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
async fn blue_green(env: &Env, traffic: Value, mirror: Option<Value>) -> (String, String) {
    env.create_endpoint("e1", "Key").await;
    env.create_deployment("e1", "blue", "m1").await;
    env.create_deployment("e1", "green", "m2").await;
    let (status, body) = env.set_traffic("e1", traffic, mirror).await;
    assert!(status.is_success(), "{body}");
    env.scoring("e1").await
}

async fn query(env: &Env, params: &[(&str, &str)]) -> Value {
    let r = env.monitor("e1", "metrics", params).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// Per series (its metadata values, in order), the sum of `field` over its points.
fn sums(metric: &Value, field: &str) -> BTreeMap<Vec<String>, f64> {
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

fn key(parts: &[&str]) -> Vec<String> {
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

async fn flat_error(r: reqwest::Response) -> (StatusCode, String, String) {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert!(body.get("error").is_none(), "flat, not wrapped: {body}");
    (
        status,
        body["code"].as_str().unwrap_or_default().to_string(),
        body["message"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test(start_paused = true)]
async fn bad_queries_get_flat_400s_and_validate_dimensions_decides_unknown_values() {
    let env = Env::start_with(config(60, 0, 7200)).await;
    let (url, key_) = blue_green(&env, json!({"blue": 100, "green": 0}), None).await;
    env.score(&url, &key_, None).await;
    tokio::time::advance(Duration::from_secs(61)).await;
    let rpm = ("metricnames", "RequestsPerMinute");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("metricnames", "RequestsPerMinute,NoSuchMetric")],
            "NoSuchMetric",
        ),
        (vec![rpm, ("interval", "PT5M")], "time grain"),
        (vec![rpm, ("aggregation", "median")], "aggregation"),
        (vec![rpm, ("timespan", "yesterday")], "timespan"),
        (
            vec![
                rpm,
                ("$filter", "deployment eq 'blue' or statusCode eq '200'"),
            ],
            "or may only",
        ),
        (vec![rpm, ("$filter", "instanceId eq '*'")], "no dimension"),
        (vec![rpm, ("$filter", "deployment eq 'purple'")], "purple"),
        (
            vec![
                rpm,
                ("$filter", "deployment eq 'purple'"),
                ("ValidateDimensions", "true"),
            ],
            "purple",
        ),
        (
            vec![
                rpm,
                ("metricnamespace", "Microsoft.Storage/storageAccounts"),
            ],
            "namespace",
        ),
    ];
    for (params, needle) in cases {
        let (status, code, message) = flat_error(env.monitor("e1", "metrics", &params).await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "BadRequest"),
            "{params:?}"
        );
        assert!(message.contains(needle), "{params:?}: {message}");
    }
    // ValidateDimensions=false: a never-seen value matches nothing.
    let body = query(
        &env,
        &[
            rpm,
            ("$filter", "deployment eq 'purple'"),
            ("ValidateDimensions", "false"),
            WIDE,
        ],
    )
    .await;
    assert_eq!(body["value"][0]["timeseries"], json!([]));
    assert_eq!(body["value"][0]["errorCode"], "Success");
    // AutoAdjustTimegrain picks the one grain.
    let body = query(
        &env,
        &[
            rpm,
            ("interval", "PT5M"),
            ("AutoAdjustTimegrain", "true"),
            WIDE,
        ],
    )
    .await;
    assert_eq!(body["interval"], "PT1M");
    // The api-version, the token and the endpoint are checked.
    let r = env
        .http
        .get(format!(
            "{}/providers/Microsoft.Insights/metrics",
            env.ep_url("e1")
        ))
        .query(&[("api-version", "2025-12-01"), rpm])
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(flat_error(r).await.0, StatusCode::BAD_REQUEST);
    let r = env
        .http
        .get(format!(
            "{}/providers/Microsoft.Insights/metrics",
            env.ep_url("e1")
        ))
        .query(&[("api-version", MONITOR_API), rpm])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (status, code, _) = flat_error(env.monitor("nope", "metrics", &[rpm]).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "ResourceNotFound")
    );
}

#[tokio::test(start_paused = true)]
async fn a_bucket_appears_only_the_publication_lag_after_it_closes() {
    let env = Env::start_with(config(60, 600, 7200)).await;
    let (url, key_) = blue_green(&env, json!({"blue": 100, "green": 0}), None).await;
    for _ in 0..3 {
        env.score(&url, &key_, None).await;
    }
    let params = [
        ("metricnames", "RequestsPerMinute"),
        ("aggregation", "Total"),
        ("$filter", "deployment eq 'blue'"),
        WIDE,
    ];
    // Recorded (so ValidateDimensions accepts 'blue'), not yet published.
    let body = query(&env, &params).await;
    assert_eq!(body["value"][0]["timeseries"], json!([]));
    tokio::time::advance(Duration::from_secs(61)).await;
    let body = query(&env, &params).await;
    assert_eq!(
        body["value"][0]["timeseries"],
        json!([]),
        "closed, within the lag"
    );
    tokio::time::advance(Duration::from_secs(600)).await;
    let body = query(&env, &params).await;
    assert_eq!(
        sums(&body["value"][0], "total"),
        BTreeMap::from([(key(&["blue"]), 3.0)])
    );
}

#[tokio::test(start_paused = true)]
async fn buckets_and_idle_prometheus_series_are_kept_only_for_the_retention() {
    let env = Env::start_with(config(60, 0, 600)).await;
    let (url, key_) = blue_green(&env, json!({"blue": 100, "green": 0}), None).await;
    env.score(&url, &key_, None).await;
    env.score(&url, &key_, None).await;
    tokio::time::advance(Duration::from_secs(61)).await;
    let params = [
        ("metricnames", "RequestsPerMinute"),
        ("aggregation", "Total"),
        ("$filter", "deployment eq 'blue'"),
        ("ValidateDimensions", "false"),
        WIDE,
    ];
    let body = query(&env, &params).await;
    assert_eq!(
        sums(&body["value"][0], "total"),
        BTreeMap::from([(key(&["blue"]), 2.0)])
    );
    assert!(env.prometheus_text().await.contains("e1-blue"));
    tokio::time::advance(Duration::from_secs(700)).await;
    let body = query(&env, &params).await;
    assert_eq!(
        body["value"][0]["timeseries"],
        json!([]),
        "dropped after 10 min"
    );
    let (status, _, message) = flat_error(
        env.monitor(
            "e1",
            "metrics",
            &[
                ("metricnames", "RequestsPerMinute"),
                ("$filter", "deployment eq 'blue'"),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no longer seen: {message}");
    assert!(!env.prometheus_text().await.contains("e1-blue"));
}

#[tokio::test(start_paused = true)]
async fn metric_definitions_advertise_the_configured_grain_and_queries_use_it() {
    let env = Env::start_with(config(1, 0, 3600)).await;
    let (url, key_) = blue_green(&env, json!({"blue": 100, "green": 0}), None).await;
    let r = env.monitor("e1", "metricDefinitions", &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let defs: Value = r.json().await.unwrap();
    let names: Vec<&str> = defs["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"]["value"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "RequestsPerMinute",
            "RequestLatency",
            "RequestLatency_P50",
            "RequestLatency_P90",
            "RequestLatency_P95",
            "RequestLatency_P99"
        ]
    );
    let rpm = &defs["value"][0];
    assert_eq!(
        rpm["metricAvailabilities"],
        json!([{"timeGrain": "PT1S", "retention": "PT1H"}])
    );
    let info = env.sandbox_json("/_sandbox/metrics").await;
    assert_eq!(
        (&info["grain"], &info["lag"], &info["retention"]),
        (&json!("PT1S"), &json!("PT0S"), &json!("PT1H"))
    );
    assert!(chrono::DateTime::parse_from_rfc3339(info["now"].as_str().unwrap()).is_ok());
    let dims: Vec<&str> = rpm["dimensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["value"].as_str().unwrap())
        .collect();
    assert_eq!(
        dims,
        [
            "deployment",
            "statusCode",
            "statusCodeClass",
            "modelStatusCode"
        ]
    );
    env.score(&url, &key_, None).await;
    tokio::time::advance(Duration::from_secs(2)).await;
    let grain = rpm["metricAvailabilities"][0]["timeGrain"]
        .as_str()
        .unwrap();
    let body = query(
        &env,
        &[
            ("metricnames", "RequestsPerMinute"),
            ("aggregation", "Total"),
            ("interval", grain),
            ("timespan", "PT1M"),
        ],
    )
    .await;
    assert_eq!(body["interval"], "PT1S");
    let data = body["value"][0]["timeseries"][0]["data"]
        .as_array()
        .unwrap();
    // One point per second; the unaligned start adds the bucket it falls in.
    assert!((60..=61).contains(&data.len()), "{}", data.len());
    assert_eq!(
        data.iter().filter_map(|p| p["total"].as_f64()).sum::<f64>(),
        1.0
    );
    let r = env
        .monitor(
            "e1",
            "metrics",
            &[("metricnames", "RequestsPerMinute"), ("interval", "PT1M")],
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "PT1M is not this sandbox's grain"
    );
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

/// The `Response` shape of Metrics_List [MON R9, R10, R5], closed: any field outside the
/// contract's fails the parse.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct Response {
    cost: Option<u64>,
    timespan: String,
    interval: Option<String>,
    namespace: Option<String>,
    resourceregion: Option<String>,
    value: Vec<Metric>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct Metric {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    name: Localized,
    display_description: Option<String>,
    unit: String,
    error_code: Option<String>,
    error_message: Option<String>,
    timeseries: Vec<Series>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct Localized {
    value: String,
    localized_value: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Series {
    metadatavalues: Option<Vec<MetadataValue>>,
    data: Option<Vec<Point>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct MetadataValue {
    name: Localized,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct Point {
    time_stamp: String,
    average: Option<f64>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    total: Option<f64>,
    count: Option<f64>,
}

#[tokio::test(start_paused = true)]
async fn responses_parse_with_the_shapes_of_the_contract_examples() {
    let fixture: Value =
        serde_json::from_str(include_str!("fixtures/monitor_get_metric.json")).unwrap();
    let example: Response =
        serde_json::from_value(fixture["responses"]["200"]["body"].clone()).unwrap();
    assert_eq!(example.value[0].timeseries.len(), 2);
    assert_eq!(
        example.value[1].error_code.as_deref(),
        Some("InvalidSamplingType")
    );

    let env = Env::start_with(config(60, 0, 7200)).await;
    let (url, key_) = blue_green(&env, json!({"blue": 100, "green": 0}), None).await;
    env.score(&url, &key_, None).await;
    tokio::time::advance(Duration::from_secs(61)).await;
    let body = query(
        &env,
        &[
            ("metricnames", "RequestsPerMinute,RequestLatency_P99"),
            ("aggregation", "average,minimum,maximum,total,count"),
            ("$filter", "deployment eq '*'"),
            ("timespan", "PT10M"),
        ],
    )
    .await;
    let ours: Response = serde_json::from_value(body).unwrap();
    assert_eq!(ours.value.len(), 2);
    assert_eq!(ours.interval.as_deref(), Some("PT1M"));
    let series = &ours.value[0].timeseries[0];
    let meta = &series.metadatavalues.as_ref().unwrap()[0];
    assert_eq!(
        (meta.name.value.as_str(), meta.value.as_str()),
        ("deployment", "blue")
    );
    let points = series.data.as_ref().unwrap();
    assert!(points.len() >= 10);
    assert_eq!(points.iter().filter_map(|p| p.total).sum::<f64>(), 1.0);
    assert!(
        points
            .iter()
            .any(|p| p.average.is_none() && p.count.is_none()),
        "empty buckets"
    );
}
