//! The contract between the loop and one environment's reconcile: a [`Job`] in, an
//! [`Outcome`] or a [`ReconcileError`] out. The loop never looks inside; tests inject fakes.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::apply::StepError;
use crate::backend::{BackendError, ErrorKind};
use crate::plan::Step;
use crate::source::EnvTree;

/// One reconcile of one environment at one revision.
#[derive(Clone, Debug)]
pub struct Job {
    /// The environment path (`environments/prod`), also its name in status and metrics.
    pub path: PathBuf,
    pub revision: String,
    /// The environment's files as read by `source::tree`, with the entries it refused.
    pub files: Arc<EnvTree>,
    /// The revision differs from the last one fully applied to this environment. With
    /// `drift.mode: report`, an unchanged revision only reports drift.
    pub revision_changed: bool,
    /// This replica may write (it leads, or leader election is off).
    pub may_apply: bool,
    /// Cancelled on shutdown or loss of leadership; checked between steps.
    pub cancel: CancellationToken,
}

/// One executed step, for status and metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepRecord {
    pub kind: String,
    pub subject: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// Live already matches the desired state.
    InSync,
    /// The plan was applied completely.
    Applied,
    /// Live differs from an unchanged revision and the environment only reports drift.
    DriftReported,
    /// A plan was computed but not applied: this replica does not lead.
    Planned,
}

impl OutcomeKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            OutcomeKind::InSync => "in_sync",
            OutcomeKind::Applied => "applied",
            OutcomeKind::DriftReported => "drift_reported",
            OutcomeKind::Planned => "planned",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub kind: OutcomeKind,
    /// The plan as computed before applying: steps applied for `Applied`, steps still pending
    /// for `DriftReported` and `Planned`.
    pub plan: Vec<Step>,
    pub steps: Vec<StepRecord>,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The desired state does not load or validate; the message carries `file:line:col`.
    #[error("{0}")]
    Invalid(String),
    /// The planner refuses the change; nothing was applied.
    #[error("plan refused: {0}")]
    Refused(String),
    /// The backend could not be reached or read; `source` is the typed backend error.
    #[error("backend: {message}")]
    Backend {
        message: String,
        #[source]
        source: Arc<BackendError>,
    },
    /// A step failed; earlier steps may have been applied. `plan` is the plan; `message` lists
    /// every failed step, `error` is the first one, typed.
    #[error("apply failed: {message}")]
    Apply {
        message: String,
        #[source]
        error: StepError,
        plan: Vec<Step>,
        steps: Vec<StepRecord>,
    },
    /// Shutdown or loss of leadership stopped the rollout between steps.
    #[error("cancelled after {} step(s)", steps.len())]
    Cancelled {
        plan: Vec<Step>,
        steps: Vec<StepRecord>,
    },
}

impl ReconcileError {
    /// Metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            ReconcileError::Invalid(_) => "invalid_spec",
            ReconcileError::Refused(_) => "plan_refused",
            ReconcileError::Backend { .. } => "backend",
            ReconcileError::Apply { .. } => "apply",
            ReconcileError::Cancelled { .. } => "cancelled",
        }
    }

    /// Whether the same revision may succeed on a later try (the backend's verdict); invalid
    /// input, refusals and cancellations wait for a change instead.
    pub fn is_transient(&self) -> bool {
        match self {
            ReconcileError::Backend { source, .. } => source.is_transient(),
            ReconcileError::Apply { error, .. } => error.transient,
            _ => false,
        }
    }

    /// What failed in the backend, for `Backend` and `Apply`.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        match self {
            ReconcileError::Backend { source, .. } => Some(source.kind()),
            ReconcileError::Apply { error, .. } => Some(error.kind),
            _ => None,
        }
    }

    /// Steps executed before the error.
    pub fn steps(&self) -> &[StepRecord] {
        match self {
            ReconcileError::Apply { steps, .. } | ReconcileError::Cancelled { steps, .. } => steps,
            _ => &[],
        }
    }
}

/// Reconciles one environment. The production implementation loads the files with `spec`,
/// reads live state through a `backend`, plans with `plan` and executes with `apply`.
#[async_trait]
pub trait Reconcile: Send + Sync {
    async fn reconcile(&self, job: Job) -> Result<Outcome, ReconcileError>;
}
