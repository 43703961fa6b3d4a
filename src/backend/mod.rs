//! One trait for every platform. The planner never sees a backend; the executor (`apply`) and the
//! CLI do. Backends: `azureml` (ARM REST), `kubernetes` (kube-rs), `memory` (tests), `state_file`
//! (the in-memory backend persisted to a file).

use std::path::Path;

use async_trait::async_trait;

use crate::model::{Environment, LiveState, Target};
use crate::plan::Step;

pub mod azureml;
pub mod kubernetes;
pub mod memory;
pub mod state_file;

/// What a backend reports about one executed step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepOutcome {
    /// Short detail for the report, e.g. "provisioned in 3.1s", "200 from green".
    pub detail: String,
}

/// Errors from a backend. Messages name the endpoint (and deployment) and carry the platform's
/// error code and message; they never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The platform refused or failed the operation (ARM error, Kubernetes Status, ...).
    #[error("{subject}: {code}: {message}")]
    Platform {
        subject: String,
        code: String,
        message: String,
    },
    /// A pre-traffic test failed: the rollout stops and traffic stays where it was.
    #[error("{subject}: test failed: {message}")]
    TestFailed { subject: String, message: String },
    /// A wait ran out of time.
    #[error("{subject}: timed out after {seconds}s waiting for {what}")]
    Timeout {
        subject: String,
        what: String,
        seconds: u64,
    },
    /// Could not reach the platform or authenticate.
    #[error("{0}")]
    Transport(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
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
    async fn execute(&self, step: &Step) -> Result<StepOutcome, BackendError>;
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
            let client = kubernetes::client_from_env().await?;
            Ok(Box::new(kubernetes::KubernetesBackend::new(
                target,
                client,
                kubernetes::KubernetesOptions::from_env()?,
            )))
        }
    }
}
