//! The data plane [AML §5]: `POST <scoringUri>` with the endpoint's credential, routed
//! by the `azureml-model-deployment` header (R16) or the traffic weights (R17), mirrored (R7),
//! answered by a deterministic "model".

use std::time::Duration;

use tokio::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{self, Audience};
use super::metrics::{EndpointKey, Observation};
use super::state::{AuthMode, Deployment, WorkspaceKey};

pub const DEPLOYMENT_HEADER: &str = "azureml-model-deployment";

#[derive(Deserialize)]
pub struct ScorePath {
    sub: String,
    rg: String,
    ws: String,
    ep: String,
}

impl ScorePath {
    fn key(&self) -> WorkspaceKey {
        WorkspaceKey {
            subscription: self.sub.clone(),
            resource_group: self.rg.clone(),
            workspace: self.ws.clone(),
        }
    }
}

/// A data-plane refusal: status and message (rendered by `error`).
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": { "code": status.canonical_reason().unwrap_or("Error"), "message": message.into() } }))).into_response()
}

/// A data-plane credential check (§5 table): Key → primary/secondary key; AMLToken → a token
/// from `POST …/token` for this endpoint; AADToken → an `https://ml.azure.com` token.
fn authorize(state: &AppState, p: &ScorePath, headers: &HeaderMap) -> Result<(), Refusal> {
    let (mode, keys, id, public) = {
        let store = state.store();
        let ep = store.endpoint(&p.key(), &p.ep).ok_or_else(|| {
            Refusal(
                StatusCode::NOT_FOUND,
                format!("endpoint {} not found", p.ep),
            )
        })?;
        let public =
            ep.props.get("publicNetworkAccess").and_then(Value::as_str) != Some("Disabled");
        (
            ep.auth_mode,
            ep.keys.clone(),
            ep.ws.endpoint_id(&ep.name),
            public,
        )
    };
    let unauthorized = |why: &str| {
        state.journal().endpoint(&p.ep).unauthorized += 1;
        Refusal(StatusCode::UNAUTHORIZED, why.to_string())
    };
    let Some(token) = auth::bearer(headers) else {
        return Err(unauthorized("missing bearer credential"));
    };
    let ok = match mode {
        AuthMode::Key => {
            auth::secret_eq(token, &keys.primary) || auth::secret_eq(token, &keys.secondary)
        }
        AuthMode::AmlToken => state.token_audience(token) == Some(Audience::Endpoint(id)),
        AuthMode::AadToken => state.token_audience(token) == Some(Audience::Ml),
    };
    if !ok {
        return Err(unauthorized(&format!(
            "invalid credential for an endpoint with auth mode {}",
            mode.as_str()
        )));
    }
    if !public {
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            "public network access to this endpoint is disabled".to_string(),
        ));
    }
    Ok(())
}

/// The model that answers for `dep` now (see `Deployment::serving`), unless a `never_ready`
/// fault holds it at 503.
fn serving_model(dep: &Deployment, never_ready: bool, now: Instant) -> Option<String> {
    dep.serving(now).filter(|_| !never_ready)
}

/// A per-model factor 1..=9 (FNV-1a of the model id), so two models answer differently.
pub fn model_factor(model: &str) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in model.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % 9 + 1) as f64
}

/// Predictions: each row's sum times the model factor. Rows come from `data` or
/// `input_data` (or `input_data.data`); a row is a number or an array of numbers.
pub fn predict(body: &Value, model: &str) -> Result<Vec<f64>, String> {
    let data = body
        .get("data")
        .or_else(|| body.get("input_data").and_then(|d| d.get("data")))
        .or_else(|| body.get("input_data"));
    let Some(data) = data else {
        return Ok(Vec::new());
    };
    let rows = data.as_array().ok_or("data must be an array of rows")?;
    let factor = model_factor(model);
    rows.iter()
        .map(|row| match row {
            Value::Number(n) => n.as_f64().ok_or_else(|| "rows must be numbers".to_string()),
            Value::Array(cells) => cells
                .iter()
                .map(|c| {
                    c.as_f64()
                        .ok_or_else(|| format!("row cell {c} is not a number"))
                })
                .sum::<Result<f64, String>>(),
            other => Err(format!(
                "row {other} is not a number or an array of numbers"
            )),
        })
        .map(|sum| sum.map(|s| s * factor))
        .collect()
}

