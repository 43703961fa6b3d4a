//! One reconcile of one environment, for `flightdeck apply` and for each agent tick: load → read
//! live → plan → apply → report. It orchestrates I/O but owns none of it: the caller passes the
//! loaded desired state and a [`Platform`] that opens the backend, so tests drive it with the
//! memory backend. The result is one typed [`ReconcileOutcome`]; the CLI renders it (exit codes,
//! stdout, stderr), the agent records it and asks `agent::policy::next_action` what to do next.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::apply::{self, ApplyEvent, ApplyOptions, ApplyReport};
use crate::backend::{Backend, BackendError};
use crate::metrics::MetricsProvider;
use crate::model::{DesiredState, DriftMode, Environment, LiveState};
use crate::plan::{self, Plan, PlanOptions, Refusal};
use crate::rollouts;
use crate::spec::Diagnostics;

/// The desired state does not load.
#[derive(Debug)]
pub enum Invalid {
    /// The loader's problems, each with `file:line:col`.
    Spec(Diagnostics),
    /// The source refused the environment's files before they could be loaded (a symlink out
    /// of the tree, a file over the size limit, ...).
    Source(String),
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::Spec(diagnostics) => f.write_str(diagnostics.to_string().trim_end()),
            Invalid::Source(message) => f.write_str(message),
        }
    }
}

