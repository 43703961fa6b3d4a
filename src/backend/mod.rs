//! One trait for every platform. The planner never sees a backend; the executor (`apply`) and the
//! CLI do. Backends: `azureml` (ARM REST), `kubernetes` (kube-rs), `memory` (tests), `state_file`
//! (the in-memory backend persisted to a file).

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;

use crate::model::{Environment, LiveState, Target};
use crate::plan::Step;

pub mod azureml;
mod error;
pub mod kubernetes;
pub mod memory;
pub mod state_file;
pub mod state_lock;

pub use error::{BackendError, ErrorKind, Source};

/// What a backend reports about one executed step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepDetail {
    /// Short detail for the report, e.g. "provisioned in 3.1s", "200 from green".
    pub detail: String,
}

/// A platform that holds endpoints. Implementations must make each step's effect complete before
/// returning: a create, update or scale returns once the platform reports the deployment ready
/// (or fails), so the next step may route traffic to it.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Short name for logs and reports (`azureml`, `kubernetes`, `memory`).
    fn name(&self) -> &'static str;

    /// Reads every endpoint of the target. Backends should list, not get one by one.
    async fn read_live(&self) -> Result<LiveState, BackendError>;

    /// Executes one step. Called with at most one step in flight per endpoint.
    async fn execute(&self, step: &Step) -> Result<StepDetail, BackendError>;

    /// The longest the executor lets `step` run before it fails it (`apply` owns the timeout;
    /// backends only choose the budget). Waits for provisioning get long budgets, a test short.
    fn step_timeout(&self, step: &Step) -> Duration {
        default_step_timeout(step)
    }
}

/// Budgets when a backend has no better idea: 30 min for anything that provisions or deletes,
/// 5 min for a pre-traffic test (its own requests time out sooner), 10 min for a traffic change.
pub fn default_step_timeout(step: &Step) -> Duration {
    use crate::plan::Action;
    match step.action {
        Action::TestDeployment { .. } => Duration::from_secs(5 * 60),
        Action::SetTraffic { .. } | Action::SetMirrorTraffic { .. } => Duration::from_secs(10 * 60),
        _ => Duration::from_secs(30 * 60),
    }
}

/// Per-request timeout of a pre-traffic test request, both backends:
/// `FLIGHTDECK_TEST_REQUEST_TIMEOUT` (humantime, e.g. `10s`), default 30 s.
pub const DEFAULT_TEST_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads a humantime duration variable; `None` when unset or empty.
pub(crate) fn duration_var(
    var: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<Duration>, String> {
    match var(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(raw) => humantime::parse_duration(&raw)
            .map(Some)
            .map_err(|e| format!("{name} {raw:?} is not a duration: {e}")),
    }
}

/// Overrides for connecting to a backend (from flags and environment variables).
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// Azure Resource Manager base URL instead of https://management.azure.com.
    pub arm_endpoint: Option<String>,
}

/// The backend for an environment's target. `env_dir` anchors relative paths (state files).
pub async fn connect(
    env: &Environment,
    env_dir: &Path,
    opts: &ConnectOptions,
) -> anyhow::Result<Box<dyn Backend>> {
    match &env.target {
        Target::StateFile { path } => {
            Ok(Box::new(state_file::StateFileBackend::open(env_dir, path)?))
        }
        Target::AzureMl(target) => {
            let mut config = azureml::AzureMlConfig::try_from_env()?;
            if let Some(url) = &opts.arm_endpoint {
                config.arm_endpoint = url
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--arm-endpoint {url}: {e}"))?;
            }
            let credential = azureml::credential_from_env(&config.arm_endpoint)?;
            Ok(Box::new(azureml::AzureMlBackend::new(
                target, config, credential,
            )?))
        }
        Target::Kubernetes(target) => {
            let opts = kubernetes::KubernetesOptions::from_env()?;
            let client = kubernetes::client_from_env(&opts).await?;
            Ok(Box::new(kubernetes::KubernetesBackend::new(
                target, client, opts,
            )))
        }
    }
}
