//! The production [`Reconcile`]: load the environment from the revision's files (`spec`), then
//! the same `reconcile_once` as `flightdeck apply` (read live, plan with `drift.ignore`, apply
//! unless the environment only reports drift or this replica does not lead), with a backend
//! kept per environment. Between full resyncs a tick reads and plans only the endpoints whose
//! desired state changed or that a rollout keeps busy (`scope`). Because every reconcile plans from live state, an agent restarted
//! mid-rollout simply continues from where live state is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;

use super::reconcile::{Job, Reconcile};
use super::scope::{DEFAULT_FULL_RESYNC, Fingerprint, Full, Scope, Targeting};
use crate::apply::ApplyOptions;
use crate::backend::{self, Backend, BackendConfig};
use crate::metrics::MetricsProvider;
use crate::model::{DesiredState, Environment};
use crate::reconcile::{self, Invalid, ReconcileOutcome};
use crate::spec;

/// Opens a backend for an environment; `env_dir` anchors relative paths (`state_file`).
pub type Connector = Arc<
    dyn Fn(Environment, PathBuf) -> BoxFuture<'static, anyhow::Result<Box<dyn Backend>>>
        + Send
        + Sync,
>;

/// The real connector: `backend::connect` with the agent's backend configuration.
pub fn default_connector(options: BackendConfig) -> Connector {
    Arc::new(move |environment: Environment, env_dir: PathBuf| {
        let options = options.clone();
        Box::pin(async move { backend::connect(&environment, &env_dir, &options).await })
    })
}

/// Opens an environment's rollout metrics source (`rollout.metrics`), if it declares one.
pub type MetricsConnector =
    Arc<dyn Fn(&Environment) -> anyhow::Result<Option<Arc<dyn MetricsProvider>>> + Send + Sync>;

/// The real metrics connector: `backend::metrics_provider` with the agent's configuration.
pub fn default_metrics(options: BackendConfig) -> MetricsConnector {
    Arc::new(move |environment: &Environment| {
        backend::metrics_provider(environment, &options, &|name| std::env::var(name).ok())
    })
}

pub struct Pipeline {
    connector: Connector,
    /// Opens the rollout metrics source; `None`: environments with gates cannot be judged.
    pub metrics: Option<MetricsConnector>,
    /// Metrics sources kept per environment (their grain caches) until its environment changes.
    providers: std::sync::Mutex<HashMap<PathBuf, OpenedMetrics>>,
    /// For a local directory source, environment paths are relative to this root.
    root: Option<PathBuf>,
    /// Endpoints applied at the same time within one environment.
    pub concurrency: usize,
    /// Backends are reused across ticks (token caches, connection pools) until the
    /// environment's target changes.
    backends: tokio::sync::Mutex<HashMap<PathBuf, Connected>>,
    /// Every how long a tick reads and plans every endpoint (`--full-resync-interval`); the
    /// ticks between reconcile only what changed (`scope`). Zero: every tick is full.
    pub full_resync: Duration,
    /// What each environment's last ticks reconciled, for the next one's scope.
    targeting: std::sync::Mutex<HashMap<PathBuf, Targeting>>,
    /// Per environment: its last snapshot and file index records, so a new commit reloads
    /// only what changed (`spec::reload`).
    loaders: std::sync::Mutex<HashMap<PathBuf, spec::reload::Reloader>>,
}

/// A metrics source and the environment it was opened for.
type OpenedMetrics = (Environment, Option<Arc<dyn MetricsProvider>>);

/// A backend and the environment (target) it was opened for.
type Connected = (Environment, Arc<dyn Backend>);

impl Pipeline {
    /// `concurrency`: endpoints applied at the same time (`--concurrency`, default 8).
    pub fn new(connector: Connector, root: Option<PathBuf>, concurrency: usize) -> Pipeline {
        Pipeline {
            connector,
            root,
            concurrency,
            backends: tokio::sync::Mutex::new(HashMap::new()),
            metrics: None,
            providers: std::sync::Mutex::new(HashMap::new()),
            full_resync: DEFAULT_FULL_RESYNC,
            targeting: std::sync::Mutex::new(HashMap::new()),
            loaders: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The scope of a tick of `path` over `desired` (full when the state cannot be read).
    fn scope_of(&self, path: &Path, desired: &DesiredState) -> (Fingerprint, Scope) {
        let fingerprint = Fingerprint::of(desired);
        let now = tokio::time::Instant::now();
        let scope = match self.targeting.lock() {
            Ok(targeting) => targeting.get(path).map_or(Scope::Full(Full::First), |t| {
                t.scope(&fingerprint, now, self.full_resync)
            }),
            Err(_) => Scope::Full(Full::First),
        };
        (fingerprint, scope)
    }

    /// The desired state of `job`'s snapshot, loaded against the environment's previous one.
    fn load(&self, job: &Job) -> Result<crate::model::DesiredState, spec::Diagnostics> {
        let profile_of = crate::backend::profile_of;
        let Ok(mut loaders) = self.loaders.lock() else {
            return spec::load_tree(&job.files, &job.path, profile_of);
        };
        loaders
            .entry(job.path.clone())
            .or_default()
            .load(&job.files, &job.path, profile_of)
    }

    async fn backend(
        &self,
        path: &Path,
        environment: &Environment,
    ) -> anyhow::Result<Arc<dyn Backend>> {
        let mut backends = self.backends.lock().await;
        if let Some((known, backend)) = backends.get(path)
            && known == environment
        {
            return Ok(backend.clone());
        }
        let env_dir = match &self.root {
            Some(root) => root.join(path),
            None => path.to_path_buf(),
        };
        let backend: Arc<dyn Backend> =
            (self.connector)(environment.clone(), env_dir).await?.into();
        backends.insert(path.to_path_buf(), (environment.clone(), backend.clone()));
        Ok(backend)
    }
}

/// One job's edges: the pipeline's cached backend for the job's environment path.
struct JobPlatform<'a> {
    pipeline: &'a Pipeline,
    path: &'a Path,
    observe: Option<&'a super::reconcile::Observer>,
}

#[async_trait]
impl reconcile::Platform for JobPlatform<'_> {
    async fn connect(&self, environment: &Environment) -> anyhow::Result<Arc<dyn Backend>> {
        self.pipeline.backend(self.path, environment).await
    }

