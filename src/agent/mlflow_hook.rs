//! `POST /mlflow/webhook`: MLflow registry webhooks into the promotion loop. The delivery is
//! verified (`mlflow::webhook`: signature [MLFLOW B8], a 5-minute timestamp window), a delivery
//! id seen before is acknowledged and ignored [MLFLOW B7], and a `model_version_alias.created`
//! becomes a hint for `agent::promotion` (which re-reads the registry before writing anything).
//!
//! Answers: 202 queued; 200 ignored (another event, a redelivery, the queue full: the poll
//! catches up); 401 missing or wrong signature; 400 stale or malformed. MLflow retries only
//! 429 and 5xx [MLFLOW B9], so refusals are final.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;
use tokio::sync::mpsc;

use super::status::AgentState;
use crate::mlflow::AliasEvent;
use crate::mlflow::webhook::{self, DeliveryLog, MlflowWebhookError};
use crate::source::Secret;

/// The receiver's settings and memory.
#[derive(Clone)]
pub struct MlflowHook {
    pub secret: Secret,
    pub deliveries: Arc<Mutex<DeliveryLog>>,
    pub hints: mpsc::Sender<AliasEvent>,
}

pub fn handle(
    state: &AgentState,
    hook: &MlflowHook,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let now = chrono::Utc::now().timestamp();
    let delivery = match webhook::verify(headers, body, hook.secret.expose().as_bytes(), now) {
        Ok(delivery) => delivery,
        Err(err) => {
            let (status, result) = match err {
                MlflowWebhookError::MissingHeader(_) | MlflowWebhookError::BadSignature => {
                    (StatusCode::UNAUTHORIZED, "unauthorized")
                }
                MlflowWebhookError::Stale { .. } => (StatusCode::BAD_REQUEST, "stale"),
                _ => (StatusCode::BAD_REQUEST, "bad_request"),
            };
            tracing::warn!(error = %err, "MLflow webhook refused");
            state.metrics.mlflow_webhook(result);
            return (status, Json(json!({"error": err.to_string()}))).into_response();
        }
    };
    let first = hook
        .deliveries
        .lock()
        .map(|mut log| log.first_time(&delivery.id))
        .unwrap_or(true);
    if !first {
        tracing::info!(delivery = %delivery.id, "MLflow webhook redelivered, ignored");
        state.metrics.mlflow_webhook("redelivered");
        return (
            StatusCode::OK,
            Json(json!({"status": "ignored", "reason": format!("delivery {} was already received", delivery.id)})),
        )
            .into_response();
    }
    let Some(alias) = delivery.alias else {
        state.metrics.mlflow_webhook("ignored");
        return (
            StatusCode::OK,
            Json(json!({"status": "ignored", "reason": format!("event {} is not followed", delivery.event)})),
        )
            .into_response();
    };
    tracing::info!(model = %alias.name, alias = %alias.alias, version = %alias.version, delivery = %delivery.id, "MLflow alias moved");
    let answer = json!({"status": "queued", "model": alias.name, "alias": alias.alias, "version": alias.version});
    if hook.hints.try_send(alias).is_err() {
        state.metrics.mlflow_webhook("ignored");
        return (
            StatusCode::OK,
            Json(json!({"status": "ignored", "reason": "promotion queue full; the next poll reads the registry"})),
        )
            .into_response();
    }
    state.metrics.mlflow_webhook("accepted");
    (StatusCode::ACCEPTED, Json(answer)).into_response()
}
