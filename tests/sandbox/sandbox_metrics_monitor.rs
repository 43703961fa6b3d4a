//! The Azure Monitor metrics API's edges [MON R3–R17, §7]: flat 400s, ValidateDimensions, the
//! publication lag, the retention, the advertised grain, and the contract examples' shapes.

use std::collections::BTreeMap;
use std::time::Duration;

use flightdeck_testkit::sandbox::*;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::sandbox_metrics::{WIDE, blue_green, config, key, query, sums};

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
