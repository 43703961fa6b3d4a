//! What the agent reports, one typed event per tick, as vector's `internal_events`: each event is
//! a struct whose one `emit` updates the metrics, writes the log line and updates `/status`, so
//! the three cannot disagree, and feeds the dashboard (`crate::dashboard`, whose server-sent
//! events announce it). Nothing else in the loop writes to them.

use super::policy::Action;
use super::status::AgentState;
use crate::apply::StepStatus;
use crate::reconcile::ReconcileOutcome;
use crate::source::SourceError;

/// One environment reconciled (or tried to) at one revision.
#[derive(Debug)]
pub struct Reconciled<'a> {
    pub env: &'a str,
    pub revision: &'a str,
    pub outcome: &'a ReconcileOutcome,
    /// The revision differed from the last one fully applied before this tick.
    pub revision_changed: bool,
    pub seconds: f64,
    /// Consecutive failures, this tick included (0 after a success).
    pub failures: u32,
    /// What the worker does next (`policy::next_action`).
    pub action: Action,
}

impl Reconciled<'_> {
    pub fn emit(&self, state: &AgentState) {
        let (env, revision, outcome) = (self.env, self.revision, self.outcome);
        let metrics = &state.metrics;
        for r in outcome.report().map_or(&[][..], |r| r.results.as_slice()) {
            let ok = match r.outcome {
                StepStatus::Done(_) => "ok",
                StepStatus::Failed(_) => "error",
                StepStatus::Skipped(_) | StepStatus::WouldRun => continue,
            };
            metrics.step(env, r.step.action.kind(), ok);
        }
        let rollouts = outcome.plan().map_or(&[][..], |p| p.rollouts.as_slice());
        for view in rollouts {
            metrics.rollout(env, view);
            tracing::info!(endpoint = %view.endpoint, state = %view.state, "rollout: {}", view.message);
        }
        // The plan's steps; cloned only where `/status` keeps them (an applied plan of 1,000
        // endpoints is megabytes, and the outcome that owns it is dropped after this event).
        let steps = outcome.plan().map_or(&[][..], |p| p.steps.as_slice());
        let retry_in = match self.action {
            Action::RetryAfter(delay) => Some(delay),
            Action::RequeueAfter(_) | Action::AwaitChange => None,
        };
        let steps_run: Vec<(String, bool)> = outcome
            .report()
            .map_or(&[][..], |r| r.results.as_slice())
            .iter()
            .filter_map(|r| {
                let ok = match &r.outcome {
                    StepStatus::Done(_) => true,
                    StepStatus::Failed(_) => false,
                    StepStatus::Skipped(_) | StepStatus::WouldRun => return None,
                };
                Some((format!("{}: {}", r.step.endpoint, r.step.reason), ok))
            })
            .collect();
        let error = outcome.error();
        state
            .dashboard
            .reconciled(crate::dashboard::board::Reconciled {
                env,
                revision,
                applied: matches!(
                    outcome,
                    ReconcileOutcome::InSync | ReconcileOutcome::Applied { .. }
                ),
                result: outcome.result(),
                error: error.as_deref(),
                rollouts,
                steps: steps_run,
            });
        if let Some(kind) = outcome.error_kind() {
            let error = error.unwrap_or_default();
            metrics.reconciled(env, "error", self.seconds);
            metrics.error(env, kind);
            tracing::warn!(
                error = %error,
                kind,
                failures = self.failures,
                retry_in = ?retry_in,
                next = ?self.action,
                "reconcile failed"
            );
            state.update_env(env, |s| {
                s.commit = Some(revision.to_string());
                s.last_result = Some(outcome.result().to_string());
                if !steps.is_empty() {
                    s.pending_plan = steps.to_vec();
                }
                s.last_error = Some(error);
                s.last_attempt_time = Some(crate::clock::now_utc());
                s.consecutive_failures = self.failures;
                s.next_retry_time = retry_in
                    .and_then(|d| chrono::Duration::from_std(d).ok())
                    .map(|d| crate::clock::now_utc() + d);
            });
            return;
        }
        let drift = !steps.is_empty() && !self.revision_changed;
        let applied = matches!(
            outcome,
            ReconcileOutcome::InSync | ReconcileOutcome::Applied { .. }
        );
        let executed = outcome.report().map_or(0, |r| {
            r.results
                .iter()
                .filter(|r| matches!(r.outcome, StepStatus::Done(_) | StepStatus::Failed(_)))
                .count()
        });
        metrics.reconciled(env, outcome.result(), self.seconds);
        metrics.drift(env, drift);
        if applied {
            metrics.applied_commit(env, revision);
        }
        tracing::info!(
            result = outcome.result(),
            steps = executed,
            drift,
            seconds = self.seconds,
            "reconciled"
        );
        let pending = match outcome {
            ReconcileOutcome::DriftReported { .. } | ReconcileOutcome::Planned { .. } => {
                steps.to_vec()
            }
            _ => Vec::new(),
        };
        state.update_env(env, |s| {
            s.commit = Some(revision.to_string());
            if applied {
                s.applied_commit = Some(revision.to_string());
            }
            s.last_result = Some(outcome.result().to_string());
            s.pending_plan = pending;
            s.drift = drift;
            s.last_error = None;
            s.last_sync_time = Some(crate::clock::now_utc());
            s.last_attempt_time = s.last_sync_time;
            s.consecutive_failures = 0;
            s.next_retry_time = None;
            for ended in s
                .rollouts
                .iter()
                .filter(|old| !rollouts.iter().any(|r| r.endpoint == old.endpoint))
            {
                metrics.rollout_ended(env, &ended.endpoint);
            }
            s.rollouts = rollouts.to_vec();
        });
    }
}