struct Decision {
    deployment: String,
    ready: bool,
    fails: bool,
    latency: Duration,
    model: String,
    mirrored_to: Option<(String, bool)>,
    /// The mirrored copy's answer status and injected latency, for the metrics.
    mirror_outcome: Option<(u16, Duration)>,
}

/// `POST /inference/{sub}/{rg}/{ws}/{ep}/score`.
pub async fn score(
    State(state): State<AppState>,
    Path(p): Path<ScorePath>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = state.clock.now();
    // Refusals (401, 403, 404) never reach a deployment: they are not in the metrics.
    if let Err(refusal) = authorize(&state, &p, &headers) {
        return refusal.into_response();
    }
    let requested = headers
        .get(DEPLOYMENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|s| !s.is_empty());
    let now = state.clock.now();
    let decision = {
        let mut store = state.store();
        let ws = p.key();
        let Some(ep) = store.endpoint_mut(&ws, &p.ep) else {
            return error(
                StatusCode::NOT_FOUND,
                format!("endpoint {} not found", p.ep),
            );
        };
        let chosen = match &requested {
            // R16: the header reaches a deployment even at 0 %; R7: such requests are not mirrored.
            Some(d) if ep.deployments.contains_key(d) => d.clone(),
            Some(d) => {
                let message = format!("deployment {d} not found in endpoint {}", p.ep);
                drop(store);
                state.journal().endpoint(&p.ep).not_routed += 1;
                return error(StatusCode::NOT_FOUND, message);
            }
            None => match ep.routing.pick(&ep.traffic.clone()) {
                Some(chosen) => chosen,
                None => {
                    drop(store);
                    state.journal().endpoint(&p.ep).not_routed += 1;
                    // R17
                    return error(
                        StatusCode::NOT_FOUND,
                        format!(
                            "endpoint {} doesn't have any valid deployment with positive weight",
                            p.ep
                        ),
                    );
                }
            },
        };
        let mirror = match requested {
            Some(_) => None,
            None => {
                let share = ep
                    .mirror
                    .as_ref()
                    .and_then(|m| m.iter().find(|(_, w)| **w > 0))
                    .map(|(d, w)| (d.clone(), *w));
                share.and_then(|(d, w)| ep.routing.mirror_next(w).then_some(d))
            }
        };
        let store = &mut *store;
        let ep = store.endpoint(&ws, &p.ep).expect("endpoint found above");
        let never_ready = |d: &str| {
            store
                .faults
                .get(&(p.ep.clone(), d.to_string()))
                .is_some_and(|f| f.never_ready)
        };
        let chosen_dep = &ep.deployments[&chosen];
        let served = serving_model(chosen_dep, never_ready(&chosen), now);
        let ready = served.is_some();
        // Unready: the configured model (unused, the answer is a 503).
        let model = served.unwrap_or_else(|| {
            chosen_dep
                .props
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        });
        let mirrored_to = mirror.map(|d| {
            let ok = ep
                .deployments
                .get(&d)
                .is_some_and(|dep| serving_model(dep, never_ready(&d), now).is_some());
            (d, ok)
        });
        // Metrics [MON R22: doc-silent]: the sandbox counts a mirrored copy for the mirror
        // deployment, with that deployment's injected latency and error rate.
        let mirror_outcome = mirrored_to.as_ref().map(|(d, ok)| {
            let fault = store.faults.get_mut(&(p.ep.clone(), d.clone()));
            let latency = Duration::from_millis(fault.as_ref().map_or(0, |f| f.latency_ms));
            let fails = *ok && fault.is_some_and(|f| f.next_fails());
            let status = match (ok, fails) {
                (false, _) => 503,
                (true, true) => 500,
                (true, false) => 200,
            };
            (status, latency)
        });
        let fault = store.faults.get_mut(&(p.ep.clone(), chosen.clone()));
        let latency = Duration::from_millis(fault.as_ref().map_or(0, |f| f.latency_ms));
        let fails = ready && fault.is_some_and(|f| f.next_fails());
        Decision {
            deployment: chosen,
            ready,
            fails,
            latency,
            model,
            mirrored_to,
            mirror_outcome,
        }
    };
    {
        let mut journal = state.journal();
        journal.endpoint(&p.ep).requests += 1;
        if let Some((m, true)) = &decision.mirrored_to {
            journal.deployment(&p.ep, m).mirrored += 1;
        }
        let stats = journal.deployment(&p.ep, &decision.deployment);
        stats.served += 1;
        if !decision.ready {
            stats.unavailable += 1;
        } else if decision.fails {
            stats.failed += 1;
        }
    }
    if !decision.latency.is_zero() {
        state.clock.sleep(decision.latency).await;
    }
    let mut response = if !decision.ready {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("deployment {} is not ready", decision.deployment),
        )
    } else if decision.fails {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "deployment {} failed: injected by a sandbox fault (error_rate)",
                decision.deployment
            ),
        )
    } else {
        match serde_json::from_slice::<Value>(&body)
            .map_err(|e| format!("request body is not valid JSON: {e}"))
            .and_then(|v| predict(&v, &decision.model))
        {
            Ok(predictions) => Json(json!({
                "deployment": decision.deployment,
                "model": decision.model,
                "endpoint": p.ep,
                "predictions": predictions,
            }))
            .into_response(),
            Err(message) => error(StatusCode::BAD_REQUEST, message),
        }
    };
    if let Ok(v) = HeaderValue::from_str(&decision.deployment) {
        response.headers_mut().insert(DEPLOYMENT_HEADER, v);
    }
    record(&state, &p, &decision, response.status().as_u16(), started);
    response
}

