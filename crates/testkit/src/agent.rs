//! Helpers for the agent's end-to-end tests: the sandbox environment files, an agent started
//! in-process with the real reconcile pipeline against an in-process sandbox, and the agent's
//! `/metrics` and `/status`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flightdeck::agent::config::{AgentConfig, SourceKind};
use flightdeck::agent::pipeline::{Connector, Pipeline};
use flightdeck::agent::{Agent, AgentOptions};
use flightdeck::backend::azureml::{AzureMlBackend, AzureMlConfig, credential_from_vars};
use flightdeck::backend::{self, Backend, ConnectOptions};
use flightdeck::model::Target;
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

/// The variables `flightdeck sandbox` prints, per sandbox base URL. The agent under test reads
/// its credentials from here instead of the process environment, so tests that share a process
/// (one binary per area) never see each other's sandbox.
static SANDBOX_VARS: Mutex<BTreeMap<String, BTreeMap<String, String>>> =
    Mutex::new(BTreeMap::new());

/// Starts the sandbox with fixed credentials and records the variables it prints (see
/// [`start_agent`]); nothing is written to the process environment.
pub async fn start_sandbox() -> SandboxHandle {
    let config = SandboxConfig {
        retry_after: Some(0),
        client_id: Some("agent-test-client".into()),
        client_secret: Some("agent-test-secret".into()),
        tenant_id: Some("agent-test-tenant".into()),
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::start(config).await.unwrap();
    let vars = sandbox
        .env_lines()
        .iter()
        .map(|line| {
            let (key, value) = line.split_once('=').unwrap();
            (key.to_string(), value.to_string())
        })
        .collect();
    SANDBOX_VARS
        .lock()
        .unwrap()
        .insert(sandbox.base_url(), vars);
    sandbox
}

/// `backend::connect`, except that an Azure ML target whose ARM endpoint is a sandbox started by
/// [`start_sandbox`] gets that sandbox's variables instead of the process environment's.
fn connector(options: ConnectOptions) -> Connector {
    Arc::new(move |environment, env_dir: PathBuf| {
        let options = options.clone();
        Box::pin(async move {
            let vars = options
                .arm_endpoint
                .as_ref()
                .and_then(|url| SANDBOX_VARS.lock().unwrap().get(url).cloned());
            match (&environment.target, vars) {
                (Target::AzureMl(target), Some(vars)) => {
                    let var = |name: &str| vars.get(name).cloned();
                    let mut config = AzureMlConfig::from_vars(&var)?;
                    if let Some(url) = &options.arm_endpoint {
                        config.arm_endpoint = url.parse()?;
                    }
                    let credential = credential_from_vars(&config.arm_endpoint, &var)?;
                    let backend: Box<dyn Backend> =
                        Box::new(AzureMlBackend::new(target, config, credential)?);
                    Ok(backend)
                }
                _ => backend::connect(&environment, &env_dir, &options).await,
            }
        })
    })
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
        concurrency: 8,
        listen: "127.0.0.1:0".parse().unwrap(),
        webhook_secret: secret.map(Secret::new),
        lease: None,
        verify_keys: vec![],
        arm_endpoint: Some(sandbox.base_url()),
        http: Default::default(),
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
    let connect = ConnectOptions {
        arm_endpoint: config.arm_endpoint.clone(),
    };
    let reconciler = Arc::new(Pipeline::new(connector(connect), root, 8));
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

pub async fn status(base: &str) -> Value {
    reqwest::get(format!("{base}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
