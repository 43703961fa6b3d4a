//! Shared helpers for the agent's end-to-end tests: a Git repository of environment files, the
//! in-process sandbox, raw ARM calls and the sandbox's request log.
#![allow(dead_code)]

pub mod git_http;
pub mod hostile;
pub mod openpgp;
pub mod recorder;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flightdeck::agent::config::{AgentConfig, SourceKind};
use flightdeck::agent::{Agent, AgentOptions, pipeline_for};
use flightdeck::sandbox::{Sandbox, SandboxConfig, SandboxHandle};
use flightdeck::source::{GitAuth, GitRef, Secret};
use git2::{Repository, Signature};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const API: &str = "api-version=2025-12-01";
pub const WS: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/flightdeck-demo/providers/Microsoft.MachineLearningServices/workspaces/demo";

pub const ENVIRONMENT: &str = "name: sandbox
target:
  azureml:
    subscription_id: 00000000-0000-0000-0000-000000000000
    resource_group: flightdeck-demo
    workspace: demo
    location: westus2
drift:
  mode: correct
tests:
  my-endpoint:
    request_file: sample-request.json
    expect_status: 200
";

fn deployment(name: &str, version: u32) -> String {
    format!(
        "  - name: {name}
    model:
      name: model-1
      version: {version}
    code_configuration:
      code: azureml:my-endpoint-code:1
      scoring_script: score.py
    environment:
      name: env-model1
      version: 1
      image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest
    instance_type: Standard_DS3_v2
    instance_count: 1
"
    )
}

/// `my-endpoint.yml` with the given deployments (name, model version) and traffic.
pub fn endpoint_yaml(deployments: &[(&str, u32)], traffic: &[(&str, u32)]) -> String {
    let mut out = String::from("name: my-endpoint\nauth_mode: key\ntraffic:\n");
    for (name, weight) in traffic {
        out.push_str(&format!("  {name}: {weight}\n"));
    }
    out.push_str("deployments:\n");
    for (name, version) in deployments {
        out.push_str(&deployment(name, *version));
    }
    out
}

/// Makes the armored `gpgsig` value for a commit's bytes.
type SignFn<'a> = dyn Fn(&[u8]) -> String + 'a;

pub struct GitRepo {
    pub dir: tempfile::TempDir,
    repo: Repository,
}

impl GitRepo {
    pub fn new() -> GitRepo {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        GitRepo { dir, repo }
    }

    /// The repository itself, for building objects by hand (see `hostile`).
    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    pub fn write(&self, path: &str, content: &str) {
        let full = self.dir.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }

    pub fn commit(&self, message: &str) -> String {
        self.commit_with(message, None)
    }

    /// Commits with a `gpgsig` header made by `sign` over the commit's bytes, as
    /// `git commit -S` does (SSH or OpenPGP, whatever `sign` returns).
    pub fn commit_signed(&self, message: &str, sign: impl Fn(&[u8]) -> String) -> String {
        self.commit_with(message, Some(&sign))
    }

    fn commit_with(&self, message: &str, sign: Option<&SignFn<'_>>) -> String {
        let mut index = self.repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        // Records deleted files too.
        index.update_all(["*"], None).unwrap();
        index.write().unwrap();
        let tree = self.repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = Signature::now("t", "t@example.com").unwrap();
        let parent = self
            .repo
            .refname_to_id("refs/heads/main")
            .ok()
            .map(|id| self.repo.find_commit(id).unwrap());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let Some(sign) = sign else {
            return self
                .repo
                .commit(
                    Some("refs/heads/main"),
                    &sig,
                    &sig,
                    message,
                    &tree,
                    &parents,
                )
                .unwrap()
                .to_string();
        };
        let buffer = self
            .repo
            .commit_create_buffer(&sig, &sig, message, &tree, &parents)
            .unwrap();
        let content = std::str::from_utf8(&buffer).unwrap();
        let signature = sign(content.as_bytes());
        let oid = self.repo.commit_signed(content, &signature, None).unwrap();
        self.repo
            .reference("refs/heads/main", oid, true, message)
            .unwrap();
        oid.to_string()
    }

    /// A repository with the sandbox environment: `my-endpoint` with blue at 100%.
    pub fn with_sandbox_environment() -> GitRepo {
        let repo = GitRepo::new();
        repo.write_sandbox_environment();
        repo.commit("sandbox environment");
        repo
    }

