//! The one sandbox client: start a sandbox in-process, get an ARM token through its real token
//! endpoint, and drive its ARM, data-plane and `/_sandbox` endpoints with reqwest. `Env` owns the
//! sandbox it started; `Arm` is the same token + ARM calls over a sandbox someone else started
//! (the agent tests'), and `azureml_sandbox::Env` builds a real backend on top of one.

use std::time::Duration;

use flightdeck::sandbox::{Sandbox, SandboxConfig, SandboxHandle};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

pub const API: &str = "2025-12-01";
/// The Azure Monitor metrics api-version [MON R1].
pub const MONITOR_API: &str = "2023-10-01";
pub const SUB: &str = "00000000-0000-0000-0000-000000000000";

/// The public-cloud ARM scope the sandbox emulates.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";

pub struct Env {
    pub sandbox: SandboxHandle,
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

/// A client-credentials token for `scope` from the sandbox's token endpoint.
/// The sandbox's Entra-shaped token URL for `tenant`.
pub fn token_url(base: &str, tenant: &str) -> String {
    format!("{base}/{tenant}/oauth2/v2.0/token")
}

pub async fn fetch_token(sandbox: &SandboxHandle, http: &reqwest::Client, scope: &str) -> String {
    let c = sandbox.credentials();
    let url = token_url(&sandbox.base_url(), &c.tenant_id);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", c.client_id.as_str()),
        ("client_secret", c.client_secret.as_str()),
        ("scope", scope),
    ];
    let resp = http.post(url).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

impl Env {
    /// POSTs a token request form to this sandbox's tenant.
    pub async fn request_token(&self, form: &[(&str, &str)]) -> reqwest::Response {
        let url = token_url(&self.base, &self.sandbox.credentials().tenant_id);
        self.http.post(url).form(form).send().await.unwrap()
    }

    pub async fn start() -> Env {
        Self::start_with(SandboxConfig::default()).await
    }

    pub async fn start_with(config: SandboxConfig) -> Env {
        let sandbox = Sandbox::start(config).await.unwrap();
        let http = reqwest::Client::new();
        let token = fetch_token(&sandbox, &http, ARM_SCOPE).await;
        let base = sandbox.base_url();
        Env {
            sandbox,
            http,
            base,
            token,
        }
    }

    pub fn ws_path(&self, ws: &str) -> String {
        format!(
            "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/{ws}"
        )
    }

    pub fn eps_url(&self) -> String {
        format!("{}{}/onlineEndpoints", self.base, self.ws_path("ws"))
    }

    pub fn ep_url(&self, ep: &str) -> String {
        format!("{}/{ep}", self.eps_url())
    }

    pub fn dep_url(&self, ep: &str, dep: &str) -> String {
        format!("{}/deployments/{dep}", self.ep_url(ep))
    }

