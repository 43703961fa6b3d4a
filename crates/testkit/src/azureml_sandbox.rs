//! Shared helpers for the `azureml_sandbox_*` tests: an in-process sandbox, an environment
//! directory pointing at it, a real `AzureMlBackend` connected through the sandbox's Entra-shaped
//! token endpoint, and readers for the sandbox's request log and live state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flightdeck::apply::{self, ApplyOptions, ApplyReport};
use flightdeck::backend::Backend;
use flightdeck::backend::azureml::{
    AzureMlBackend, AzureMlConfig, RetryPolicy, credential_from_vars,
};
use flightdeck::model::DesiredState;
use flightdeck::plan::{self, Plan, PlanOptions};
use flightdeck::sandbox::{Sandbox, SandboxConfig, SandboxHandle};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use url::Url;

pub const RG: &str = "rg-e2e";
pub const WS: &str = "ws-e2e";
const API: &str = "api-version=2025-12-01";

/// The six reference files of the 2021 declarative canary flow, in order.
pub const FLOW: [&str; 6] = [
    "1-create-endpoint-with-blue.yml",
    "2-scale-blue.yml",
    "3-create-green.yml",
    "4-flight-green.yml",
    "5-full-green.yml",
    "6-delete-blue.yml",
];

/// A file of the in-repo copy of the reference az ml files (kept equal to the contracts by
/// `scripts/check-reference-fixtures.sh`).
pub fn reference(rel: &str) -> PathBuf {
    crate::repo_root()
        .join("tests/fixtures/reference/azureml-cli-yaml")
        .join(rel)
}

pub fn flow_file(i: usize) -> PathBuf {
    reference(&format!("canary-declarative-flow/{}", FLOW[i]))
}

/// A running sandbox plus what a client needs to talk to it.
pub struct Env {
    pub sandbox: SandboxHandle,
    pub vars: BTreeMap<String, String>,
    pub base: String,
    http: reqwest::Client,
}

impl Env {
    /// Starts a sandbox whose operations take `delay`.
    pub async fn start(delay: Duration) -> Env {
        Self::start_with(SandboxConfig {
            provisioning_delay: delay,
            ..Default::default()
        })
        .await
    }

    pub async fn start_with(config: SandboxConfig) -> Env {
        let sandbox = Sandbox::start(config).await.expect("sandbox starts");
        let vars = sandbox
            .env_lines()
            .iter()
            .map(|l| {
                let (k, v) = l.split_once('=').expect("KEY=value");
                (k.to_string(), v.to_string())
            })
            .collect();
        let base = sandbox.base_url();
        Env {
            sandbox,
            vars,
            base,
            http: reqwest::Client::new(),
        }
    }

