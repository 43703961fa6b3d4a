//! `flightdeck dashboard ENV_DIR`: the dashboard without an agent. Every `--every` it loads the
//! environment from the directory, reads the platform's live state and rollout records, asks
//! the rollout engine where each rollout stands (without reading metrics or running smoke
//! requests: nothing is judged or written), and feeds the board the same typed updates the
//! agent's events do. Read-only: it never writes to the platform.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::board::{Hub, Reconciled, panels_of};
use super::scoring;
use crate::backend::{self, BackendConfig};
use crate::metrics::MetricsProvider;
use crate::model::Environment;
use crate::rollouts::{self, Metrics};
use crate::spec;

/// Poll settings.
#[derive(Clone, Debug)]
pub struct LocalSettings {
    pub env_dir: PathBuf,
    pub every: Duration,
    pub backend: BackendConfig,
}

/// Polls until `cancel`; the first poll runs at once.
pub async fn poll(settings: LocalSettings, hub: Arc<Hub>, cancel: CancellationToken) {
    let env = settings.env_dir.display().to_string();
    let mut metrics = None;
    loop {
        poll_once(&settings, &env, &hub, &mut metrics).await;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(settings.every) => {}
        }
    }
}

/// The Git commit the environment directory is checked out at, if it is in a repository.
fn head_commit(dir: &Path) -> Option<String> {
    let repo = git2::Repository::discover(dir).ok()?;
    let head = repo.head().ok()?.peel_to_commit().ok()?;
    Some(head.id().to_string())
}

/// The metrics source, kept while the environment stays the same.
pub type MetricsCache = Option<(Environment, Option<Arc<dyn MetricsProvider>>)>;

/// One poll: what the agent's `Observed`, `ScoringRead` and `Reconciled` events would have
/// reported.
pub async fn poll_once(settings: &LocalSettings, env: &str, hub: &Hub, metrics: &mut MetricsCache) {
    let mut desired = match spec::load_environment(&settings.env_dir, backend::profile_of) {
        Ok(d) => d,
        Err(diagnostics) => {
            return hub.failed(env, diagnostics.to_string().trim_end());
        }
    };
    let backend =
        match backend::connect(&desired.environment, &settings.env_dir, &settings.backend).await {
            Ok(b) => b,
            Err(e) => return hub.failed(env, &format!("backend: {e:#}")),
        };
    let live = match backend.read_live().await {
        Ok(l) => l,
        Err(e) => return hub.failed(env, &format!("backend: {e:#}")),
    };
    hub.observed(env, panels_of(&live));
    let provider = match metrics {
        Some((known, provider)) if *known == desired.environment => provider.clone(),
        _ => {
            let opened = backend::metrics_provider(&desired.environment, &settings.backend, &|k| {
                std::env::var(k).ok()
            })
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "no scoring share: the metrics source does not open");
                None
            });
            *metrics = Some((desired.environment.clone(), opened.clone()));
            opened
        }
    };
    if let Some(provider) = provider {
        let reads = live
            .endpoints
            .values()
            .take(scoring::MAX_ENDPOINTS)
            .map(|e| {
                let provider = provider.clone();
                let deployments: Vec<String> = e.deployments.keys().cloned().collect();
                async move {
                    (
                        e.name.as_str(),
                        scoring::shares(&provider, &e.name, deployments).await,
                    )
                }
            });
        for (endpoint, shares) in futures::future::join_all(reads).await {
            if let Some(shares) = shares {
                hub.scoring(env, endpoint, shares);
            }
        }
    }
    let profile = backend::profile_of(&desired.environment.target);
    if let Err(refusals) = crate::slots::resolve(&mut desired, &live, profile) {
        let text: Vec<String> = refusals.iter().map(|r| r.to_string()).collect();
        return hub.failed(env, &format!("plan refused: {}", text.join("; ")));
    }
    let refused = |refusals: Vec<crate::plan::Refusal>| {
        let text: Vec<String> = refusals.iter().map(|r| r.to_string()).collect();
        format!("plan refused: {}", text.join("; "))
    };
    let prepared = match rollouts::prepare(&desired, &live, Metrics::Skip, None).await {
        Ok(p) => p,
        Err(refusals) => return hub.failed(env, &refused(refusals)),
    };
    // In sync when the planner (pure) finds nothing to do at this tick's stages.
    let options = crate::plan::PlanOptions {
        prune: false,
        ignore: desired.environment.drift.ignore.clone(),
    };
    let pending = match crate::plan::plan(&prepared.desired, &live, &options, profile) {
        Ok(plan) => plan.steps.len(),
        Err(refusals) => return hub.failed(env, &refused(refusals)),
    };
    let views = prepared.views;
    // What the platform last applied, as its rollout records say.
    let applied = live
        .endpoints
        .values()
        .filter_map(|e| e.rollout.as_ref()?.revision.clone())
        .next();
    let source = head_commit(&settings.env_dir);
    let revision = source.clone().or(applied.clone()).unwrap_or_default();
    let result = match (pending, views.is_empty()) {
        (0, true) => "in_sync",
        (0, false) => "rolling_out",
        _ => "out_of_sync",
    };
    hub.reconciled(Reconciled {
        env,
        revision: &revision,
        applied: result == "in_sync",
        result,
        error: None,
        rollouts: &views,
        steps: Vec::new(),
    });
    if result != "in_sync"
        && let Some(applied) = applied
    {
        hub.applied(env, &applied);
    }
}
