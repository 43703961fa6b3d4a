//! The reconcile loop: one fetch task publishes a snapshot on every tick, and one task per
//! environment reconciles it, with its own backoff. Environments never wait for each other.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::backoff::{Backoff, jittered};
use super::reconcile::{Job, Outcome, OutcomeKind, Reconcile, ReconcileError};
use super::status::AgentState;
use crate::source::{Snapshot, Source};

/// A published tick: the latest good snapshot (re-sent on every tick so drift is checked even
/// when the revision does not move).
pub type Tick = Option<Arc<Snapshot>>;

/// Fetches on start, on every `interval` (±10%), and whenever `trigger` fires (webhook, file
/// watch). A failed fetch keeps the last good snapshot.
pub async fn fetch_loop(
    source: Arc<dyn Source>,
    interval: Duration,
    trigger: Arc<Notify>,
    ticks: watch::Sender<Tick>,
    state: Arc<AgentState>,
    cancel: CancellationToken,
) {
    let mut last_good: Tick = None;
    loop {
        let started = Instant::now();
        let fetched = source.fetch().await;
        let repair = source.take_repair();
        if let Some(repair) = &repair {
            tracing::warn!(repair = %repair, "source repaired");
            state.metrics.fetch_failed("cache");
        }
        match fetched {
            Ok(snapshot) => {
                state.metrics.fetched(started.elapsed().as_secs_f64());
                if last_good.as_ref().map(|s| &s.revision) != Some(&snapshot.revision) {
                    tracing::info!(revision = %snapshot.revision, "new revision");
                }
                state.update(|s| {
                    s.revision = Some(snapshot.revision.clone());
                    s.last_fetch_time = Some(crate::clock::now_utc());
                    // A repaired cache is reported until the next fetch.
                    s.last_fetch_error = repair;
                });
                last_good = Some(Arc::new(snapshot));
            }
            Err(err) => {
                tracing::warn!(error = %err, kind = err.kind(), "fetch failed, keeping the last good revision");
                state.metrics.fetch_failed(err.kind());
                state.update(|s| s.last_fetch_error = Some(err.to_string()));
            }
        }
        if last_good.is_some() {
            ticks.send_replace(last_good.clone());
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(jittered(interval)) => {}
            _ = trigger.notified() => tracing::debug!("sync triggered"),
        }
    }
}

/// Per-environment memory between ticks.
#[derive(Debug, Default)]
struct EnvMemory {
    last_applied: Option<String>,
    failures: u32,
    failed_revision: Option<String>,
    retry_at: Option<Instant>,
}

/// Settings of one environment worker.
#[derive(Clone)]
pub struct EnvWorker {
    pub path: PathBuf,
    pub reconciler: Arc<dyn Reconcile>,
    pub state: Arc<AgentState>,
    pub backoff: Backoff,
    /// `true` while this replica may apply (always `true` without leader election).
    pub leader: watch::Receiver<bool>,
}

