//! What the agent knows about itself and each environment, shared by the loop and the HTTP
//! server (`/status`, `/readyz`).

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::metrics::Metrics;
use super::trigger::SyncTrigger;
use crate::plan::Step;
use std::sync::Arc;

/// Per-environment status, as served by `/status`.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct EnvStatus {
    /// The revision most recently reconciled (or attempted).
    pub commit: Option<String>,
    /// The last revision whose desired state was fully applied.
    pub applied_commit: Option<String>,
    /// `in_sync`, `applied`, `drift_reported`, `planned` (follower), `invalid`, `refused`,
    /// `failed`, `cancelled`.
    pub last_result: Option<String>,
    /// Steps still needed to reach the desired state (empty when in sync).
    pub pending_plan: Vec<Step>,
    /// Live state differs from an unchanged revision.
    pub drift: bool,
    /// The last error, with `file:line:col` for invalid YAML.
    pub last_error: Option<String>,
    /// When this environment was last reconciled successfully.
    pub last_sync_time: Option<DateTime<Utc>>,
    pub last_attempt_time: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    /// When a failed environment is retried (unless a new revision arrives first).
    pub next_retry_time: Option<DateTime<Utc>>,
    /// The environment's worker task: `running`, or why it stopped (`panicked: <message>`,
    /// `exited unexpectedly`) until it is restarted.
    pub worker: String,
    /// How often the worker was restarted after a crash.
    pub worker_restarts: u32,
    /// Why the worker last crashed (kept after the restart).
    pub last_worker_error: Option<String>,
    /// Endpoints in a staged rollout, or held after one failed, as of the last reconcile: stage,
    /// traffic, the line people read, the last verdicts (docs/rollouts.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollouts: Vec<crate::rollout::RolloutView>,
}

impl EnvStatus {
    /// The worker crashed and is not running again yet.
    pub fn worker_down(&self) -> bool {
        !self.worker.is_empty() && self.worker != "running"
    }
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct AgentStatus {
    pub source: String,
    /// The revision of the last successful fetch.
    pub revision: Option<String>,
    pub last_fetch_time: Option<DateTime<Utc>>,
    pub last_fetch_error: Option<String>,
    /// Fetch rounds finished since start, successful or not: it moves on every poll, so a
    /// watcher (or a test) can tell "nothing happened" from "nothing has run yet".
    pub fetch_rounds: u64,
    /// Requests for a fetch round now (webhook pushes, `--watch-local` changes) since start,
    /// counted when made, before the round they cause: a test (or a watcher) can tell "nobody
    /// asked" from "asked, not served yet" without waiting.
    pub sync_requests: u64,
    /// `leader`, `follower`, or `standalone` (no leader election).
    pub role: String,
    pub ready: bool,
    pub environments: BTreeMap<String, EnvStatus>,
    /// MLflow promotions (`--mlflow-uri`), when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<PromotionStatus>,
}

/// The promotion loop's state (`agent::promotion`).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct PromotionStatus {
    pub last_pass_time: Option<DateTime<Utc>>,
    /// Why the last pass could not run (the work tree could not be synced).
    pub last_error: Option<String>,
    /// The last [`PromotionStatus::RECENT`] outcomes, newest last: commits, pull requests,
    /// refusals and failures (a version already declared is not listed).
    pub recent: Vec<PromotionEvent>,
}

impl PromotionStatus {
    pub const RECENT: usize = 20;

    pub fn push(&mut self, event: PromotionEvent) {
        if self.recent.len() == Self::RECENT {
            self.recent.remove(0);
        }
        self.recent.push(event);
    }
}

/// One promotion outcome.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PromotionEvent {
    pub time: DateTime<Utc>,
    /// `committed`, `pull_request`, `refused` or `failed`.
    pub result: String,
    pub message: String,
    /// `name@alias` or `name/Stage`.
    pub model: Option<String>,
    pub version: Option<String>,
    pub environment: Option<String>,
    pub endpoint: Option<String>,
    pub commit: Option<String>,
    pub pull_request: Option<String>,
}

/// State shared by the loop tasks and the HTTP handlers.
#[derive(Debug, Default)]
pub struct AgentState {
    pub metrics: Metrics,
    /// What the dashboard shows; fed by the same events as metrics, logs and `/status`.
    pub dashboard: Arc<crate::dashboard::Hub>,
    status: RwLock<AgentStatus>,
    ready: AtomicBool,
    /// What wakes the fetch loop; `/status` reports its request count.
    trigger: Arc<SyncTrigger>,
}

impl AgentState {
    pub fn new(
        source: String,
        role: &str,
        envs: impl IntoIterator<Item = String>,
        trigger: Arc<SyncTrigger>,
    ) -> AgentState {
        let status = AgentStatus {
            source,
            role: role.to_string(),
            environments: envs
                .into_iter()
                .map(|e| (e, EnvStatus::default()))
                .collect(),
            ..AgentStatus::default()
        };
        AgentState {
            metrics: Metrics::default(),
            dashboard: Arc::new(crate::dashboard::Hub::new(status.source.clone(), None)),
            status: RwLock::new(status),
            ready: AtomicBool::new(false),
            trigger,
        }
    }

    /// True once any environment has synced successfully. Not "every": one environment with
    /// broken YAML must not take all replicas out of the Service, or the webhook carrying the
    /// fix could not reach them.
    pub fn is_ready(&self) -> bool {
        self.not_ready_reason().is_none()
    }

    /// Why `/readyz` fails: no environment synced yet, or a crashed worker not restarted yet.
    pub fn not_ready_reason(&self) -> Option<String> {
        if let Ok(status) = self.status.read()
            && let Some((env, s)) = status.environments.iter().find(|(_, s)| s.worker_down())
        {
            return Some(format!("worker for {env} {}", s.worker));
        }
        if !self.ready.load(Ordering::Acquire) {
            return Some("no successful sync yet".into());
        }
        None
    }

    pub fn snapshot(&self) -> AgentStatus {
        let mut status = self.status.read().map(|s| s.clone()).unwrap_or_default();
        status.ready = self.is_ready();
        status.sync_requests = self.trigger.requests();
        status
    }

    pub fn update(&self, f: impl FnOnce(&mut AgentStatus)) {
        if let Ok(mut status) = self.status.write() {
            f(&mut status);
        }
    }

    pub fn update_env(&self, env: &str, f: impl FnOnce(&mut EnvStatus)) {
        let mut synced = false;
        if let Ok(mut status) = self.status.write() {
            let entry = status.environments.entry(env.to_string()).or_default();
            f(entry);
            synced = entry.last_sync_time.is_some();
        }
        if synced {
            self.ready.store(true, Ordering::Release);
        }
    }

    pub fn env(&self, env: &str) -> Option<EnvStatus> {
        self.status
            .read()
            .ok()
            .and_then(|s| s.environments.get(env).cloned())
    }
}
