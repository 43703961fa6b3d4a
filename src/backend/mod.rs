//! The backends, wired together: the trait and the platform-free backends come from
//! `flightdeck-core`, each platform from its own crate; `connect` picks one for a target, with
//! a configuration built at the edges (`config`: CLI flags and variables, the agent's file).

use std::path::Path;

use crate::model::{Environment, Target};
use crate::plan::profile::{NEUTRAL, Normalisation, PlatformProfile};

mod config;

pub use config::{BackendConfig, BackendConfigError, BackendSettings, CredentialVars};
pub use flightdeck_azureml as azureml;
pub use flightdeck_core::backend::*;
pub use flightdeck_kubernetes as kubernetes;
/// The Prometheus metrics provider for rollout gates (Azure Monitor's is `azureml::monitor`).
pub use flightdeck_prometheus as prometheus;

/// The profile of the `state_file` target (the in-memory platform persisted to a file): it
/// emulates Azure ML's semantics (create-only fields, the image inside the environment,
/// registered asset references) but accepts every field of the format, so either form can be
/// tried offline.
pub const STATE_FILE_PROFILE: PlatformProfile = PlatformProfile {
    name: "state_file",
    create_only: azureml::CREATE_ONLY,
    values: Normalisation {
        workspace_asset_ids: false,
        ..azureml::PROFILE.values
    },
    ..NEUTRAL
};

/// The platform profile of a target: what `validate` and the planner must know about it.
pub fn profile_of(target: &Target) -> &'static PlatformProfile {
    match target {
        Target::AzureMl(_) => &azureml::PROFILE,
        Target::Kubernetes(_) => &kubernetes::PROFILE,
        Target::StateFile { .. } => &STATE_FILE_PROFILE,
    }
}

/// The backend for an environment's target. `env_dir` anchors relative paths (state files).
/// `config` comes from the edges (CLI flags and variables, the agent's configuration).
pub async fn connect(
    env: &Environment,
    env_dir: &Path,
    config: &BackendConfig,
) -> anyhow::Result<Box<dyn Backend>> {
    match &env.target {
        Target::StateFile { path } => {
            Ok(Box::new(state_file::StateFileBackend::open(env_dir, path)?))
        }
        Target::AzureMl(target) => {
            let azureml = config.azureml.clone();
            let credential = azureml::credential_from_vars(&azureml.arm_endpoint, &|name| {
                config.credentials.get(name)
            })?;
            Ok(Box::new(azureml::AzureMlBackend::new(
                target, azureml, credential,
            )?))
        }
        Target::Kubernetes(target) => {
            let opts = config.kubernetes.clone();
            let client = kubernetes::client_from_kubeconfig(&opts).await?;
            Ok(Box::new(kubernetes::KubernetesBackend::new(
                target, client, opts,
            )))
        }
    }
}