impl EnvWorker {
    /// Runs until `cancel`; an in-flight reconcile sees the cancellation between steps and the
    /// loop exits once it returns.
    pub async fn run(mut self, mut ticks: watch::Receiver<Tick>, cancel: CancellationToken) {
        let mut memory = EnvMemory::default();
        loop {
            let retry_at = memory.retry_at;
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = ticks.changed() => if changed.is_err() { return },
                changed = self.leader.changed() => if changed.is_err() { return },
                _ = sleep_until(retry_at), if retry_at.is_some() => {}
            }
            let Some(snapshot) = ticks.borrow_and_update().clone() else {
                continue;
            };
            if memory.failures > 0
                && memory.failed_revision.as_deref() == Some(snapshot.revision.as_str())
                && memory.retry_at.is_some_and(|at| Instant::now() < at)
            {
                continue; // same failed revision: wait for the backoff, do not hot-loop
            }
            self.tick(&snapshot, &mut memory, &cancel).await;
            if cancel.is_cancelled() {
                return;
            }
        }
    }

    async fn tick(
        &mut self,
        snapshot: &Snapshot,
        memory: &mut EnvMemory,
        cancel: &CancellationToken,
    ) {
        let env = self.path.display().to_string();
        let span =
            tracing::info_span!("reconcile", env = %env, commit = %short(&snapshot.revision));
        let started = Instant::now();
        let files = match snapshot.envs.get(&self.path) {
            Some(Ok(files)) => files.clone(),
            Some(Err(message)) => {
                let err = ReconcileError::Invalid(message.clone());
                self.record(&env, &snapshot.revision, Err(err), memory, started);
                return;
            }
            None => return,
        };
        let may_apply = *self.leader.borrow_and_update();
        let job_cancel = cancel.child_token();
        let job = Job {
            path: self.path.clone(),
            revision: snapshot.revision.clone(),
            files,
            revision_changed: memory.last_applied.as_deref() != Some(snapshot.revision.as_str()),
            may_apply,
            cancel: job_cancel.clone(),
        };
        let reconcile = self.reconciler.reconcile(job).instrument(span.clone());
        tokio::pin!(reconcile);
        // Losing the lease mid-rollout stops the rollout between steps.
        let result = loop {
            tokio::select! {
                result = &mut reconcile => break result,
                changed = self.leader.changed(), if may_apply && !job_cancel.is_cancelled() => {
                    if changed.is_err() || !*self.leader.borrow() {
                        span.in_scope(|| tracing::warn!("lost leadership, stopping between steps"));
                        job_cancel.cancel();
                    }
                }
            }
        };
        span.in_scope(|| self.record(&env, &snapshot.revision, result, memory, started));
    }

    fn record(
        &self,
        env: &str,
        revision: &str,
        result: Result<Outcome, ReconcileError>,
        memory: &mut EnvMemory,
        started: Instant,
    ) {
        let seconds = started.elapsed().as_secs_f64();
        let metrics = &self.state.metrics;
        let revision_changed = memory.last_applied.as_deref() != Some(revision);
        let steps = match &result {
            Ok(outcome) => outcome.steps.as_slice(),
            Err(err) => err.steps(),
        };
        for step in steps {
            metrics.step(env, &step.kind, if step.ok { "ok" } else { "error" });
        }
        match result {
            Ok(outcome) => {
                let drift = !outcome.plan.is_empty() && !revision_changed;
                let applied = matches!(outcome.kind, OutcomeKind::InSync | OutcomeKind::Applied);
                metrics.reconciled(env, outcome.kind.as_str(), seconds);
                metrics.drift(env, drift);
                if applied {
                    memory.last_applied = Some(revision.to_string());
                    metrics.applied_commit(env, revision);
                }
                memory.failures = 0;
                memory.failed_revision = None;
                memory.retry_at = None;
                tracing::info!(
                    result = outcome.kind.as_str(),
                    steps = outcome.steps.len(),
                    drift,
                    seconds,
                    "reconciled"
                );
                let pending = match outcome.kind {
                    OutcomeKind::DriftReported | OutcomeKind::Planned => outcome.plan,
                    OutcomeKind::InSync | OutcomeKind::Applied => Vec::new(),
                };
                self.state.update_env(env, |s| {
                    s.commit = Some(revision.to_string());
                    if applied {
                        s.applied_commit = Some(revision.to_string());
                    }
                    s.last_result = Some(outcome.kind.as_str().to_string());
                    s.pending_plan = pending;
                    s.drift = drift;
                    s.last_error = None;
                    s.last_sync_time = Some(crate::clock::now_utc());
                    s.last_attempt_time = s.last_sync_time;
                    s.consecutive_failures = 0;
                    s.next_retry_time = None;
                });
            }
            Err(err) => {
                memory.failures = memory.failures.saturating_add(1);
                memory.failed_revision = Some(revision.to_string());
                let delay = self.backoff.delay(memory.failures);
                memory.retry_at = Some(Instant::now() + delay);
                metrics.reconciled(env, "error", seconds);
                metrics.error(env, err.kind());
                tracing::warn!(error = %err, kind = err.kind(), failures = memory.failures, retry_in = ?delay, "reconcile failed");
                let pending = match &err {
                    ReconcileError::Apply { plan, .. } | ReconcileError::Cancelled { plan, .. } => {
                        plan.clone()
                    }
                    _ => Vec::new(),
                };
                let result = match &err {
                    ReconcileError::Invalid(_) => "invalid",
                    ReconcileError::Refused(_) => "refused",
                    ReconcileError::Cancelled { .. } => "cancelled",
                    _ => "failed",
                };
                self.state.update_env(env, |s| {
                    s.commit = Some(revision.to_string());
                    s.last_result = Some(result.to_string());
                    if !pending.is_empty() {
                        s.pending_plan = pending;
                    }
                    s.last_error = Some(err.to_string());
                    s.last_attempt_time = Some(crate::clock::now_utc());
                    s.consecutive_failures = memory.failures;
                    s.next_retry_time = chrono::Duration::from_std(delay)
                        .ok()
                        .map(|d| crate::clock::now_utc() + d);
                });
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn short(revision: &str) -> &str {
    revision.get(..12).unwrap_or(revision)
}