    /// The real `flightdeck` binary with `args` and only the sandbox's variables (plus PATH and
    /// a 20 ms poll cap) in its environment; killed when dropped.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(crate::flightdeck_bin());
        cmd.args(args)
            .env_clear()
            .envs(&self.vars)
            .env("FLIGHTDECK_POLL_INTERVAL_MAX", "20ms")
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .kill_on_drop(true);
        cmd
    }

    pub fn subscription(&self) -> &str {
        &self.vars["AZURE_SUBSCRIPTION_ID"]
    }

    /// Client configuration for tests: the sandbox URL, 20 ms poll cap, quick retries.
    pub fn config(&self) -> AzureMlConfig {
        AzureMlConfig {
            arm_endpoint: Url::parse(&self.base).unwrap(),
            min_poll_interval: Duration::from_millis(20),
            max_poll_interval: Duration::from_millis(20),
            retry: RetryPolicy {
                max_attempts: 8,
                base_backoff: Duration::from_millis(5),
                max_backoff: Duration::from_millis(40),
                ..RetryPolicy::default()
            },
            step_timeout: Duration::from_secs(20),
            ..Default::default()
        }
    }

    pub fn backend_for(&self, desired: &DesiredState, config: AzureMlConfig) -> AzureMlBackend {
        let flightdeck::model::Target::AzureMl(target) = &desired.environment.target else {
            panic!("the environment must target azureml");
        };
        let vars = self.vars.clone();
        let credential = credential_from_vars(&config.arm_endpoint, &move |k| vars.get(k).cloned())
            .expect("sandbox credential");
        AzureMlBackend::new(target, config, credential).expect("backend")
    }

    pub fn backend(&self, desired: &DesiredState) -> AzureMlBackend {
        self.backend_for(desired, self.config())
    }

    /// `environment.yaml` for this sandbox, with optional extra top-level YAML (e.g. `tests:`).
    pub fn environment_yaml(&self, extra: &str) -> String {
        format!(
            "name: e2e\ntarget:\n  azureml:\n    subscription_id: {}\n    resource_group: {RG}\n    workspace: {WS}\n    location: westus2\n{extra}",
            self.subscription()
        )
    }

    /// Writes `dir/environment.yaml`.
    pub fn write_environment(&self, dir: &Path, extra: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("environment.yaml"), self.environment_yaml(extra)).unwrap();
    }

    fn workspace_path(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{WS}",
            self.subscription()
        )
    }

    async fn arm_token(&self) -> String {
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            self.base, self.vars["AZURE_TENANT_ID"]
        );
        let resp: Value = self
            .http
            .post(url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.vars["AZURE_CLIENT_ID"].as_str()),
                ("client_secret", self.vars["AZURE_CLIENT_SECRET"].as_str()),
                ("scope", "https://management.azure.com/.default"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        resp["access_token"].as_str().expect("a token").to_string()
    }

    /// GET an ARM path below the workspace, e.g. `/onlineEndpoints/e`; `None` on 404.
    pub async fn arm_get(&self, below_workspace: &str) -> Option<Value> {
        let url = format!(
            "{}{}{below_workspace}?{API}",
            self.base,
            self.workspace_path()
        );
        let resp = self
            .http
            .get(url)
            .bearer_auth(self.arm_token().await)
            .send()
            .await
            .unwrap();
        if resp.status() == 404 {
            return None;
        }
        assert!(
            resp.status().is_success(),
            "GET {below_workspace}: {}",
            resp.status()
        );
        Some(resp.json().await.unwrap())
    }

    /// PATCH an ARM path below the workspace with `body`, as another client would; returns the
    /// status.
    pub async fn arm_patch(&self, below_workspace: &str, body: &Value) -> u16 {
        let url = format!(
            "{}{}{below_workspace}?{API}",
            self.base,
            self.workspace_path()
        );
        self.http
            .patch(url)
            .bearer_auth(self.arm_token().await)
            .json(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// The endpoint's scoring URI and primary key (`listKeys`), for sending scoring requests.
    pub async fn scoring(&self, endpoint: &str) -> (String, String) {
        let body = self
            .arm_get(&format!("/onlineEndpoints/{endpoint}"))
            .await
            .unwrap_or_else(|| panic!("endpoint {endpoint} exists"));
        let url = format!(
            "{}{}/onlineEndpoints/{endpoint}/listKeys?{API}",
            self.base,
            self.workspace_path()
        );
        let keys: Value = self
            .http
            .post(url)
            .bearer_auth(self.arm_token().await)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            body["properties"]["scoringUri"]
                .as_str()
                .expect("a scoring URI")
                .to_string(),
            keys["primaryKey"]
                .as_str()
                .expect("a primary key")
                .to_string(),
        )
    }

    /// The tags of an endpoint, as the sandbox holds them.
    pub async fn endpoint_tags(&self, endpoint: &str) -> BTreeMap<String, String> {
        let body = self
            .arm_get(&format!("/onlineEndpoints/{endpoint}"))
            .await
            .unwrap_or_else(|| panic!("endpoint {endpoint} exists"));
        serde_json::from_value(body["tags"].clone()).unwrap_or_default()
    }

    /// The live traffic map of an endpoint, as the sandbox holds it.
    pub async fn traffic(&self, endpoint: &str) -> BTreeMap<String, i64> {
        let body = self
            .arm_get(&format!("/onlineEndpoints/{endpoint}"))
            .await
            .unwrap_or_else(|| panic!("endpoint {endpoint} exists"));
        body["properties"]["traffic"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_i64().unwrap()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// deployment name → (sku.capacity, provisioningState).
    pub async fn deployments(&self, endpoint: &str) -> BTreeMap<String, (i64, String)> {
        let body = self
            .arm_get(&format!("/onlineEndpoints/{endpoint}/deployments"))
            .await
            .unwrap_or_else(|| panic!("endpoint {endpoint} exists"));
        body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["name"].as_str().unwrap().to_string(),
                    (
                        d["sku"]["capacity"].as_i64().unwrap_or(-1),
                        d["properties"]["provisioningState"]
                            .as_str()
                            .unwrap_or("")
                            .to_string(),
                    ),
                )
            })
            .collect()
    }

    /// The control-plane request log (`/_sandbox/log`).
    pub async fn log(&self) -> Vec<Value> {
        self.http
            .get(format!("{}/_sandbox/log", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn clear_log(&self) {
        let resp = self
            .http
            .delete(format!("{}/_sandbox/log", self.base))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }

    /// The routing change history (`/_sandbox/history`), for [`crate::rollout_history`].
    pub async fn history(&self) -> Value {
        self.http
            .get(format!("{}/_sandbox/history", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Clears the history; it restarts with every endpoint's current state.
    pub async fn clear_history(&self) {
        let resp = self
            .http
            .delete(format!("{}/_sandbox/history", self.base))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }

    /// Holds matching operations in progress until [`Env::release`] (`/_sandbox/operations`).
    pub async fn hold(&self, hold: Value) {
        crate::sandbox::hold_operations(&self.http, &self.base, hold).await;
    }

    /// The operations held now.
    pub async fn held(&self) -> Vec<Value> {
        crate::sandbox::held_operations(&self.http, &self.base).await
    }

    /// Waits (generous 30 s failure timeout) until `n` operations are held.
    pub async fn wait_held(&self, n: usize) -> Vec<Value> {
        let what = format!("{n} operation(s) held by the sandbox");
        crate::eventually(&what, Duration::from_secs(30), || async {
            self.held().await.len() >= n
        })
        .await;
        self.held().await
    }

    /// Releases every held operation; returns the ones released.
    pub async fn release(&self) -> Vec<Value> {
        crate::sandbox::release_operations(&self.http, &self.base).await
    }

    /// `POST /_sandbox/faults`.
    pub async fn fault(&self, body: Value) {
        let resp = self
            .http
            .post(format!("{}/_sandbox/faults", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "fault refused: {}",
            resp.text().await.unwrap()
        );
    }
}

/// (reads, writes) in a log: GETs are reads, every other method is a write.
pub fn reads_writes(log: &[Value]) -> (usize, usize) {
    let reads = log.iter().filter(|e| e["method"] == "GET").count();
    (reads, log.len() - reads)
}

pub fn method_path(e: &Value) -> (String, String) {
    (
        e["method"].as_str().unwrap().to_string(),
        e["path"].as_str().unwrap().to_string(),
    )
}

/// Loads an environment directory, panicking with the diagnostics when it is invalid.
pub fn load(dir: &Path) -> DesiredState {
    flightdeck::spec::load_environment(dir, flightdeck::backend::profile_of)
        .unwrap_or_else(|d| panic!("{} must load:\n{d}", dir.display()))
}

/// Reads live, plans, applies: what `flightdeck apply` does.
pub async fn reconcile(
    desired: &DesiredState,
    backend: &dyn Backend,
    concurrency: usize,
) -> (Plan, ApplyReport) {
    let live = backend.read_live().await.expect("read live");
    let opts = PlanOptions {
        prune: false,
        ignore: desired.environment.drift.ignore.clone(),
    };
    let p = plan::plan(
        desired,
        &live,
        &opts,
        flightdeck::backend::profile_of(&desired.environment.target),
    )
    .expect("plan is not refused");
    let report = apply::apply(
        &p,
        backend,
        &ApplyOptions {
            concurrency,
            dry_run: false,
        },
        &CancellationToken::new(),
    )
    .await;
    (p, report)
}

/// Re-reads live and re-plans; the plan must be empty.
pub async fn assert_converged(desired: &DesiredState, backend: &dyn Backend, context: &str) {
    let live = backend.read_live().await.expect("read live");
    let opts = PlanOptions {
        prune: false,
        ignore: desired.environment.drift.ignore.clone(),
    };
    let p = plan::plan(
        desired,
        &live,
        &opts,
        flightdeck::backend::profile_of(&desired.environment.target),
    )
    .expect("plan is not refused");
    assert!(
        p.is_empty(),
        "{context}: live differs from desired after apply:\n{p:#?}"
    );
}