/// The source was fetched.
#[derive(Debug)]
pub struct Fetched<'a> {
    pub revision: &'a str,
    /// The revision differs from the last good one.
    pub new_revision: bool,
    pub seconds: f64,
    /// The cache was repaired on the way (reported in `/status` until the next fetch).
    pub repair: Option<String>,
}

impl Fetched<'_> {
    pub fn emit(self, state: &AgentState) {
        state.metrics.fetched(self.seconds);
        state.dashboard.fetched(self.revision, self.new_revision);
        if self.new_revision {
            tracing::info!(revision = %self.revision, "new revision");
        }
        state.update(|s| {
            s.revision = Some(self.revision.to_string());
            s.last_fetch_time = Some(crate::clock::now_utc());
            s.last_fetch_error = self.repair;
            s.fetch_rounds += 1;
        });
    }
}

/// A fetch failed; the last good revision is kept.
#[derive(Debug)]
pub struct FetchFailed<'a> {
    pub error: &'a SourceError,
}

impl FetchFailed<'_> {
    pub fn emit(self, state: &AgentState) {
        let err = self.error;
        tracing::warn!(error = %err, kind = err.kind(), "fetch failed, keeping the last good revision");
        state.metrics.fetch_failed(err.kind());
        state.update(|s| {
            s.last_fetch_error = Some(err.to_string());
            s.fetch_rounds += 1;
        });
    }
}

/// The source repaired its cache (a corrupt clone re-cloned, ...).
#[derive(Debug)]
pub struct SourceRepaired<'a> {
    pub repair: &'a str,
}

impl SourceRepaired<'_> {
    pub fn emit(self, state: &AgentState) {
        tracing::warn!(repair = %self.repair, "source repaired");
        state.metrics.fetch_failed("cache");
    }
}

/// A reconcile read the platform's live state (before its steps run): all of it, or `only`
/// these endpoints (a targeted reconcile).
pub struct Observed<'a> {
    pub env: &'a str,
    pub live: &'a crate::model::LiveState,
    pub only: Option<&'a std::collections::BTreeSet<String>>,
}

impl Observed<'_> {
    pub fn emit(self, state: &AgentState) {
        tracing::debug!(endpoints = self.live.endpoints.len(), "live state read");
        let panels = crate::dashboard::board::panels_of(self.live);
        match self.only {
            None => state.dashboard.observed(self.env, panels),
            Some(names) => state.dashboard.observed_some(self.env, panels, names),
        }
    }
}

/// The scoring share of one endpoint was read (while someone watches the dashboard).
pub struct ScoringRead<'a> {
    pub env: &'a str,
    pub endpoint: &'a str,
    pub shares: Vec<(String, f64)>,
}

impl ScoringRead<'_> {
    pub fn emit(self, state: &AgentState) {
        tracing::debug!(endpoint = %self.endpoint, "scoring share read");
        state
            .dashboard
            .scoring(self.env, self.endpoint, self.shares);
    }
}
