//! A scripted loopback ARM fake for the azureml client tests: canned answers per (method, path),
//! the last one repeating; a log of every request seen. `{base}` in a canned body or header is
//! replaced by the fake's base URL. `Canned::drop()` kills the connection without answering,
//! which is how a lost response looks to the client.
//!
//! Every route scripted with `on`/`on_query`/`on_fn` is an expectation: if no request ever
//! matched it, [`Fake::verify`] (called on drop too, unless the test is already panicking)
//! panics listing the routes that were never called. A route that may or may not be called is
//! scripted with `allow`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use flightdeck::backend::azureml::{
    AzureMlBackend, AzureMlConfig, AzureMlError, RetryPolicy, Secret, TokenSource,
};
use flightdeck::model::AzureMlTarget;
use flightdeck::plan::{Action, Step};
use serde_json::{Value, json};

pub const TOKEN: &str = "arm-token-for-tests";
pub const WS: &str = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws";

/// `{WS}/onlineEndpoints` + rest.
pub fn eps(rest: &str) -> String {
    format!("{WS}/onlineEndpoints{rest}")
}

#[derive(Clone, Debug)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub drop: bool,
    pub delay: Duration,
}

impl Canned {
    pub fn json(status: u16, body: Value) -> Canned {
        Canned {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
            drop: false,
            delay: Duration::ZERO,
        }
    }
    pub fn empty(status: u16) -> Canned {
        Canned {
            status,
            headers: vec![],
            body: String::new(),
            drop: false,
            delay: Duration::ZERO,
        }
    }
    pub fn error(status: u16, code: &str, message: &str) -> Canned {
        Canned::json(status, json!({"error": {"code": code, "message": message}}))
    }
    /// The connection is closed without an answer (after the request was read).
    pub fn drop() -> Canned {
        Canned {
            drop: true,
            ..Canned::empty(500)
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Canned {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn delay(mut self, delay: Duration) -> Canned {
        self.delay = delay;
        self
    }
}

/// One request the fake saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: String,
    /// When the request arrived, on the tokio clock (virtual under paused time), to check a
    /// schedule of requests without real waits.
    pub at: tokio::time::Instant,
}

impl Seen {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    pub fn api_version(&self) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == "api-version")
            .map(|(_, v)| v.into_owned())
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

type Dynamic = Arc<dyn Fn(&Seen) -> Canned + Send + Sync>;

struct Route {
    method: String,
    path: String,
    query_contains: Option<String>,
    answers: VecDeque<Canned>,
    dynamic: Option<Dynamic>,
    /// Whether a request without this route is a failure of the test (see `Fake::verify`).
    expected: bool,
    /// Requests this route answered.
    hits: usize,
}

#[derive(Default)]
struct Script {
    routes: Vec<Route>,
    log: Vec<Seen>,
}

pub struct Fake {
    pub base: String,
    script: Arc<Mutex<Script>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Fake {
    pub async fn start() -> Fake {
        let script = Arc::new(Mutex::new(Script::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state((script.clone(), base.clone()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Fake {
            base,
            script,
            stop: Some(stop),
        }
    }

    /// Answers `method path` with these, in order; the last repeats.
    pub fn on(&self, method: &str, path: &str, answers: Vec<Canned>) -> &Self {
        self.push(method, path, None, answers, None)
    }

    /// Like `on`, for a route the test does not require to be called.
    pub fn allow(&self, method: &str, path: &str, answers: Vec<Canned>) -> &Self {
        self.push(method, path, None, answers, None);
        let mut script = self.script.lock().unwrap();
        script.routes.last_mut().unwrap().expected = false;
        drop(script);
        self
    }

    /// `METHOD path[?query]` of every expected route no request has matched yet.
    pub fn unmet(&self) -> Vec<String> {
        let script = self.script.lock().unwrap();
        script
            .routes
            .iter()
            .filter(|r| r.expected && r.hits == 0)
            .map(|r| match &r.query_contains {
                Some(q) => format!("{} {} (query containing {q:?})", r.method, r.path),
                None => format!("{} {}", r.method, r.path),
            })
            .collect()
    }

    /// Panics listing every expected route that was never called.
    pub fn verify(&self) {
        let unmet = self.unmet();
        assert!(
            unmet.is_empty(),
            "scripted ARM fake: expected calls that never came:\n  {}\nrequests seen:\n  {}",
            unmet.join("\n  "),
            self.lines().join("\n  ")
        );
    }

    /// Like `on`, only for requests whose query contains `query`; checked before plain routes.
    pub fn on_query(&self, method: &str, path: &str, query: &str, answers: Vec<Canned>) -> &Self {
        self.push(method, path, Some(query.to_string()), answers, None)
    }

    /// Answers with a function of the request.
    pub fn on_fn(
        &self,
        method: &str,
        path: &str,
        f: impl Fn(&Seen) -> Canned + Send + Sync + 'static,
    ) -> &Self {
        self.push(method, path, None, vec![], Some(Arc::new(f)))
    }

    fn push(
        &self,
        method: &str,
        path: &str,
        query_contains: Option<String>,
        answers: Vec<Canned>,
        dynamic: Option<Dynamic>,
    ) -> &Self {
        let mut script = self.script.lock().unwrap();
        // A later script for the same route replaces the earlier one.
        script.routes.retain(|r| {
            !(r.method == method && r.path == path && r.query_contains == query_contains)
        });
        script.routes.push(Route {
            method: method.to_string(),
            path: path.to_string(),
            query_contains,
            answers: answers.into(),
            dynamic,
            expected: true,
            hits: 0,
        });
        self
    }

    /// Every request seen so far.
    pub fn log(&self) -> Vec<Seen> {
        self.script.lock().unwrap().log.clone()
    }

    /// `METHOD path` of every request, in order.
    pub fn lines(&self) -> Vec<String> {
        self.log().iter().map(Seen::line).collect()
    }

    /// How many `METHOD path` requests were seen.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.log()
            .iter()
            .filter(|s| s.method == method && s.path == path)
            .count()
    }

    /// Requests with a method other than GET (the writes).
    pub fn writes(&self) -> Vec<Seen> {
        self.log()
            .into_iter()
            .filter(|s| s.method != "GET")
            .collect()
    }

    pub fn url(&self) -> url::Url {
        url::Url::parse(&self.base).unwrap()
    }

    /// Verifies the expectations (see [`Fake::verify`]) and stops the server.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if !std::thread::panicking() {
            self.verify();
        }
    }
}

async fn handle(
    State((script, base)): State<(Arc<Mutex<Script>>, String)>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_else(|_| Bytes::new());
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: tokio::time::Instant::now(),
    };
    let canned = {
        let mut script = script.lock().unwrap();
        script.log.push(seen.clone());
        let mut candidates: Vec<&mut Route> = script
            .routes
            .iter_mut()
            .filter(|r| r.method == seen.method && r.path == seen.path)
            .filter(|r| {
                r.query_contains
                    .as_ref()
                    .is_none_or(|q| seen.query.contains(q.as_str()))
            })
            .collect();
        candidates.sort_by_key(|r| r.query_contains.is_none());
        match candidates.into_iter().next() {
            Some(route) => {
                route.hits += 1;
                match &route.dynamic {
                    Some(f) => f(&seen),
                    None if route.answers.len() > 1 => route.answers.pop_front().unwrap(),
                    None => route
                        .answers
                        .front()
                        .cloned()
                        .unwrap_or_else(|| Canned::empty(500)),
                }
            }
            None => Canned::error(
                404,
                "ResourceNotFound",
                &format!("no script for {}", seen.line()),
            ),
        }
    };
    if !canned.delay.is_zero() {
        tokio::time::sleep(canned.delay).await;
    }
    if canned.drop {
        // Unwinding the connection task closes the socket without a response; resume_unwind
        // skips the panic hook, so the test output stays clean.
        std::panic::resume_unwind(Box::new("dropped by script"));
    }
    let mut response = Response::builder().status(StatusCode::from_u16(canned.status).unwrap());
    for (k, v) in &canned.headers {
        response = response.header(k, v.replace("{base}", &base));
    }
    response
        .body(Body::from(canned.body.replace("{base}", &base)))
        .unwrap()
}

/// A fixed ARM token.
pub struct StaticToken;

#[async_trait]
impl TokenSource for StaticToken {
    async fn token(&self, scope: &str) -> Result<Secret, AzureMlError> {
        Ok(Secret::new(format!("{TOKEN}|{scope}")))
    }
}

/// A plan step for `endpoint`, as the executor hands it to the backend.
pub fn step(endpoint: &str, action: Action) -> Step {
    Step::new(endpoint.into(), action, "test".into())
}

pub fn target() -> AzureMlTarget {
    AzureMlTarget {
        subscription_id: "sub".into(),
        resource_group: "rg".into(),
        workspace: "ws".into(),
        location: "westus2".into(),
    }
}

/// Fast config against the fake: polls and backoffs of a few milliseconds.
pub fn config(fake: &Fake) -> AzureMlConfig {
    AzureMlConfig {
        arm_endpoint: fake.url(),
        api_version: "2025-12-01".into(),
        step_timeout: Duration::from_secs(5),
        test_request_timeout: Duration::from_secs(5),
        min_poll_interval: Duration::from_millis(20),
        max_poll_interval: Duration::from_millis(20),
        retry: RetryPolicy {
            max_attempts: 5,
            base_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            ..RetryPolicy::default()
        },
    }
}

pub fn backend(fake: &Fake) -> AzureMlBackend {
    AzureMlBackend::new(&target(), config(fake), Arc::new(StaticToken)).unwrap()
}

/// An endpoint body as ARM returns it.
pub fn endpoint_body(name: &str, state: &str, traffic: Value, mirror: Value) -> Value {
    json!({
        "id": format!("{WS}/onlineEndpoints/{name}"),
        "name": name,
        "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
        "location": "westus2",
        "tags": {"team": "ml"},
        "identity": {"type": "SystemAssigned", "principalId": "p", "tenantId": "t"},
        "systemData": {"createdBy": "someone"},
        "properties": {
            "authMode": "Key",
            "description": "scores",
            "publicNetworkAccess": "Enabled",
            "traffic": traffic,
            "mirrorTraffic": mirror,
            "provisioningState": state,
            "scoringUri": "{base}/score/".to_string() + name,
            "swaggerUri": "{base}/swagger",
            "keys": null
        }
    })
}

/// A managed deployment body as ARM returns it.
pub fn deployment_body(name: &str, state: &str, capacity: u32) -> Value {
    json!({
        "id": format!("{WS}/onlineEndpoints/e/deployments/{name}"),
        "name": name,
        "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments",
        "location": "westus2",
        "tags": {},
        "sku": {"name": "Default", "capacity": capacity},
        "properties": {
            "endpointComputeType": "Managed",
            "model": format!("{WS}/models/model-1/versions/1"),
            "environmentId": format!("{WS}/environments/env/versions/2"),
            "codeConfiguration": {"codeId": "code-1", "scoringScript": "score.py"},
            "instanceType": "Standard_DS3_v2",
            "appInsightsEnabled": false,
            "requestSettings": {"requestTimeout": "PT5S", "maxConcurrentRequestsPerInstance": 1},
            "livenessProbe": {"period": "PT10S", "failureThreshold": 30, "timeout": "PT2S"},
            "provisioningState": state
        }
    })
}

/// An Azure-AsyncOperation status body.
pub fn op_status(status: &str) -> Value {
    json!({"id": "op", "name": "op", "status": status})
}

/// A string map, for weights.
pub fn weights(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}
