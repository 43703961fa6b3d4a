//! A fake MLflow tracking server on 127.0.0.1, built to ../shared/reference/mlflow/CONTRACT.md:
//! the registry reads flightdeck uses ([MLFLOW A2]: `registered-models/alias`,
//! `model-versions/get`, `registered-models/get`) with the documented shapes ([MLFLOW A3, A4]) and
//! error bodies ([MLFLOW A7]), `POST registered-models/alias` that moves an alias and then
//! delivers `model_version_alias.created` to each webhook ([MLFLOW B2, B4]), and a webhook sender
//! that builds the body, headers and signature as mlflow/webhooks/delivery.py does
//! ([MLFLOW B5, B7, B8]: Python `json.dumps` separators, an isoformat `+00:00` timestamp,
//! `X-MLflow-Timestamp` in seconds, `v1,base64(HMAC-SHA256(secret, "{id}.{ts}.{body}"))`).
//! The signature is computed here, independently of the agent's verifier.
//!
//! Use from a test: `use flightdeck_testkit::fake_mlflow;`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

#[derive(Default)]
struct Registry {
    /// Versions by model: version → status.
    models: BTreeMap<String, BTreeMap<String, String>>,
    /// (model, alias) → version.
    aliases: BTreeMap<(String, String), String>,
    /// (model, version) → stage.
    stages: BTreeMap<(String, String), String>,
    webhooks: Vec<(String, String)>,
    /// `Authorization` header values seen.
    authorization: Vec<String>,
    /// Reads served, by path.
    reads: Vec<String>,
}

/// A running fake; stops when dropped.
pub struct FakeMlflow {
    pub base: String,
    state: Arc<Mutex<Registry>>,
    client: reqwest::Client,
    stop: tokio_util::sync::CancellationToken,
}

impl Drop for FakeMlflow {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A delivery as the fake sent it, for resending (redelivery) or tampering.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub url: String,
    pub id: String,
    pub timestamp: String,
    pub body: String,
    pub signature: String,
}

/// `v1,<base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}"))>` [MLFLOW B8].
pub fn signature(secret: &str, id: &str, timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let bytes = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// A JSON string as Python's `json.dumps` writes it for ASCII text.
fn py(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// The `model_version_alias.created` body, byte for byte as MLflow sends it [MLFLOW B5, B6].
pub fn alias_body(name: &str, alias: &str, version: &str) -> String {
    let timestamp = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        .to_string();
    format!(
        "{{\"entity\": \"model_version_alias\", \"action\": \"created\", \"timestamp\": {}, \"data\": {{\"name\": {}, \"alias\": {}, \"version\": {}}}}}",
        py(&timestamp),
        py(name),
        py(alias),
        py(version)
    )
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(json!({"error_code": code, "message": message})),
    )
        .into_response()
}

fn version_json(r: &Registry, name: &str, version: &str, status: &str) -> Value {
    let aliases: Vec<&String> = r
        .aliases
        .iter()
        .filter(|((m, _), v)| m == name && *v == version)
        .map(|((_, a), _)| a)
        .collect();
    let mut v = json!({
        "name": name,
        "version": version,
        "creation_timestamp": 1_700_000_000_000_i64,
        "source": format!("models:/m-{name}-{version}"),
        "status": status,
        "current_stage": r.stages.get(&(name.to_string(), version.to_string())).map_or("None", String::as_str),
    });
    if !aliases.is_empty() {
        v["aliases"] = json!(aliases);
    }
    v
}

type Q = Query<BTreeMap<String, String>>;
type S = State<Arc<Mutex<Registry>>>;

fn seen(state: &Mutex<Registry>, headers: &HeaderMap, path: &str) {
    let mut r = state.lock().unwrap();
    if let Some(a) = headers.get("authorization") {
        r.authorization
            .push(a.to_str().unwrap_or_default().to_string());
    }
    r.reads.push(path.to_string());
}

async fn get_alias(State(state): S, headers: HeaderMap, Query(q): Q) -> Response {
    seen(&state, &headers, "registered-models/alias");
    let (Some(name), Some(alias)) = (q.get("name"), q.get("alias")) else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
            "Missing value for required parameter 'name' or 'alias'.".into(),
        );
    };
    let r = state.lock().unwrap();
    let Some(version) = r.aliases.get(&(name.clone(), alias.clone())) else {
        return error(
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
            format!("Registered model alias {alias} not found."),
        );
    };
    let status = r
        .models
        .get(name)
        .and_then(|m| m.get(version))
        .cloned()
        .unwrap_or_else(|| "READY".into());
    Json(json!({"model_version": version_json(&r, name, version, &status)})).into_response()
}

async fn get_version(State(state): S, headers: HeaderMap, Query(q): Q) -> Response {
    seen(&state, &headers, "model-versions/get");
    let (Some(name), Some(version)) = (q.get("name"), q.get("version")) else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
            "Missing value for required parameter 'name' or 'version'.".into(),
        );
    };
    let r = state.lock().unwrap();
    match r.models.get(name).and_then(|m| m.get(version)) {
        Some(status) => {
            Json(json!({"model_version": version_json(&r, name, version, status)})).into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
            format!("Model Version (name={name}, version={version}) not found"),
        ),
    }
}

