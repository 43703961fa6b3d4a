//! Helpers for the agent's end-to-end tests: the sandbox environment files, an agent started
//! in-process with the real reconcile pipeline against an in-process sandbox, and the agent's
//! `/metrics` and `/status`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flightdeck::agent::config::{AgentConfig, SourceKind};
use flightdeck::agent::pipeline::{Pipeline, default_connector};
use flightdeck::agent::{Agent, AgentOptions};
use flightdeck::sandbox::{Sandbox, SandboxConfig, SandboxHandle};
use flightdeck::source::{GitAuth, GitRef, Secret};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use crate::eventually::eventually;
pub use crate::git::GitRepo;
pub use crate::sandbox::Arm;

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

/// Starts the sandbox with fixed credentials; agents reach it through [`sandbox_backend`].
pub async fn start_sandbox() -> SandboxHandle {
    let config = SandboxConfig {
        retry_after: Some(0),
        client_id: Some("agent-test-client".into()),
        client_secret: Some("agent-test-secret".into()),
        tenant_id: Some("agent-test-tenant".into()),
        ..SandboxConfig::default()
    };
    Sandbox::start(config).await.unwrap()
}

/// The backend configuration the agent gets for `sandbox`: its URL and the credentials it
/// prints, as `flightdeck agent` builds them from flags and variables (nothing is read from
/// the process environment, so tests that share a process never see each other's sandbox).
pub fn sandbox_backend(sandbox: &SandboxHandle) -> flightdeck::backend::BackendConfig {
    let lines: BTreeMap<String, String> = sandbox
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
        full_resync: flightdeck::agent::scope::DEFAULT_FULL_RESYNC,
        concurrency: 8,
        listen: "127.0.0.1:0".parse().unwrap(),
        webhook_secret: secret.map(Secret::new),
        dashboard: Default::default(),
        lease: None,
        verify_keys: vec![],
        http: Default::default(),
        backend: sandbox_backend(sandbox),
        promotion: None,
    }
}

/// An agent started in-process with the real reconcile pipeline (as `pipeline_for` builds it,
/// with credentials from [`start_sandbox`]).
pub struct RunningAgent {
    pub agent: Agent,
    /// `http://ADDR` of its HTTP server.
    pub base: String,
    cancel: CancellationToken,
}

pub async fn start_agent(config: AgentConfig) -> RunningAgent {
    let root = match &config.source {
        SourceKind::Local { root } => Some(root.clone()),
        SourceKind::Git { .. } => None,
    };
    let connector = default_connector(config.backend.clone());
    let mut pipeline = Pipeline::new(connector, root, config.concurrency);
    pipeline.metrics = Some(flightdeck::agent::pipeline::default_metrics(
        config.backend.clone(),
    ));
    pipeline.full_resync = config.full_resync;
    let reconciler = Arc::new(pipeline);
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

/// The agent's `/metrics` text.
pub async fn metrics(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until the agent has finished two more fetch rounds (`/status` `fetch_rounds`) than
/// when called, so one whole round, and the reconcile of what it fetched, began after the call:
/// "nothing was written" is then checked after the agent had its chance, without a sleep.
pub async fn another_round(base: &str) {
    let seen = status(base).await["fetch_rounds"].as_u64().unwrap_or(0);
    crate::eventually::eventually(
        "the agent runs another fetch round",
        Duration::from_secs(30),
        || async move { status(base).await["fetch_rounds"].as_u64().unwrap_or(0) >= seen + 2 },
    )
    .await;
}

pub async fn status(base: &str) -> Value {
    reqwest::get(format!("{base}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
