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

/// The metrics source of an environment's rollout gates (`rollout.metrics`), built from the
/// same configuration as its backend: Azure Monitor on the target's ARM endpoint with the
/// target's credential, or a Prometheus query API. `None` when the environment declares none.
/// `var` reads the variable `token_env` names (the process environment, at the edge).
pub fn metrics_provider(
    env: &Environment,
    config: &BackendConfig,
    var: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<std::sync::Arc<dyn crate::metrics::MetricsProvider>>> {
    use crate::rollout::policy::MetricsSource;
    let Some(source) = &env.rollout.metrics else {
        return Ok(None);
    };
    match source {
        MetricsSource::AzureMonitor {
            ingestion_delay,
            base_url,
        } => {
            let Target::AzureMl(target) = &env.target else {
                anyhow::bail!(
                    "rollout.metrics: azure_monitor needs an azureml target (this one is {})",
                    env.target.kind()
                );
            };
            let mut monitor = azureml::AzureMonitorConfig {
                arm_endpoint: config.azureml.arm_endpoint.clone(),
                retry: config.azureml.retry.clone(),
                ..azureml::AzureMonitorConfig::default()
            };
            if let Some(url) = base_url {
                monitor.arm_endpoint = url::Url::parse(url)
                    .map_err(|e| anyhow::anyhow!("rollout.metrics.base_url {url:?}: {e}"))?;
            }
            if let Some(delay) = ingestion_delay {
                monitor.ingestion_delay = *delay;
            }
            let credential = azureml::credential_from_vars(&monitor.arm_endpoint, &|name| {
                config.credentials.get(name)
            })?;
            let provider = azureml::AzureMonitorProvider::new(target, monitor, credential)?;
            Ok(Some(std::sync::Arc::new(provider)))
        }
        MetricsSource::Prometheus {
            url,
            queries,
            token_env,
        } => {
            let parsed = url::Url::parse(url)
                .map_err(|e| anyhow::anyhow!("rollout.metrics.url {url:?}: {e}"))?;
            let namespace = match &env.target {
                Target::Kubernetes(k) => k.namespace.clone(),
                _ => env.name.clone(),
            };
            let mut prom = prometheus::PrometheusConfig::new(parsed, namespace);
            for (signal, template) in queries {
                let slot = match signal.as_str() {
                    "requests" => &mut prom.templates.requests,
                    "error_rate" => &mut prom.templates.error_rate,
                    "p95" => &mut prom.templates.latency_p95,
                    "p99" => &mut prom.templates.latency_p99,
                    other => anyhow::bail!("rollout.metrics.queries: unknown signal {other:?}"),
                };
                *slot = template.clone();
            }
            if let Some(name) = token_env {
                let token = var(name).filter(|t| !t.is_empty()).ok_or_else(|| {
                    anyhow::anyhow!("rollout.metrics.token_env: {name} is not set")
                })?;
                prom.bearer_token = Some(flightdeck_core::secret::Secret::new(token));
            }
            Ok(Some(std::sync::Arc::new(
                prometheus::PrometheusProvider::new(prom)?,
            )))
        }
    }
}