    fn observed(
        &self,
        live: &crate::model::LiveState,
        only: Option<&std::collections::BTreeSet<String>>,
    ) {
        if let Some(observe) = self.observe {
            observe.live(live, only);
        }
    }

    async fn metrics(
        &self,
        environment: &Environment,
    ) -> anyhow::Result<Option<Arc<dyn MetricsProvider>>> {
        let Some(open) = &self.pipeline.metrics else {
            return Ok(None);
        };
        let mut providers = self
            .pipeline
            .providers
            .lock()
            .map_err(|_| anyhow::anyhow!("metrics cache poisoned"))?;
        if let Some((known, provider)) = providers.get(self.path)
            && known == environment
        {
            return Ok(provider.clone());
        }
        let provider = open(environment)?;
        providers.insert(
            self.path.to_path_buf(),
            (environment.clone(), provider.clone()),
        );
        Ok(provider)
    }
}

#[async_trait]
impl Reconcile for Pipeline {
    async fn reconcile(&self, job: Job) -> ReconcileOutcome {
        let loading = std::time::Instant::now();
        let desired = self.load(&job).map_err(Invalid::Spec);
        tracing::debug!(
            seconds = loading.elapsed().as_secs_f64(),
            "desired state loaded"
        );
        let started = tokio::time::Instant::now();
        let scoping = std::time::Instant::now();
        let scoped = desired.as_ref().ok().map(|d| self.scope_of(&job.path, d));
        tracing::debug!(seconds = scoping.elapsed().as_secs_f64(), "scope decided");
        let only = match &scoped {
            Some((_, Scope::Only(names))) => {
                tracing::debug!(endpoints = names.len(), "targeted reconcile");
                Some(names.clone())
            }
            Some((_, Scope::Full(why))) => {
                tracing::debug!(why = why.as_str(), "full reconcile");
                None
            }
            None => None,
        };
        let request = reconcile::Request {
            prune: false,
            revision_changed: job.revision_changed,
            may_apply: job.may_apply,
            apply: ApplyOptions {
                concurrency: self.concurrency,
                dry_run: false,
            },
            revision: Some(job.revision.chars().take(12).collect()),
            only,
        };
        let platform = JobPlatform {
            pipeline: self,
            path: &job.path,
            observe: job.observe.as_ref(),
        };
        let environment = desired.as_ref().ok().map(|d| d.environment.clone());
        let outcome = reconcile::reconcile_once(desired, &platform, &request, &job.cancel).await;
        if let Some((fingerprint, scope)) = scoped
            && let Ok(mut targeting) = self.targeting.lock()
        {
            let memory = targeting.entry(job.path.clone()).or_default();
            memory.record(&scope, fingerprint, &outcome, started);
        }
        if let (Some(observe), Some(environment)) = (&job.observe, environment) {
            scoring_shares(&platform, observe, &environment, &outcome).await;
        }
        outcome
    }
}

/// While someone watches the dashboard: the scoring share of each endpoint in a rollout, one
/// `requests` read each, from the environment's own metrics source.
async fn scoring_shares(
    platform: &JobPlatform<'_>,
    observe: &super::reconcile::Observer,
    environment: &Environment,
    outcome: &ReconcileOutcome,
) {
    use crate::reconcile::Platform;
    let rollouts = outcome.plan().map_or(&[][..], |p| p.rollouts.as_slice());
    if rollouts.is_empty() || !observe.wants_scoring() {
        return;
    }
    let Ok(Some(provider)) = platform.metrics(environment).await else {
        return;
    };
    let reads = rollouts
        .iter()
        .take(crate::dashboard::scoring::MAX_ENDPOINTS)
        .map(|view| {
            let mut deployments: Vec<String> = view.traffic.keys().cloned().collect();
            for d in view.declared.keys() {
                if !deployments.contains(d) {
                    deployments.push(d.clone());
                }
            }
            let provider = provider.clone();
            async move {
                let shares =
                    crate::dashboard::scoring::shares(&provider, &view.endpoint, deployments).await;
                (view.endpoint.as_str(), shares)
            }
        });
    for (endpoint, shares) in futures::future::join_all(reads).await {
        if let Some(shares) = shares {
            observe.scoring(endpoint, shares);
        }
    }
}
