//! `flightdeck agent`: the long-running GitOps reconciler. A fetch loop follows the source (on
//! start, on an interval with jitter, on webhook pushes, on local file changes) and publishes a
//! snapshot per tick; one worker per environment reconciles it with its own backoff; an HTTP
//! server serves health, readiness, metrics, status, the webhook and the dashboard (`/`); with
//! `--leader-elect` only the Lease holder applies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod backoff;
pub mod config;
pub mod events;
pub mod http;
pub mod lease;
pub mod listener;
pub mod metrics;
pub mod mlflow_hook;
pub mod pipeline;
pub mod policy;
pub mod promotion;
pub mod reconcile;
pub mod scope;
pub mod status;
mod supervise;
pub mod trigger;
pub mod webhook;
mod worker;

pub use crate::reconcile::ReconcileOutcome;
pub use config::{AgentArgs, AgentConfig, SourceKind};
pub use reconcile::{Job, Reconcile};
pub use status::{AgentState, AgentStatus, EnvStatus};

use crate::source::verify::Verifier;
use crate::source::{GitConfig, GitRef, GitSource, LocalSource, Source, SourceError};
use backoff::Backoff;
use lease::{KubeLeaseStore, LeaderElector, LeaseConfig};
use pipeline::Pipeline;
use trigger::SyncTrigger;
use worker::{EnvWorker, Tick};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("listening on {addr}: {message}")]
    Listen { addr: SocketAddr, message: String },
    #[error("kubernetes client for leader election: {0}")]
    Kube(String),
}

/// Optional overrides for tests and embedding.
#[derive(Clone, Default)]
pub struct AgentOptions {
    /// Client for the Lease API (default: in-cluster or kubeconfig).
    pub kube_client: Option<kube::Client>,
    /// Lease timings (default: 15 s / 10 s / 2 s).
    pub lease_timing: Option<(Duration, Duration, Duration)>,
    /// Per-environment backoff (default: 2 s doubling to 5 min).
    pub backoff: Option<Backoff>,
    /// Delay before restarting a crashed environment worker (default: 1 s doubling to 1 min).
    pub restart_backoff: Option<Backoff>,
    /// This replica's identity for the Lease (default: `$POD_NAME`, else hostname + random).
    pub identity: Option<String>,
}

/// A running agent.
pub struct Agent {
    addr: SocketAddr,
    state: Arc<AgentState>,
    trigger: Arc<SyncTrigger>,
    cancel: CancellationToken,
    workers: Vec<JoinHandle<()>>,
    server: JoinHandle<()>,
    server_stop: CancellationToken,
    _watch: Option<crate::source::local::DirWatch>,
}

