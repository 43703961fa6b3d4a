//! The Azure Monitor metrics API on an online endpoint [MON R1–R14, §7]:
//! `GET {endpoint id}/providers/Microsoft.Insights/metrics` (Metrics_List) and
//! `GET {endpoint id}/providers/Microsoft.Insights/metricDefinitions` (MetricDefinitions_List),
//! api-version 2023-10-01, behind the sandbox's ARM bearer-token check.
//!
//! The grain is the `metrics.grain` knob (default PT1M, the only one Azure ML has [MON R17]),
//! advertised in `metricAvailabilities`; a bucket is published `metrics.lag` after it closes
//! [MON R18 emu]. Errors are flat `{code, message}` [MON R14].

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::AppState;
use super::arm_endpoints::EpPath;
use super::metrics::EndpointKey;
use super::monitor_query::{
    Aggregation, Params, QueryError, format_duration, parse_aggregations, parse_filter,
    parse_order_by, parse_timespan,
};
use super::monitor_series::{
    self, METRICS, MetricDef, Selection, SeriesKey, Stat, collect, seen_values,
};

pub const NAMESPACE: &str = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints";

/// At most this many time points per series (a week of minutes).
pub const MAX_POINTS: i64 = 10_080;
/// At most this many metric names per request (the 2023-10-01 spec's limit).
const MAX_METRIC_NAMES: usize = 20;

/// A refused metrics request, answered with a flat `{code, message}` [MON R14].
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
}

impl IntoResponse for MonitorError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            MonitorError::NotFound(_) => (StatusCode::NOT_FOUND, "ResourceNotFound"),
            _ => (StatusCode::BAD_REQUEST, "BadRequest"),
        };
        (
            status,
            Json(json!({ "code": code, "message": self.to_string() })),
        )
            .into_response()
    }
}

fn bad_request(message: impl Into<String>) -> MonitorError {
    MonitorError::BadRequest(message.into())
}

fn ts(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The endpoint's ARM id and region, or a flat 404; also checks api-version and metricnamespace.
fn resolve(
    state: &AppState,
    p: &EpPath,
    q: &Params,
) -> Result<(EndpointKey, String), MonitorError> {
    q.check_api_version()?;
    if let Some(ns) = q.get("metricnamespace")
        && !ns.eq_ignore_ascii_case(NAMESPACE)
    {
        return Err(bad_request(format!(
            "metric namespace {ns:?} is not available on an online endpoint; use {NAMESPACE}"
        )));
    }
    let store = state.store();
    let ep = store
        .endpoint(&p.key(), &p.ep)
        .ok_or_else(|| MonitorError::NotFound(format!("online endpoint {} was not found", p.ep)))?;
    let key = EndpointKey {
        ws: ep.ws.clone(),
        endpoint: ep.name.clone(),
    };
    Ok((key, ep.location.clone()))
}

fn metric_id(key: &EndpointKey, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Insights/metrics/{name}",
        key.ws.endpoint_id(&key.endpoint)
    )
}

fn localized(v: &str) -> Value {
    json!({ "value": v, "localizedValue": v })
}

