//! Introspection: the control-plane request log and the data-plane counters, served under
//! `/_sandbox/log` and `/_sandbox/stats` (no auth). Authorization headers are never recorded.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
use super::faults::FaultMark;

#[derive(Clone, Debug, Serialize)]
pub struct LogEntry {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// HTTP status answered; 0 when the connection was dropped by a fault.
    pub status: u16,
    /// RFC 3339 with microseconds.
    pub time: String,
    /// The response came from a control-plane fault rule.
    pub fault: bool,
    pub dropped: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct DeploymentStats {
    /// Requests this deployment answered (any status).
    pub served: u64,
    /// Requests mirrored to it (R7), responses discarded.
    pub mirrored: u64,
    /// 503 answers: not ready.
    pub unavailable: u64,
    /// Injected 500 answers.
    pub failed: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct EndpointStats {
    pub requests: u64,
    pub unauthorized: u64,
    /// 404: no deployment with positive weight (R17) or unknown deployment header.
    pub not_routed: u64,
    pub deployments: BTreeMap<String, DeploymentStats>,
}

#[derive(Debug, Default)]
pub struct Journal {
    pub entries: Vec<LogEntry>,
    seq: u64,
    pub stats: BTreeMap<String, EndpointStats>,
}

impl Journal {
    pub fn record(&mut self, mut entry: LogEntry) {
        self.seq += 1;
        entry.seq = self.seq;
        self.entries.push(entry);
    }

    pub fn endpoint(&mut self, endpoint: &str) -> &mut EndpointStats {
        self.stats.entry(endpoint.to_string()).or_default()
    }

    pub fn deployment(&mut self, endpoint: &str, deployment: &str) -> &mut DeploymentStats {
        self.endpoint(endpoint)
            .deployments
            .entry(deployment.to_string())
            .or_default()
    }
}

/// Middleware around the ARM routes: records method, path, query and status of every request.
pub async fn record_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let response = next.run(req).await;
    let mark = response.extensions().get::<FaultMark>().copied();
    let dropped = mark.is_some_and(|m| m.dropped);
    let entry = LogEntry {
        seq: 0,
        method,
        path,
        query,
        status: if dropped {
            0
        } else {
            response.status().as_u16()
        },
        time: state
            .clock
            .now_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        fault: mark.is_some(),
        dropped,
    };
    tracing::debug!(method = %entry.method, path = %entry.path, status = entry.status, "sandbox arm request");
    state.journal().record(entry);
    response
}

/// `GET /_sandbox/log`.
pub async fn get_log(State(state): State<AppState>) -> Response {
    let entries = state.journal().entries.clone();
    Json(entries).into_response()
}

/// `DELETE /_sandbox/log`.
pub async fn clear_log(State(state): State<AppState>) -> Response {
    state.journal().entries.clear();
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /_sandbox/stats`: `{"endpoints": {name: {requests, …, deployments: {name: {…}}}}}`.
pub async fn get_stats(State(state): State<AppState>) -> Response {
    let stats = state.journal().stats.clone();
    Json(serde_json::json!({ "endpoints": stats })).into_response()
}