impl Agent {
    /// Starts every task; returns once the HTTP server is listening.
    pub async fn start(
        config: AgentConfig,
        reconciler: Arc<dyn Reconcile>,
        options: AgentOptions,
        cancel: CancellationToken,
    ) -> Result<Agent, AgentError> {
        let trigger = Arc::new(SyncTrigger::default());
        let mut watch_guard = None;
        let (source, tracked_ref): (Arc<dyn Source>, Option<String>) = match &config.source {
            SourceKind::Git {
                url,
                reference,
                cache_dir,
                auth,
            } => {
                let verifier = if config.verify_keys.is_empty() {
                    None
                } else {
                    Some(Verifier::from_files(&config.verify_keys)?)
                };
                let git = GitSource::new(
                    GitConfig {
                        url: url.clone(),
                        reference: reference.clone(),
                        paths: config.paths.clone(),
                        cache_dir: cache_dir.clone(),
                        auth: auth.clone(),
                    },
                    verifier,
                )?;
                let tracked = match reference {
                    GitRef::Branch(b) => Some(format!("refs/heads/{b}")),
                    GitRef::Rev(_) => None,
                };
                (Arc::new(Arc::new(git)), tracked)
            }
            SourceKind::Local { root } => {
                let local = LocalSource::new(root.clone(), &config.paths)?;
                watch_guard = Some(crate::source::watch_dir(
                    root,
                    &config.paths,
                    Duration::from_millis(300),
                    {
                        let trigger = trigger.clone();
                        move || trigger.request()
                    },
                )?);
                (Arc::new(Arc::new(local)), None)
            }
        };

        let (leader_tx, leader_rx) = watch::channel(config.lease.is_none());
        let role = if config.lease.is_some() {
            "follower"
        } else {
            "standalone"
        };
        let envs: Vec<String> = config
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let state = Arc::new(AgentState::new(
            source.describe(),
            role,
            envs,
            trigger.clone(),
        ));

        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| AgentError::Listen {
                addr: config.listen,
                message: e.to_string(),
            })?;
        let addr = listener.local_addr().map_err(|e| AgentError::Listen {
            addr: config.listen,
            message: e.to_string(),
        })?;
        let mut workers = Vec::new();
        let mut leader_url = None;
        if let Some(settings) = &config.lease {
            let renew_deadline = options
                .lease_timing
                .map_or(lease::LeaseConfig::DEFAULT_RENEW_DEADLINE, |(_, d, _)| d);
            let client = match &options.kube_client {
                Some(client) => client.clone(),
                None => lease_client(renew_deadline).await?,
            };
            let identity = options.identity.clone().unwrap_or_else(default_identity);
            let mut lease_config =
                LeaseConfig::new(settings.name.clone(), settings.namespace.clone(), identity);
            if let Some((duration, deadline, retry)) = options.lease_timing {
                lease_config.lease_duration = duration;
                lease_config.renew_deadline = deadline;
                lease_config.retry_period = retry;
            }
            if config.webhook_secret.is_some() {
                lease_config.advertise_url = settings.advertise_url.clone();
            }
            let store = KubeLeaseStore::new(client, &settings.namespace, &settings.name);
            let elector = LeaderElector::new(store, lease_config);
            leader_url = Some(elector.leader_url());
            let mut leader_watch = leader_tx.subscribe();
            let role_state = state.clone();
            workers.push(tokio::spawn(async move {
                // Mirror leadership into status and metrics.
                while leader_watch.changed().await.is_ok() {
                    let leading = *leader_watch.borrow();
                    role_state.metrics.leader(leading);
                    role_state.update(|s| {
                        s.role = if leading { "leader" } else { "follower" }.to_string()
                    });
                }
            }));
            state.metrics.leader(false);
            workers.push(tokio::spawn(elector.run(leader_tx, cancel.clone())));
        } else {
            // Keep the sender alive so workers never see leadership "close".
            workers.push(tokio::spawn({
                let cancel = cancel.clone();
                async move {
                    cancel.cancelled().await;
                    drop(leader_tx);
                }
            }));
        }

        state
            .dashboard
            .set_source(&source.describe(), config.dashboard.commit_url.clone());
        let dashboard = crate::dashboard::DashboardContext::new(
            state.dashboard.clone(),
            config.dashboard.token.clone(),
        );
        let mut mlflow = None;
        if let Some(p) = &config.promotion {
            let (hints, queue) = tokio::sync::mpsc::channel(promotion::HINT_QUEUE);
            mlflow = p
                .webhook_secret
                .clone()
                .map(|secret| mlflow_hook::MlflowHook {
                    secret,
                    deliveries: Default::default(),
                    hints,
                });
            let mut promoter = promotion::Promoter::new(
                p.client.clone(),
                promotion::Worktree::new(
                    p.work_dir.clone(),
                    p.url.clone(),
                    p.branch.clone(),
                    p.auth.clone(),
                ),
                config.paths.clone(),
                p.interval,
                p.hosting.clone(),
                state.clone(),
            );
            promoter.trigger = Some(trigger.clone());
            state.update(|s| s.promotion = Some(Default::default()));
            workers.push(tokio::spawn(promoter.run(
                queue,
                leader_rx.clone(),
                cancel.clone(),
            )));
        }
        let router = http::router(http::HttpContext {
            mlflow,
            state: state.clone(),
            webhook: config
                .webhook_secret
                .clone()
                .map(|secret| http::WebhookConfig {
                    secret,
                    tracked_ref,
                }),
            trigger: trigger.clone(),
            body_timeout: config.http.body_timeout,
            forward: leader_url.map(|leader_url| http::Forward {
                leading: leader_rx.clone(),
                leader_url,
                client: http::forward_client(),
            }),
        })
        .merge(crate::dashboard::routes(dashboard));
        let server_stop = CancellationToken::new();
        let stop = server_stop.clone();
        let server = tokio::spawn(listener::serve(listener, router, config.http, stop));
        tracing::info!(addr = %addr, source = %source.describe(), "agent listening");