async fn get_model(State(state): S, headers: HeaderMap, Query(q): Q) -> Response {
    seen(&state, &headers, "registered-models/get");
    let name = q.get("name").cloned().unwrap_or_default();
    let r = state.lock().unwrap();
    let Some(versions) = r.models.get(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
            format!("Registered Model with name={name} not found"),
        );
    };
    // One latest version per stage [MLFLOW A4].
    let mut latest: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for version in versions.keys() {
        let stage = r
            .stages
            .get(&(name.clone(), version.clone()))
            .cloned()
            .unwrap_or_else(|| "None".into());
        let n: u64 = version.parse().unwrap_or(0);
        if latest.get(&stage).is_none_or(|(m, _)| n > *m) {
            latest.insert(stage, (n, version.clone()));
        }
    }
    let latest: Vec<Value> = latest
        .values()
        .map(|(_, v)| version_json(&r, &name, v, &versions[v]))
        .collect();
    Json(json!({"registered_model": {"name": name, "latest_versions": latest}})).into_response()
}

impl FakeMlflow {
    pub async fn start() -> FakeMlflow {
        let state = Arc::new(Mutex::new(Registry::default()));
        let app = axum::Router::new()
            .route("/api/2.0/mlflow/registered-models/alias", get(get_alias))
            .route("/api/2.0/mlflow/model-versions/get", get(get_version))
            .route("/api/2.0/mlflow/registered-models/get", get(get_model))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = tokio_util::sync::CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(until.cancelled_owned())
                .await
        });
        FakeMlflow {
            base,
            state,
            client: reqwest::Client::new(),
            stop,
        }
    }

    /// Registers `version` of `name` with `status` (`READY`, `PENDING_REGISTRATION`, ...).
    pub fn add_version(&self, name: &str, version: &str, status: &str) {
        self.state
            .lock()
            .unwrap()
            .models
            .entry(name.into())
            .or_default()
            .insert(version.into(), status.into());
    }

    /// Puts `version` in a legacy stage.
    pub fn set_stage(&self, name: &str, version: &str, stage: &str) {
        self.state
            .lock()
            .unwrap()
            .stages
            .insert((name.into(), version.into()), stage.into());
    }

    /// Moves an alias without any webhook (a change whose delivery was lost).
    pub fn set_alias_quietly(&self, name: &str, alias: &str, version: &str) {
        self.state
            .lock()
            .unwrap()
            .aliases
            .insert((name.into(), alias.into()), version.into());
    }

    /// Subscribes `url` to `model_version_alias.created` with `secret` [MLFLOW B3].
    pub fn add_webhook(&self, url: &str, secret: &str) {
        self.state
            .lock()
            .unwrap()
            .webhooks
            .push((url.into(), secret.into()));
    }

    /// Moves an alias as `POST registered-models/alias` does, then delivers the event to every
    /// webhook; returns the deliveries and the receivers' statuses.
    pub async fn set_alias(&self, name: &str, alias: &str, version: &str) -> Vec<(Delivery, u16)> {
        self.set_alias_quietly(name, alias, version);
        let hooks = self.state.lock().unwrap().webhooks.clone();
        let mut out = Vec::new();
        for (url, secret) in hooks {
            let delivery = self.delivery(&url, &secret, &alias_body(name, alias, version), None);
            let status = self.send(&delivery).await;
            out.push((delivery, status));
        }
        out
    }

    /// A signed delivery of `body` to `url`, stamped `timestamp` (default now) [MLFLOW B7].
    pub fn delivery(
        &self,
        url: &str,
        secret: &str,
        body: &str,
        timestamp: Option<i64>,
    ) -> Delivery {
        let id = uuid::Uuid::new_v4().to_string();
        let timestamp = timestamp
            .unwrap_or_else(|| chrono::Utc::now().timestamp())
            .to_string();
        Delivery {
            url: url.into(),
            signature: signature(secret, &id, &timestamp, body),
            id,
            timestamp,
            body: body.into(),
        }
    }

    /// Posts a delivery as MLflow does; returns the receiver's status.
    pub async fn send(&self, d: &Delivery) -> u16 {
        self.client
            .post(&d.url)
            .header("Content-Type", "application/json")
            .header("X-MLflow-Delivery-Id", &d.id)
            .header("X-MLflow-Timestamp", &d.timestamp)
            .header("X-MLflow-Signature", &d.signature)
            .body(d.body.clone())
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    /// `Authorization` values the fake received.
    pub fn authorization(&self) -> Vec<String> {
        self.state.lock().unwrap().authorization.clone()
    }

    /// Registry reads served so far.
    pub fn reads(&self) -> usize {
        self.state.lock().unwrap().reads.len()
    }
}