    /// An authenticated ARM request; adds `api-version` unless the URL has one.
    pub async fn call(&self, method: Method, url: &str, body: Option<&Value>) -> Response {
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        if !url.contains("api-version=") {
            req = req.query(&[("api-version", API)]);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send().await.unwrap()
    }

    pub async fn get(&self, url: &str) -> Response {
        self.call(Method::GET, url, None).await
    }

    pub async fn get_json(&self, url: &str) -> Value {
        let r = self.get(url).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {url}");
        r.json().await.unwrap()
    }

    pub async fn put(&self, url: &str, body: &Value) -> Response {
        self.call(Method::PUT, url, Some(body)).await
    }

    pub async fn patch(&self, url: &str, body: &Value) -> Response {
        self.call(Method::PATCH, url, Some(body)).await
    }

    pub async fn delete(&self, url: &str) -> Response {
        self.call(Method::DELETE, url, None).await
    }

    pub async fn post(&self, url: &str, body: Option<&Value>) -> Response {
        self.call(Method::POST, url, body).await
    }

    /// Polls a resource until its provisioningState is terminal; returns the body.
    pub async fn wait_terminal(&self, url: &str) -> Value {
        let give_up = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < give_up {
            let r = self.get(url).await;
            if r.status() == StatusCode::OK {
                let body: Value = r.json().await.unwrap();
                let state = body["properties"]["provisioningState"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                if ["Succeeded", "Failed", "Canceled"].contains(&state.as_str()) {
                    return body;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{url} never reached a terminal state");
    }

    /// Polls an operation's Location URL until it stops answering 202; returns that answer.
    /// Fails only after a generous 30 s, whatever the machine's load.
    pub async fn wait_location(&self, location: &str) -> Response {
        let give_up = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.get(location).await;
            if r.status() != StatusCode::ACCEPTED {
                return r;
            }
            assert!(
                std::time::Instant::now() < give_up,
                "{location} still answers 202 after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Polls a URL until it no longer answers 200 (or `status`).
    pub async fn wait_gone(&self, url: &str) {
        let give_up = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < give_up {
            if self.get(url).await.status() == StatusCode::NOT_FOUND {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{url} was never deleted");
    }

    /// A sandbox whose operations take long enough (1 s) that a GET right after a write still
    /// sees the transitional state on a loaded machine.
    pub async fn start_slow() -> Env {
        Self::start_with(SandboxConfig {
            provisioning_delay: Duration::from_secs(1),
            ..SandboxConfig::default()
        })
        .await
    }

    pub async fn create_endpoint(&self, ep: &str, auth_mode: &str) -> Value {
        let r = self
            .put(&self.ep_url(ep), &endpoint_body(auth_mode, json!({})))
            .await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        let body = self.wait_terminal(&self.ep_url(ep)).await;
        assert_eq!(body["properties"]["provisioningState"], "Succeeded");
        body
    }

    pub async fn create_deployment(&self, ep: &str, dep: &str, model: &str) -> Value {
        let r = self
            .put(&self.dep_url(ep, dep), &deployment_body(model, 1))
            .await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        let body = self.wait_terminal(&self.dep_url(ep, dep)).await;
        assert_eq!(body["properties"]["provisioningState"], "Succeeded");
        body
    }

    /// GET the endpoint, replace traffic (and mirror), PUT it back, wait. Returns the PUT status.
    pub async fn set_traffic(
        &self,
        ep: &str,
        traffic: Value,
        mirror: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut body = self.get_json(&self.ep_url(ep)).await;
        body["properties"]["traffic"] = traffic;
        match mirror {
            Some(m) => body["properties"]["mirrorTraffic"] = m,
            None => {
                body["properties"]
                    .as_object_mut()
                    .unwrap()
                    .remove("mirrorTraffic");
            }
        }
        let r = self.put(&self.ep_url(ep), &body).await;
        let status = r.status();
        let out: Value = r.json().await.unwrap();
        if status.is_success() {
            self.wait_terminal(&self.ep_url(ep)).await;
        }
        (status, out)
    }

    pub async fn sandbox_json(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The endpoint's scoring URL and primary key.
    pub async fn scoring(&self, ep: &str) -> (String, String) {
        let body = self.get_json(&self.ep_url(ep)).await;
        let keys: Value = self
            .post(&format!("{}/listKeys", self.ep_url(ep)), None)
            .await
            .json()
            .await
            .unwrap();
        (
            body["properties"]["scoringUri"]
                .as_str()
                .unwrap()
                .to_string(),
            keys["primaryKey"].as_str().unwrap().to_string(),
        )
    }

    /// One scoring request, pinned to `deployment` when given.
    pub async fn score(&self, url: &str, key: &str, deployment: Option<&str>) -> Response {
        let mut req = self
            .http
            .post(url)
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(r#"{"data": [[1, 2, 3]]}"#);
        if let Some(d) = deployment {
            req = req.header("azureml-model-deployment", d);
        }
        req.send().await.unwrap()
    }

    /// `GET {endpoint}/providers/Microsoft.Insights/{what}?api-version=2023-10-01&{query}`
    /// (`what`: `metrics` or `metricDefinitions`) with the ARM token.
    pub async fn monitor(&self, ep: &str, what: &str, query: &[(&str, &str)]) -> Response {
        self.http
            .get(format!(
                "{}/providers/Microsoft.Insights/{what}",
                self.ep_url(ep)
            ))
            .query(&[("api-version", MONITOR_API)])
            .query(query)
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    /// The Prometheus exposition of `GET /metrics`.
    pub async fn prometheus_text(&self) -> String {
        let r = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.text().await.unwrap()
    }

    /// `POST /_sandbox/operations/hold` (see [`hold_operations`]).
    pub async fn hold(&self, hold: Value) {
        hold_operations(&self.http, &self.base, hold).await;
    }

    /// The operations held now (see [`held_operations`]).
    pub async fn held(&self) -> Vec<Value> {
        held_operations(&self.http, &self.base).await
    }

    /// `POST /_sandbox/operations/release` (see [`release_operations`]).
    pub async fn release(&self) -> Vec<Value> {
        release_operations(&self.http, &self.base).await
    }

    pub async fn add_fault(&self, fault: Value) {
        let r = self
            .http
            .post(format!("{}/_sandbox/faults", self.base))
            .json(&fault)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    }
}

/// `POST /_sandbox/operations/hold` on the sandbox at `base`: the matching operations started
/// from now on stay in progress until [`release_operations`]. `hold` is e.g.
/// `{"endpoint": "e1"}`, `{"endpoint": "e1", "deployment": "blue", "times": 1}` or `{}` (all).
pub async fn hold_operations(http: &reqwest::Client, base: &str, hold: Value) {
    let r = http
        .post(format!("{base}/_sandbox/operations/hold"))
        .json(&hold)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
}

/// The operations a hold keeps in progress now (`GET /_sandbox/operations`, `held`): objects with
/// `id`, `endpoint`, `deployment`, `kind`, `status`.
pub async fn held_operations(http: &reqwest::Client, base: &str) -> Vec<Value> {
    let r = http
        .get(format!("{base}/_sandbox/operations"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    body["held"].as_array().cloned().unwrap_or_default()
}

/// `POST /_sandbox/operations/release`: drops every hold and lets the held operations finish;
/// returns the operations it released.
pub async fn release_operations(http: &reqwest::Client, base: &str) -> Vec<Value> {
    let r = http
        .post(format!("{base}/_sandbox/operations/release"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let body: Value = r.json().await.unwrap();
    body["released"].as_array().cloned().unwrap_or_default()
}

pub fn endpoint_body(auth_mode: &str, traffic: Value) -> Value {
    json!({
        "location": "westus2",
        "tags": {"team": "ml"},
        "properties": {"authMode": auth_mode, "description": "test endpoint", "traffic": traffic}
    })
}

pub fn deployment_body(model: &str, capacity: u32) -> Value {
    json!({
        "location": "westus2",
        "sku": {"name": "Default", "capacity": capacity},
        "properties": {
            "endpointComputeType": "Managed",
            "model": model,
            "environmentId": "azureml:env:1",
            "codeConfiguration": {"codeId": "azureml:code:1", "scoringScript": "score.py"},
            "instanceType": "Standard_DS3_v2"
        }
    })
}

pub async fn error_code(r: Response) -> (StatusCode, String, String) {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// `api-version=...` query of [`Arm`]'s calls.
const DEMO_API: &str = "api-version=2025-12-01";
/// The workspace of the agent tests' sandbox environment (`agent::ENVIRONMENT`).
const DEMO_WS: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/flightdeck-demo/providers/Microsoft.MachineLearningServices/workspaces/demo";

/// Token + raw ARM calls against a running sandbox, for the agent tests.
pub struct Arm {
    pub base: String,
    client: reqwest::Client,
    token: String,
}

impl Arm {
    pub async fn new(sandbox: &SandboxHandle) -> Arm {
        let client = reqwest::Client::new();
        let token = fetch_token(sandbox, &client, ARM_SCOPE).await;
        Arm {
            base: sandbox.base_url(),
            client,
            token,
        }
    }

    pub async fn endpoint(&self, name: &str) -> Option<Value> {
        let r = self
            .client
            .get(format!(
                "{}{DEMO_WS}/onlineEndpoints/{name}?{DEMO_API}",
                self.base
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        if r.status() == 404 {
            return None;
        }
        Some(r.json().await.unwrap())
    }

    /// The endpoint's keys (`POST .../listKeys`).
    pub async fn list_keys(&self, name: &str) -> Value {
        self.client
            .post(format!(
                "{}{DEMO_WS}/onlineEndpoints/{name}/listKeys?{DEMO_API}",
                self.base
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn traffic(&self, name: &str) -> Option<Value> {
        self.endpoint(name)
            .await
            .map(|e| e["properties"]["traffic"].clone())
    }

    /// A direct ARM PUT of the endpoint with new traffic: a change made behind the agent's back.
    pub async fn put_traffic(&self, name: &str, traffic: Value) {
        let mut endpoint = self.endpoint(name).await.expect("endpoint exists");
        endpoint["properties"]["traffic"] = traffic;
        let r = self
            .client
            .put(format!(
                "{}{DEMO_WS}/onlineEndpoints/{name}?{DEMO_API}",
                self.base
            ))
            .bearer_auth(&self.token)
            .json(&endpoint)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "PUT failed: {} {}",
            r.status(),
            r.text().await.unwrap()
        );
    }

    /// The sandbox's request log.
    pub async fn log(&self) -> Vec<Value> {
        self.client
            .get(format!("{}/_sandbox/log", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Writes (PUT, PATCH, POST other than read-only actions, DELETE) with `seq > after`.
    pub async fn writes_after(&self, after: u64) -> Vec<Value> {
        self.log()
            .await
            .into_iter()
            .filter(|e| e["seq"].as_u64().unwrap_or(0) > after)
            .filter(|e| {
                let method = e["method"].as_str().unwrap_or("");
                let path = e["path"].as_str().unwrap_or("");
                matches!(method, "PUT" | "PATCH" | "DELETE")
                    || (method == "POST"
                        && !path.ends_with("/listKeys")
                        && !path.ends_with("/token"))
            })
            .collect()
    }

    pub async fn last_seq(&self) -> u64 {
        self.log()
            .await
            .iter()
            .filter_map(|e| e["seq"].as_u64())
            .max()
            .unwrap_or(0)
    }
}