/// The platform could not be opened, read, or settled before planning.
#[derive(Debug, thiserror::Error)]
pub enum BackendFailure {
    /// Opening the backend failed (credentials, configuration, the state file's path).
    #[error("{0:#}")]
    Connect(#[source] anyhow::Error),
    /// Reading live state failed.
    #[error("{0:#}")]
    ReadLive(#[source] BackendError),
    /// Live state did not settle before planning (another writer at work, a lock not freed).
    #[error("{0:#}")]
    Settle(#[source] anyhow::Error),
    /// The rollout's metrics source could not be opened.
    #[error("rollout metrics: {0:#}")]
    Metrics(#[source] anyhow::Error),
    /// Rollout progress could not be stored before traffic moved; nothing was applied.
    #[error("{0:#}")]
    RecordRollout(#[source] BackendError),
}

/// How one reconcile ended. Every variant that applied something carries the plan it applied
/// from and the executor's report.
#[derive(Debug)]
pub enum ReconcileOutcome {
    /// Live already matches the desired state; nothing was applied.
    InSync,
    /// The plan ran to the end (`--dry-run`: every step would have run).
    Applied { plan: Plan, report: ApplyReport },
    /// Live differs from an unchanged revision and the environment only reports drift.
    DriftReported { plan: Plan },
    /// A plan was computed but not applied (`may_apply: false`: this replica does not lead).
    Planned { plan: Plan },
    /// The desired state does not load; nothing was planned or applied.
    Invalid(Invalid),
    /// The planner refused the change; nothing was applied.
    Refused(Vec<Refusal>),
    /// The backend could not be opened or read; nothing was applied.
    BackendFailed(BackendFailure),
    /// The caller could not prepare the apply (e.g. watch for Ctrl-C); nothing was applied.
    Aborted(String),
    /// A step failed; the steps before it (and other endpoints' steps) may have been applied.
    ApplyFailed { plan: Plan, report: ApplyReport },
    /// Cancelled (Ctrl-C, SIGTERM, shutdown, lost leadership) between steps.
    Interrupted { plan: Plan, report: ApplyReport },
}

impl ReconcileOutcome {
    /// The name used in `/status` `last_result` and the `result` label of
    /// `flightdeck_reconcile_total` (failures are `error` there, see `agent::events`).
    pub fn result(&self) -> &'static str {
        match self {
            ReconcileOutcome::InSync => "in_sync",
            ReconcileOutcome::Applied { .. } => "applied",
            ReconcileOutcome::DriftReported { .. } => "drift_reported",
            ReconcileOutcome::Planned { .. } => "planned",
            ReconcileOutcome::Invalid(_) => "invalid",
            ReconcileOutcome::Refused(_) => "refused",
            ReconcileOutcome::Interrupted { .. } => "cancelled",
            ReconcileOutcome::BackendFailed(_)
            | ReconcileOutcome::Aborted(_)
            | ReconcileOutcome::ApplyFailed { .. } => "failed",
        }
    }

    /// The kind label of `flightdeck_errors_total`, or `None` for an outcome that is no error.
    pub fn error_kind(&self) -> Option<&'static str> {
        Some(match self {
            ReconcileOutcome::Invalid(_) => "invalid_spec",
            ReconcileOutcome::Refused(_) => "plan_refused",
            ReconcileOutcome::BackendFailed(_) | ReconcileOutcome::Aborted(_) => "backend",
            ReconcileOutcome::ApplyFailed { .. } => "apply",
            ReconcileOutcome::Interrupted { .. } => "cancelled",
            _ => return None,
        })
    }

    /// The plan as computed before applying (empty when none was computed).
    pub fn plan(&self) -> Option<&Plan> {
        match self {
            ReconcileOutcome::Applied { plan, .. }
            | ReconcileOutcome::DriftReported { plan }
            | ReconcileOutcome::Planned { plan }
            | ReconcileOutcome::ApplyFailed { plan, .. }
            | ReconcileOutcome::Interrupted { plan, .. } => Some(plan),
            _ => None,
        }
    }

    /// The executor's report, when something was executed.
    pub fn report(&self) -> Option<&ApplyReport> {
        match self {
            ReconcileOutcome::Applied { report, .. }
            | ReconcileOutcome::ApplyFailed { report, .. }
            | ReconcileOutcome::Interrupted { report, .. } => Some(report),
            _ => None,
        }
    }

    /// One line (or, for invalid YAML, one per problem) saying what went wrong; `None` for an
    /// outcome that is no error. `/status` `last_error` and the agent's log carry it.
    pub fn error(&self) -> Option<String> {
        match self {
            ReconcileOutcome::Invalid(invalid) => Some(invalid.to_string()),
            ReconcileOutcome::Refused(refusals) => {
                let lines: Vec<String> = refusals.iter().map(|r| r.to_string()).collect();
                Some(format!("plan refused: {}", lines.join("; ")))
            }
            ReconcileOutcome::BackendFailed(failure) => Some(format!("backend: {failure}")),
            ReconcileOutcome::Aborted(why) => Some(why.clone()),
            ReconcileOutcome::ApplyFailed { report, .. } => Some(format!(
                "apply failed: {}",
                report.error().unwrap_or_default()
            )),
            ReconcileOutcome::Interrupted { report, .. } => Some(format!(
                "cancelled after {} step(s)",
                report
                    .results
                    .iter()
                    .filter(|r| matches!(
                        r.outcome,
                        apply::StepStatus::Done(_) | apply::StepStatus::Failed(_)
                    ))
                    .count()
            )),
            _ => None,
        }
    }

    /// The outcome is a failure the agent counts and backs off from.
    pub fn is_failure(&self) -> bool {
        self.error_kind().is_some()
    }
}

/// Everything but the desired state and the platform.
#[derive(Clone, Debug)]
pub struct Request {
    /// Also delete live endpoints that are not declared.
    pub prune: bool,
    /// The revision differs from the last one fully applied (the CLI: always). With
    /// `drift.mode: report`, a plan at an unchanged revision is only reported.
    pub revision_changed: bool,
    /// Apply the plan; `false` only plans (an agent replica that does not lead).
    pub may_apply: bool,
    pub apply: ApplyOptions,
    /// The Git commit being applied, when known (stored in rollout records).
    pub revision: Option<String>,
    /// `None`: every endpoint (read all live state). `Some(names)`: a targeted reconcile of
    /// just these endpoints: only they are read (`Backend::read_live_endpoints`), planned and
    /// applied; the others are left as they are (the agent's `scope` decides, docs/agent.md).
    pub only: Option<BTreeSet<String>>,
}

/// The edges a reconcile goes through: opening the backend, settling live state, and the points
/// where the CLI prints (the plan before it runs, progress per step).
#[async_trait]
pub trait Platform: Send + Sync {
    /// Opens the backend for the environment's target.
    async fn connect(&self, environment: &Environment) -> anyhow::Result<Arc<dyn Backend>>;

    /// Returns the live state to plan against, given the first read. The CLI waits here for
    /// another writer's operations to end (Azure ML); by default live is used as read.
    async fn settle(&self, _backend: &dyn Backend, live: LiveState) -> anyhow::Result<LiveState> {
        Ok(live)
    }

    /// Called with the live state the reconcile plans against (the dashboard's bars).
    fn observed(&self, _live: &LiveState, _only: Option<&BTreeSet<String>>) {}

    /// Called with the plan before anything runs (also when it is empty). An error stops the
    /// reconcile before any step as [`ReconcileOutcome::Aborted`].
    fn planned(&self, _plan: &Plan) -> Result<(), String> {
        Ok(())
    }

    /// Called as each step starts and ends.
    fn progress(&self, _event: ApplyEvent<'_>) {}

    /// The metrics source of the environment's rollout gates (`rollout.metrics`), opened once
    /// per reconcile that needs one; `None` when the environment declares none.
    async fn metrics(
        &self,
        _environment: &Environment,
    ) -> anyhow::Result<Option<Arc<dyn MetricsProvider>>> {
        Ok(None)
    }
}

/// Reconciles once: `desired` is the loader's result; `cancel` stops the apply between steps.
pub async fn reconcile_once(
    desired: Result<DesiredState, Invalid>,
    platform: &dyn Platform,
    request: &Request,
    cancel: &CancellationToken,
) -> ReconcileOutcome {
    let mut desired = match desired {
        Ok(d) => d,
        Err(invalid) => return ReconcileOutcome::Invalid(invalid),
    };
    let backend = match platform.connect(&desired.environment).await {
        Ok(b) => b,
        Err(e) => return ReconcileOutcome::BackendFailed(BackendFailure::Connect(e)),
    };
    let read = match &request.only {
        None => backend.read_live().await,
        Some(names) => {
            desired.endpoints.retain(|name, _| names.contains(name));
            if names.is_empty() {
                Ok(LiveState::default())
            } else {
                backend.read_live_endpoints(names).await
            }
        }
    };
    let live = match read {
        Ok(l) => l,
        Err(e) => return ReconcileOutcome::BackendFailed(BackendFailure::ReadLive(e)),
    };
    let live = match platform.settle(backend.as_ref(), live).await {
        Ok(l) => l,
        Err(e) => return ReconcileOutcome::BackendFailed(BackendFailure::Settle(e)),
    };
    platform.observed(&live, request.only.as_ref());
    // Slot endpoints become ordinary ones here, from live state, before the rollout engine
    // and the planner see them (docs/rollouts.md "Blue/green slots").
    let profile = crate::backend::profile_of(&desired.environment.target);
    let slot_notes = match crate::slots::resolve(&mut desired, &live, profile) {
        Ok(notes) => notes,
        Err(refusals) => return ReconcileOutcome::Refused(refusals),
    };
    let rolling = !desired.environment.rollout.is_empty();
    let prepared = if rolling {
        let metrics = match platform.metrics(&desired.environment).await {
            Ok(m) => m,
            Err(e) => return ReconcileOutcome::BackendFailed(BackendFailure::Metrics(e)),
        };
        match rollouts::prepare(
            &desired,
            &live,
            rollouts::Metrics::Read {
                provider: metrics,
                backend: backend.as_ref(),
            },
            request.revision.as_deref(),
        )
        .await
        {
            Ok(p) => Some(p),
            Err(refusals) => return ReconcileOutcome::Refused(refusals),
        }
    } else {
        None
    };
    let options = PlanOptions {
        prune: request.prune,
        ignore: desired.environment.drift.ignore.clone(),
    };
    let to_plan = prepared.as_ref().map_or(&desired, |p| &p.desired);
    let mut plan = match plan::plan(to_plan, &live, &options, profile) {
        Ok(p) => p,
        Err(refusals) => return ReconcileOutcome::Refused(refusals),
    };
    plan.notes.splice(0..0, slot_notes);
    let decisions = prepared.map(|p| {
        rollouts::keep_failed_candidates(&mut plan, &p.decisions, &live);
        plan.rollouts = p.views;
        p.decisions
    });
    // The plan is all the rest needs: desired and live state (megabytes at 1,000 endpoints)
    // are not held while the steps run.
    let drift_mode = desired.environment.drift.mode;
    drop((desired, live));
    if let Err(why) = platform.planned(&plan) {
        return ReconcileOutcome::Aborted(why);
    }
    let records_due = decisions.as_ref().is_some_and(|decisions| {
        decisions.values().any(|d| {
            d.record_before.is_some() || !matches!(d.record, crate::rollout::RecordWrite::Keep)
        })
    });
    if plan.is_empty() && plan.rollouts.is_empty() && !records_due {
        return ReconcileOutcome::InSync;
    }
    if drift_mode == DriftMode::Report && !request.revision_changed {
        tracing::warn!(
            steps = plan.steps.len(),
            "drift detected, reporting only (drift.mode: report)"
        );
        return ReconcileOutcome::DriftReported { plan };
    }
    if !request.may_apply {
        return ReconcileOutcome::Planned { plan };
    }
    tracing::info!(
        steps = plan.steps.len(),
        drift = !request.revision_changed,
        "applying"
    );
    let writes = decisions.as_ref().filter(|_| !request.apply.dry_run);
    if let Some(decisions) = writes {
        let failed = rollouts::write_before(backend.as_ref(), decisions).await;
        if let Some((_, e)) = failed.into_iter().next() {
            return ReconcileOutcome::BackendFailed(BackendFailure::RecordRollout(e));
        }
    }
    let progress = |event: ApplyEvent<'_>| platform.progress(event);
    let report =
        apply::apply_observed(&plan, backend.as_ref(), &request.apply, cancel, &progress).await;
    if let Some(decisions) = writes {
        for (endpoint, e) in rollouts::write_after(backend.as_ref(), decisions, &report).await {
            // Safe to lose: the next tick adopts the stage that live traffic shows, and its
            // bake starts again then.
            tracing::warn!(%endpoint, error = %e, "could not store rollout progress");
        }
    }
    if report.interrupted {
        ReconcileOutcome::Interrupted { plan, report }
    } else if report.succeeded() {
        ReconcileOutcome::Applied { plan, report }
    } else {
        ReconcileOutcome::ApplyFailed { plan, report }
    }
}