/// `GET …/providers/Microsoft.Insights/metricDefinitions`.
pub async fn metric_definitions(
    State(state): State<AppState>,
    Path(p): Path<EpPath>,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = Params::parse(raw.as_deref());
    let (key, _) = match resolve(&state, &p, &q) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let config = state.config.metrics;
    let id = key.ws.endpoint_id(&key.endpoint);
    let value: Vec<Value> = METRICS
        .iter()
        .map(|m| {
            json!({
                "id": format!("{id}/providers/microsoft.insights/metricdefinitions/{}", m.name),
                "resourceId": id,
                "namespace": NAMESPACE,
                "name": { "value": m.name, "localizedValue": m.display },
                "displayDescription": m.description,
                "category": "Traffic",
                "metricClass": if m.unit == "Count" { "Transactions" } else { "Latency" },
                "isDimensionRequired": false,
                "unit": m.unit,
                "primaryAggregationType": "Average",
                "supportedAggregationTypes": std::iter::once("None")
                    .chain(Aggregation::ALL.iter().map(|a| a.type_name()))
                    .collect::<Vec<_>>(),
                "metricAvailabilities": [{
                    "timeGrain": format_duration(config.grain),
                    "retention": format_duration(config.retention),
                }],
                "dimensions": m.dimensions.iter().map(|d| localized(d)).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({ "value": value })).into_response()
}

/// `GET /_sandbox/metrics` (no auth): the sandbox clock's now and the metrics knobs, so a
/// client under test can compute timespans on the sandbox clock (paused in tests).
pub async fn sandbox_metrics_info(State(state): State<AppState>) -> Response {
    let config = state.config.metrics;
    Json(json!({
        "now": state.clock.now_utc().to_rfc3339_opts(SecondsFormat::Millis, true),
        "grain": format_duration(config.grain),
        "lag": format_duration(config.lag),
        "retention": format_duration(config.retention),
    }))
    .into_response()
}

/// The parsed per-request options that apply to every metric.
struct Plan {
    start: i64,
    from: i64,
    end: i64,
    full: bool,
    aggregations: Option<Vec<Aggregation>>,
    clauses: Option<Vec<super::monitor_query::Clause>>,
    validate: bool,
    metadata: bool,
    top: usize,
    order_by: Option<(Aggregation, bool)>,
}

fn plan(q: &Params, grain: Duration, now: DateTime<Utc>) -> Result<Plan, MonitorError> {
    let (start, end) = parse_timespan(q.get("timespan"), now)?;
    let grain_ms = i64::try_from(grain.as_millis()).unwrap_or(i64::MAX);
    let auto = q.flag("AutoAdjustTimegrain", false)?;
    let full = match q.get("interval") {
        None => false,
        Some(i) if i.eq_ignore_ascii_case("FULL") => true,
        Some(i) => match super::monitor_query::parse_duration(i) {
            Some(d) if d == grain || auto => false,
            _ => {
                return Err(bad_request(format!(
                    "invalid time grain {i:?}: this resource's metrics have the one time grain {} \
                     (metricDefinitions lists it); send it, FULL, or AutoAdjustTimegrain=true",
                    format_duration(grain)
                )));
            }
        },
    };
    let from = start.timestamp_millis().div_euclid(grain_ms) * grain_ms;
    let end = end.timestamp_millis();
    if !full && (end - from) / grain_ms > MAX_POINTS {
        return Err(bad_request(format!(
            "the timespan holds more than {MAX_POINTS} points of {}; shorten it",
            format_duration(grain)
        )));
    }
    let clauses = match q.get("$filter").filter(|f| !f.trim().is_empty()) {
        Some(f) => Some(parse_filter(f)?),
        None => None,
    };
    let top = match q.get("top") {
        None => 10,
        Some(t) => t.parse::<usize>().ok().filter(|t| *t > 0).ok_or_else(|| {
            bad_request(format!("invalid top {t:?}: expected a positive integer"))
        })?,
    };
    let metadata = match q.get("resultType") {
        None => false,
        Some(r) if r.eq_ignore_ascii_case("data") => false,
        Some(r) if r.eq_ignore_ascii_case("metadata") => true,
        Some(r) => {
            return Err(bad_request(format!(
                "invalid resultType {r:?}: expected Data or Metadata"
            )));
        }
    };
    Ok(Plan {
        start: start.timestamp_millis(),
        from,
        end,
        full,
        aggregations: parse_aggregations(q.get("aggregation"))?,
        clauses,
        validate: q.flag("ValidateDimensions", true)?,
        metadata,
        top,
        order_by: parse_order_by(q.get("orderby"))?,
    })
}

/// `GET …/providers/Microsoft.Insights/metrics`.
pub async fn metrics(
    State(state): State<AppState>,
    Path(p): Path<EpPath>,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = Params::parse(raw.as_deref());
    let (key, region) = match resolve(&state, &p, &q) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let names = q.get("metricnames").unwrap_or_default();
    let names: Vec<&str> = names
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return bad_request("metricnames is required by the sandbox (it has no default metric)")
            .into_response();
    }
    if names.len() > MAX_METRIC_NAMES {
        return bad_request(format!(
            "at most {MAX_METRIC_NAMES} metricnames per request"
        ))
        .into_response();
    }
    let mut defs = Vec::new();
    for n in &names {
        match monitor_series::lookup(n) {
            Some(d) => defs.push(d),
            None => {
                let valid: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
                return bad_request(format!(
                    "Failed to find metric configuration for provider: Microsoft.MachineLearningServices, \
                     resource Type: workspaces/onlineEndpoints, metric: {n}, Valid metrics: {}",
                    valid.join(",")
                ))
                .into_response();
            }
        }
    }
    let now = state.clock.now_utc();
    let config = state.config.metrics;
    let plan = match plan(&q, config.grain, now) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let lag_ms = i64::try_from(config.lag.as_millis()).unwrap_or(i64::MAX);
    let grain_ms = i64::try_from(config.grain.as_millis()).unwrap_or(i64::MAX);
    // A bucket is published once `start + grain + lag <= now`.
    let published_before = now.timestamp_millis() - lag_ms - grain_ms + 1;
    let mut store = state.metrics();
    store.prune(now);
    let mut value = Vec::new();
    for def in defs {
        match metric(def, &store, &key, &plan, published_before, grain_ms) {
            Ok(m) => value.push(m),
            Err(e) => return e.into_response(),
        }
    }
    drop(store);
    let mut body = json!({
        "cost": 0,
        "timespan": format!("{}/{}", ts(plan.start), ts(plan.end)),
        "namespace": NAMESPACE.to_ascii_lowercase(),
        "resourceregion": region,
        "value": value,
    });
    if !plan.metadata {
        body["interval"] = json!(if plan.full {
            format_duration(Duration::from_secs(
                u64::try_from((plan.end - plan.start) / 1000).unwrap_or(0),
            ))
        } else {
            format_duration(config.grain)
        });
    }
    Json(body).into_response()
}

fn metric(
    def: &'static MetricDef,
    store: &super::metrics::MetricsStore,
    key: &EndpointKey,
    plan: &Plan,
    published_before: i64,
    grain_ms: i64,
) -> Result<Value, MonitorError> {
    let mut sel: Selection<'_> = Vec::new();
    for clause in plan.clauses.iter().flatten() {
        let Some(dim) = def.dimension(&clause.dimension) else {
            return Err(bad_request(format!(
                "metric {} has no dimension {:?}; its dimensions are {}",
                def.name,
                clause.dimension,
                def.dimensions.join(", ")
            )));
        };
        if plan.validate
            && let Some(values) = &clause.values
        {
            let seen = seen_values(store, key, dim);
            if let Some(v) = values
                .iter()
                .find(|v| !seen.iter().any(|s| s.eq_ignore_ascii_case(v)))
            {
                return Err(bad_request(format!(
                    "dimension value {v:?} of dimension {dim} is not valid for metric {}: it was never \
                     emitted (send ValidateDimensions=false to get an empty result instead)",
                    def.name
                )));
            }
        }
        sel.push((dim, clause));
    }
    let mut series = collect(
        def,
        store,
        key,
        &sel,
        (plan.from, plan.end),
        published_before,
    );
    if sel.is_empty() && series.is_empty() {
        // Unsplit: one series, every point empty.
        series.insert(SeriesKey::new(), Default::default());
    }
    let aggs = plan
        .aggregations
        .clone()
        .unwrap_or(vec![Aggregation::Average]);
    let mut rows: Vec<(SeriesKey, Vec<(i64, Stat)>)> = series
        .into_iter()
        .map(|(k, by_bucket)| {
            let points = if plan.full {
                let mut all = Stat::default();
                by_bucket.values().for_each(|s| all.merge(*s));
                vec![(plan.from, all)]
            } else {
                (0..)
                    .map(|i| plan.from + i * grain_ms)
                    .take_while(|t| *t < plan.end)
                    .map(|t| (t, by_bucket.get(&t).copied().unwrap_or_default()))
                    .collect()
            };
            (k, points)
        })
        .collect();
    if plan.clauses.is_some() {
        if let Some((agg, descending)) = plan.order_by {
            let score = |points: &[(i64, Stat)]| {
                let mut all = Stat::default();
                points.iter().for_each(|(_, s)| all.merge(*s));
                if all.count == 0.0 {
                    f64::NEG_INFINITY
                } else {
                    all.value(agg)
                }
            };
            rows.sort_by(|a, b| {
                let o = score(&a.1).total_cmp(&score(&b.1));
                if descending { o.reverse() } else { o }
            });
        }
        rows.truncate(plan.top);
    }
    let timeseries: Vec<Value> = rows
        .into_iter()
        .map(|(k, points)| {
            let metadata: Vec<Value> = k
                .iter()
                .map(|(dim, v)| json!({ "name": localized(&dim.to_ascii_lowercase()), "value": v }))
                .collect();
            let mut s = json!({ "metadatavalues": metadata });
            if !plan.metadata {
                s["data"] = points
                    .iter()
                    .map(|(t, stat)| point(*t, stat, &aggs))
                    .collect();
            }
            s
        })
        .collect();
    Ok(json!({
        "id": metric_id(key, def.name),
        "type": "Microsoft.Insights/metrics",
        "name": { "value": def.name, "localizedValue": def.display },
        "displayDescription": def.description,
        "unit": def.unit,
        "timeseries": timeseries,
        "errorCode": "Success",
    }))
}

/// A `MetricValue`: `timeStamp` only when the bucket has no data [MON R5].
fn point(t: i64, stat: &Stat, aggs: &[Aggregation]) -> Value {
    let mut m = Map::new();
    m.insert("timeStamp".into(), json!(ts(t)));
    if stat.count > 0.0 {
        for a in aggs {
            m.insert(a.field().into(), json!(stat.value(*a)));
        }
    }
    Value::Object(m)
}