    /// Writes (does not commit) the sandbox environment with blue at 100%.
    pub fn write_sandbox_environment(&self) {
        self.write("environments/sandbox/environment.yaml", ENVIRONMENT);
        self.write(
            "environments/sandbox/sample-request.json",
            "{\"data\": [[1, 2, 3]]}\n",
        );
        self.write(
            "environments/sandbox/my-endpoint.yml",
            &endpoint_yaml(&[("blue", 1)], &[("blue", 100)]),
        );
    }
}

/// Starts the sandbox with fixed credentials and exports them the way `flightdeck sandbox`
/// prints them. Each test binary that calls this has exactly one test, so the process-wide
/// variables are never raced.
pub async fn start_sandbox() -> SandboxHandle {
    let config = SandboxConfig {
        retry_after: Some(0),
        client_id: Some("agent-test-client".into()),
        client_secret: Some("agent-test-secret".into()),
        tenant_id: Some("agent-test-tenant".into()),
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::start(config).await.unwrap();
    for line in sandbox.env_lines() {
        let (key, value) = line.split_once('=').unwrap();
        // SAFETY: called once per test process, before the agent starts any thread that reads
        // the environment.
        unsafe { std::env::set_var(key, value) };
    }
    sandbox
}

pub fn agent_config(
    repo: &Path,
    sandbox: &SandboxHandle,
    interval: Duration,
    secret: Option<&str>,
) -> AgentConfig {
    AgentConfig {
        source: SourceKind::Git {
            url: repo.display().to_string(),
            reference: GitRef::Branch("main".into()),
            cache_dir: std::env::temp_dir()
                .join(format!("flightdeck-agent-test-{}", uuid::Uuid::new_v4())),
            auth: GitAuth::default(),
        },
        paths: vec![PathBuf::from("environments/sandbox")],
        interval,
        listen: "127.0.0.1:0".parse().unwrap(),
        webhook_secret: secret.map(Secret::new),
        lease: None,
        verify_keys: vec![],
        http: Default::default(),
        backend: sandbox_backend(sandbox),
    }
}

/// The backend configuration the agent gets for `sandbox`: its URL and the credentials it
/// prints, as `flightdeck agent` builds them from flags and variables.
pub fn sandbox_backend(sandbox: &SandboxHandle) -> flightdeck::backend::BackendConfig {
    let lines: std::collections::BTreeMap<String, String> = sandbox
        .env_lines()
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let settings = flightdeck::backend::BackendSettings {
        arm_endpoint: Some(sandbox.base_url()),
        ..Default::default()
    };
    let credentials = flightdeck::backend::CredentialVars::capture(&|k| lines.get(k).cloned());
    flightdeck::backend::BackendConfig::from_settings(&settings, credentials).unwrap()
}

/// An agent started in-process with the real reconcile pipeline.
pub struct RunningAgent {
    pub agent: Agent,
    /// `http://ADDR` of its HTTP server.
    pub base: String,
    cancel: CancellationToken,
}

pub async fn start_agent(config: AgentConfig) -> RunningAgent {
    let reconciler = std::sync::Arc::new(pipeline_for(&config));
    let cancel = CancellationToken::new();
    let agent = Agent::start(config, reconciler, AgentOptions::default(), cancel.clone())
        .await
        .unwrap();
    let base = format!("http://{}", agent.local_addr());
    RunningAgent {
        agent,
        base,
        cancel,
    }
}

impl RunningAgent {
    /// Cancels the agent and waits for it to finish.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.agent.wait().await;
    }
}

pub struct Arm {
    pub base: String,
    client: reqwest::Client,
    token: String,
}

impl Arm {
    pub async fn new(sandbox: &SandboxHandle) -> Arm {
        let client = reqwest::Client::new();
        let c = sandbox.credentials();
        let base = sandbox.base_url();
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", c.client_id.as_str()),
            ("client_secret", c.client_secret.as_str()),
            ("scope", "https://management.azure.com/.default"),
        ];
        let token: Value = client
            .post(format!("{base}/{}/oauth2/v2.0/token", c.tenant_id))
            .form(&form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Arm {
            base,
            client,
            token: token["access_token"].as_str().unwrap().to_string(),
        }
    }

    pub async fn endpoint(&self, name: &str) -> Option<Value> {
        let r = self
            .client
            .get(format!("{}{WS}/onlineEndpoints/{name}?{API}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        if r.status() == 404 {
            return None;
        }
        Some(r.json().await.unwrap())
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
            .put(format!("{}{WS}/onlineEndpoints/{name}?{API}", self.base))
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

pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The agent's `/metrics` text.
pub async fn metrics(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub async fn status(base: &str) -> Value {
    reqwest::get(format!("{base}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