        let (ticks_tx, ticks_rx) = watch::channel::<Tick>(None);
        for path in &config.paths {
            let worker = EnvWorker {
                path: crate::source::normalize_path(path)?,
                reconciler: reconciler.clone(),
                state: state.clone(),
                policy: policy::Policy {
                    backoff: options.backoff.unwrap_or_default(),
                    poll_interval: config.interval,
                },
                leader: leader_rx.clone(),
            };
            workers.push(tokio::spawn(supervise::supervise(
                worker,
                ticks_rx.clone(),
                options
                    .restart_backoff
                    .unwrap_or(supervise::RESTART_BACKOFF),
                cancel.clone(),
            )));
        }
        workers.push(tokio::spawn(worker::fetch_loop(
            source,
            config.interval,
            trigger.clone(),
            ticks_tx,
            state.clone(),
            cancel.clone(),
        )));

        Ok(Agent {
            addr,
            state,
            trigger,
            cancel,
            workers,
            server,
            server_stop,
            _watch: watch_guard,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> Arc<AgentState> {
        self.state.clone()
    }

    /// Asks for a fetch and reconcile now (what a webhook push does).
    pub fn trigger(&self) {
        self.trigger.request();
    }

    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Waits for shutdown: after `cancel`, in-flight rollouts stop between steps, the lease is
    /// released, then the HTTP server stops.
    pub async fn wait(self) {
        for worker in self.workers {
            let _ = worker.await;
        }
        // Open dashboard event streams end first, or the graceful stop would wait for them.
        self.state.dashboard.close();
        self.server_stop.cancel();
        let _ = self.server.await;
        tracing::info!("agent stopped");
    }
}

/// The Kubernetes client for the Lease: no retry layer (a retried renewal would run past the
/// renew deadline; the elector retries every retry period itself) and connect/read timeouts
/// within the renew deadline.
async fn lease_client(renew_deadline: Duration) -> Result<kube::Client, AgentError> {
    let mut config = kube::Config::infer()
        .await
        .map_err(|e| AgentError::Kube(e.to_string()))?;
    config.default_retry = false;
    config.connect_timeout = Some(renew_deadline);
    config.read_timeout = Some(renew_deadline);
    config.write_timeout = Some(renew_deadline);
    // Otherwise time a pooled connection sat idle counts against the read timeout.
    config.reset_reader_on_write = true;
    kube::Client::try_from(config).map_err(|e| AgentError::Kube(e.to_string()))
}

/// The production reconciler for a configuration.
pub fn pipeline_for(config: &AgentConfig) -> Pipeline {
    let connect = config.backend.clone();
    let root = match &config.source {
        SourceKind::Local { root } => Some(root.clone()),
        SourceKind::Git { .. } => None,
    };
    let mut pipeline = Pipeline::new(
        pipeline::default_connector(connect.clone()),
        root,
        config.concurrency,
    );
    pipeline.metrics = Some(pipeline::default_metrics(connect));
    pipeline.full_resync = config.full_resync;
    pipeline
}

/// `flightdeck agent`: resolves the configuration, starts the agent with the real reconciler and
/// runs until SIGTERM or Ctrl-C.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let config = args.resolve(&|key| std::env::var(key).ok())?;
    let cancel = CancellationToken::new();
    let reconciler = Arc::new(pipeline_for(&config));
    let agent = Agent::start(config, reconciler, AgentOptions::default(), cancel.clone()).await?;
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing the current step");
        cancel.cancel();
    });
    agent.wait().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn default_identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME")
        && !pod.is_empty()
    {
        return pod;
    }
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "flightdeck".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}