/// Records the answered request (and its mirrored copy) in the metrics store.
fn record(state: &AppState, p: &ScorePath, decision: &Decision, status: u16, started: Instant) {
    let endpoint = EndpointKey {
        ws: p.key(),
        endpoint: p.ep.clone(),
    };
    let now = state.clock.now();
    let mut metrics = state.metrics();
    metrics.record(&Observation {
        endpoint: &endpoint,
        deployment: &decision.deployment,
        status,
        // No container answered an unready deployment's request.
        model_status: if decision.ready { status } else { 0 },
        latency: now.saturating_duration_since(started),
        at: state.clock.utc(now),
    });
    if let (Some((mirror, _)), Some((status, latency))) =
        (&decision.mirrored_to, decision.mirror_outcome)
    {
        metrics.record(&Observation {
            endpoint: &endpoint,
            deployment: mirror,
            status,
            model_status: if status == 503 { 0 } else { status },
            latency,
            // The copy is sent when the request arrives and completes after its latency.
            at: state.clock.utc(started + latency),
        });
    }
}

/// `GET /inference/{sub}/{rg}/{ws}/{ep}/swagger.json`: a minimal OpenAPI document.
pub async fn swagger(
    State(state): State<AppState>,
    Path(p): Path<ScorePath>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = authorize(&state, &p, &headers) {
        return refusal.into_response();
    }
    Json(json!({
        "swagger": "2.0",
        "info": { "title": format!("{} (flightdeck sandbox)", p.ep), "version": "1.0" },
        "paths": { "/score": { "post": {
            "parameters": [{ "in": "body", "name": "body", "schema": { "type": "object", "properties": { "data": { "type": "array" } } } }],
            "responses": { "200": { "description": "predictions" } }
        } } }
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_are_row_sums_times_the_model_factor() {
        let body = json!({"data": [[1, 2, 3], [10, 0, 0]]});
        let f = model_factor("m1");
        assert_eq!(predict(&body, "m1").unwrap(), vec![6.0 * f, 10.0 * f]);
        assert!((1.0..=9.0).contains(&f));
    }

    #[test]
    fn bodies_without_rows_predict_nothing_and_bad_rows_are_errors() {
        assert_eq!(
            predict(&json!({"other": 1}), "m").unwrap(),
            Vec::<f64>::new()
        );
        assert!(predict(&json!({"data": [["x"]]}), "m").is_err());
        assert!(predict(&json!({"data": 3}), "m").is_err());
        assert_eq!(
            predict(&json!({"input_data": {"data": [1, 2]}}), "m")
                .unwrap()
                .len(),
            2
        );
    }
}
