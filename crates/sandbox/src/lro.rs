//! Long-running operations [AML §3]: the operation records, the headers that announce
//! them, and the two polling routes (`Azure-AsyncOperation` status and `Location` result).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::time::Instant;

use super::AppState;
use super::clock::Clock;
use super::error::ArmError;
use super::shapes;
use super::state::{Store, Target};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    Primary,
    Secondary,
}

#[derive(Clone, PartialEq, Eq)]
pub enum OpKind {
    Create,
    Update,
    /// A deployment whose only change is `sku` ([AML §7.2]: goes through `Scaling`).
    Scale,
    Delete,
    RegenerateKeys {
        key_type: KeyType,
        value: String,
    },
}

impl std::fmt::Debug for OpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpKind::Create => f.write_str("Create"),
            OpKind::Update => f.write_str("Update"),
            OpKind::Scale => f.write_str("Scale"),
            OpKind::Delete => f.write_str("Delete"),
            // The new key value is a secret: never in Debug output.
            OpKind::RegenerateKeys { key_type, .. } => write!(f, "RegenerateKeys({key_type:?})"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpStatus {
    InProgress,
    Succeeded,
    Failed(ArmError),
}

impl OpStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            OpStatus::InProgress => "InProgress",
            OpStatus::Succeeded => "Succeeded",
            OpStatus::Failed(_) => "Failed",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Operation {
    pub id: String,
    pub kind: OpKind,
    pub target: Target,
    pub status: OpStatus,
    pub started: DateTime<Utc>,
    pub ended: Option<DateTime<Utc>>,
    pub due: Instant,
    /// Set when the operation is going to fail (injected fault).
    pub failure: Option<ArmError>,
    pub api_version: String,
}

impl Operation {
    pub fn new(
        kind: OpKind,
        target: Target,
        clock: &Clock,
        delay: Duration,
        failure: Option<ArmError>,
        api_version: &str,
    ) -> Self {
        let now = clock.now();
        Operation {
            id: uuid::Uuid::new_v4().to_string(),
            kind,
            target,
            status: OpStatus::InProgress,
            started: clock.utc(now),
            ended: None,
            due: now + delay,
            failure,
            api_version: api_version.to_string(),
        }
    }

    fn ops_prefix(&self, base: &str, location: &str) -> String {
        format!(
            "{base}/subscriptions/{}/providers/Microsoft.MachineLearningServices/locations/{location}",
            self.target.ws.subscription
        )
    }

    /// The `Azure-AsyncOperation` URL. Clients must treat it as opaque (§3).
    pub fn status_url(&self, base: &str, location: &str) -> String {
        format!(
            "{}/mfeOperationsStatus/{}?api-version={}&type=async",
            self.ops_prefix(base, location),
            self.id,
            self.api_version
        )
    }

    /// The `Location` URL.
    pub fn location_url(&self, base: &str, location: &str) -> String {
        format!(
            "{}/mfeOperationResults/{}?api-version={}&type=location",
            self.ops_prefix(base, location),
            self.id,
            self.api_version
        )
    }
}

/// Starts an operation on `target` that ends after the configured delay and answers 202 with
/// `Location` + `Azure-AsyncOperation` (PATCH, DELETE, regenerateKeys: §3).
pub fn accept(
    state: &AppState,
    store: &mut Store,
    kind: OpKind,
    target: Target,
    failure: Option<ArmError>,
    api_version: &str,
) -> Response {
    let op = Operation::new(
        kind,
        target,
        &state.clock,
        state.operation_delay(),
        failure,
        api_version,
    );
    let headers = lro_headers(state, &op, true);
    store.start_op(op);
    (StatusCode::ACCEPTED, headers).into_response()
}

/// Adds the LRO headers (§3): `Azure-AsyncOperation` and `x-ms-async-operation-timeout`
/// always, `Location` and `Retry-After` when `with_location` (PATCH, DELETE, regenerateKeys).
pub fn lro_headers(state: &AppState, op: &Operation, with_location: bool) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let base = &state.base_url;
    let location = &state.config.location;
    insert(
        &mut headers,
        "azure-asyncoperation",
        &op.status_url(base, location),
    );
    insert(&mut headers, "x-ms-async-operation-timeout", "PT1H");
    insert_retry_after(state, &mut headers);
    if with_location {
        insert(&mut headers, "location", &op.location_url(base, location));
    }
    headers
}

/// `Retry-After` as configured; `--retry-after none` sends none (real ARM may omit it, §3).
fn insert_retry_after(state: &AppState, headers: &mut HeaderMap) {
    if let Some(secs) = state.config.retry_after {
        insert(headers, "retry-after", &secs.to_string());
    }
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// GET …/mfeOperationsStatus/{id}: the ARM operation-status body (§3).
pub async fn operation_status(
    State(state): State<AppState>,
    Path((_sub, _location, id)): Path<(String, String, String)>,
    RawQuery(_q): RawQuery,
) -> Result<Response, ArmError> {
    let op = state.current_op(&id)?;
    let mut body = json!({
        "id": format!("{}/mfeOperationsStatus/{}", op.ops_prefix("", &state.config.location), op.id),
        "name": op.id,
        "status": op.status.as_str(),
        "startTime": shapes::timestamp(op.started),
        "percentComplete": if op.status == OpStatus::InProgress { 0.0 } else { 100.0 },
    });
    if let Some(ended) = op.ended {
        body["endTime"] = json!(shapes::timestamp(ended));
    }
    if let OpStatus::Failed(error) = &op.status {
        body["error"] = error.error_object();
    }
    let mut response = (StatusCode::OK, Json(body)).into_response();
    if op.status == OpStatus::InProgress {
        insert_retry_after(&state, response.headers_mut());
    }
    Ok(response)
}

/// GET …/mfeOperationResults/{id}: 202 while running; then 204 for a delete, 200 (with the
/// resource for updates) otherwise; a failed operation answers with its ARM error.
pub async fn operation_result(
    State(state): State<AppState>,
    Path((_sub, _location, id)): Path<(String, String, String)>,
    RawQuery(_q): RawQuery,
) -> Result<Response, ArmError> {
    let op = state.current_op(&id)?;
    match &op.status {
        OpStatus::InProgress => {
            let headers = lro_headers(&state, &op, true);
            Ok((StatusCode::ACCEPTED, headers).into_response())
        }
        // §3: a failed LRO's Location answers with the failure (status 400 plus the error).
        OpStatus::Failed(error) => Err(ArmError {
            status: StatusCode::BAD_REQUEST,
            ..error.clone()
        }),
        OpStatus::Succeeded => match op.kind {
            OpKind::Delete => Ok(StatusCode::NO_CONTENT.into_response()),
            OpKind::RegenerateKeys { .. } => Ok(StatusCode::OK.into_response()),
            _ => {
                let body = state.render_target(&op.target);
                Ok(match body {
                    Some(body) => (StatusCode::OK, Json(body)).into_response(),
                    None => StatusCode::OK.into_response(),
                })
            }
        },
    }
}
