//! The backends, wired together: the trait and the platform-free backends come from
//! `flightdeck-core`, each platform from its own crate; `connect` picks one for a target.

use std::path::Path;

use crate::model::{Environment, Target};
use crate::plan::profile::{NEUTRAL, Normalisation, PlatformProfile};

pub use flightdeck_azureml as azureml;
pub use flightdeck_core::backend::*;
pub use flightdeck_kubernetes as kubernetes;

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
