//! The reconcile loop: one fetch task publishes a snapshot on every tick, and one task per
//! environment reconciles it and carries out `policy::next_action` (its own backoff).
//! Environments never wait for each other. What a tick did reaches metrics, logs and `/status`
//! through one event (`events`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::backoff::jittered;
use super::events::{FetchFailed, Fetched, Observed, Reconciled, ScoringRead, SourceRepaired};
use super::policy::{Action, Policy, next_action};
use super::reconcile::{Job, Observe, Observer, Reconcile};
use super::status::AgentState;
use super::trigger::SyncTrigger;
use crate::reconcile::{Invalid, ReconcileOutcome};
use crate::source::{Snapshot, Source};

/// A published tick: the latest good snapshot (re-sent on every tick so drift is checked even
/// when the revision does not move).
pub type Tick = Option<Arc<Snapshot>>;

/// Fetches on start, on every `interval` (±10%), and whenever `trigger` fires (webhook, file
/// watch). A failed fetch keeps the last good snapshot.
pub async fn fetch_loop(
    source: Arc<dyn Source>,
    interval: Duration,
    trigger: Arc<SyncTrigger>,
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
            SourceRepaired { repair }.emit(&state);
        }
        match fetched {
            Ok(snapshot) => {
                Fetched {
                    revision: &snapshot.revision,
                    new_revision: last_good.as_ref().map(|s| &s.revision)
                        != Some(&snapshot.revision),
                    seconds: started.elapsed().as_secs_f64(),
                    repair,
                }
                .emit(&state);
                last_good = Some(Arc::new(snapshot));
            }
            Err(err) => FetchFailed { error: &err }.emit(&state),
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
    /// Consecutive failures.
    failures: u32,
    /// A revision not to reconcile again: until the instant (`RetryAfter`), or until another
    /// revision arrives (`None`: `AwaitChange`).
    hold: Option<(String, Option<tokio::time::Instant>)>,
    /// Reconcile again at this instant even without a new tick: a staged rollout's next stage
    /// or gate is due before the next poll.
    requeue_at: Option<tokio::time::Instant>,
}

impl EnvMemory {
    fn holds(&self, revision: &str) -> bool {
        match &self.hold {
            Some((held, until)) if held == revision => {
                until.is_none_or(|at| tokio::time::Instant::now() < at)
            }
            _ => false,
        }
    }

    fn retry_at(&self) -> Option<tokio::time::Instant> {
        let hold = self.hold.as_ref().and_then(|(_, until)| *until);
        match (hold, self.requeue_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Settings of one environment worker.
#[derive(Clone)]
pub struct EnvWorker {
    pub path: PathBuf,
    pub reconciler: Arc<dyn Reconcile>,
    pub state: Arc<AgentState>,
    /// Backoff and poll interval for `policy::next_action`.
    pub policy: Policy,
    /// `true` while this replica may apply (always `true` without leader election).
    pub leader: watch::Receiver<bool>,
}

impl EnvWorker {
    /// Runs until `cancel`; an in-flight reconcile sees the cancellation between steps and the
    /// loop exits once it returns.
    pub async fn run(mut self, mut ticks: watch::Receiver<Tick>, cancel: CancellationToken) {
        let mut memory = EnvMemory::default();
        loop {
            let retry_at = memory.retry_at();
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = ticks.changed() => if changed.is_err() { return },
                changed = self.leader.changed() => if changed.is_err() { return },
                _ = sleep_until(retry_at), if retry_at.is_some() => {}
            }
            let Some(snapshot) = ticks.borrow_and_update().clone() else {
                continue;
            };
            if memory.holds(&snapshot.revision) {
                continue; // backing off, or waiting for a new revision: do not hot-loop
            }
            self.tick(&snapshot, &mut memory, &cancel).await;
            // The tick's live state and plan are dropped: give their pages back.
            crate::allocator::release_free_memory();
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
                let outcome = ReconcileOutcome::Invalid(Invalid::Source(message.clone()));
                span.in_scope(|| self.record(&env, &snapshot.revision, &outcome, memory, started));
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
            observe: Some(Arc::new(DashboardObserver {
                env: env.clone(),
                state: self.state.clone(),
            }) as Observer),
        };
        let reconcile = self.reconciler.reconcile(job).instrument(span.clone());
        tokio::pin!(reconcile);
        // Losing the lease mid-rollout stops the rollout between steps.
        let outcome = loop {
            tokio::select! {
                outcome = &mut reconcile => break outcome,
                changed = self.leader.changed(), if may_apply && !job_cancel.is_cancelled() => {
                    if changed.is_err() || !*self.leader.borrow() {
                        span.in_scope(|| tracing::warn!("lost leadership, stopping between steps"));
                        job_cancel.cancel();
                    }
                }
            }
        };
        span.in_scope(|| self.record(&env, &snapshot.revision, &outcome, memory, started));
    }

    /// Decides the next action from the outcome, remembers it, and emits the tick's event.
    fn record(
        &self,
        env: &str,
        revision: &str,
        outcome: &ReconcileOutcome,
        memory: &mut EnvMemory,
        started: Instant,
    ) {
        let revision_changed = memory.last_applied.as_deref() != Some(revision);
        memory.failures = if outcome.is_failure() {
            memory.failures.saturating_add(1)
        } else {
            0
        };
        let action = next_action(outcome, memory.failures, &self.policy);
        memory.requeue_at = match action {
            Action::RequeueAfter(delay) if delay < self.policy.poll_interval => {
                Some(tokio::time::Instant::now() + delay)
            }
            _ => None,
        };
        memory.hold = match action {
            Action::RequeueAfter(_) => None,
            Action::RetryAfter(delay) => Some((
                revision.to_string(),
                Some(tokio::time::Instant::now() + delay),
            )),
            Action::AwaitChange => Some((revision.to_string(), None)),
        };
        if matches!(
            outcome,
            ReconcileOutcome::InSync | ReconcileOutcome::Applied { .. }
        ) {
            memory.last_applied = Some(revision.to_string());
        }
        Reconciled {
            env,
            revision,
            outcome,
            revision_changed,
            seconds: started.elapsed().as_secs_f64(),
            failures: memory.failures,
            action,
        }
        .emit(&self.state);
    }
}

/// What a reconcile saw of the platform, passed on as events.
#[derive(Debug)]
struct DashboardObserver {
    env: String,
    state: Arc<AgentState>,
}

impl Observe for DashboardObserver {
    fn live(
        &self,
        live: &crate::model::LiveState,
        only: Option<&std::collections::BTreeSet<String>>,
    ) {
        Observed {
            env: &self.env,
            live,
            only,
        }
        .emit(&self.state);
    }

    fn wants_scoring(&self) -> bool {
        self.state
            .dashboard
            .scoring_due(&self.env, crate::dashboard::board::SCORING_EVERY)
    }

    fn scoring(&self, endpoint: &str, shares: Vec<(String, f64)>) {
        ScoringRead {
            env: &self.env,
            endpoint,
            shares,
        }
        .emit(&self.state);
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
