//! The contract between the loop and one environment's reconcile: a [`Job`] in, a
//! [`ReconcileOutcome`] (the same type `flightdeck apply` renders) out. The loop never looks
//! inside; tests inject fakes.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::reconcile::ReconcileOutcome;
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
    /// Told the live state the reconcile reads (the agent emits `events::Observed`).
    pub observe: Option<Observer>,
}

/// Receives what a reconcile saw of the platform, for the dashboard.
pub trait Observe: Send + Sync + std::fmt::Debug {
    /// The live state the reconcile read (before its steps ran).
    /// `only`: a targeted reconcile read just these endpoints (the others were not read).
    fn live(
        &self,
        live: &crate::model::LiveState,
        only: Option<&std::collections::BTreeSet<String>>,
    );
    /// Whether the scoring share is wanted now (someone watches, and it is due).
    fn wants_scoring(&self) -> bool {
        false
    }
    /// Each deployment's share of `endpoint`'s recent scoring requests.
    fn scoring(&self, _endpoint: &str, _shares: Vec<(String, f64)>) {}
}

pub type Observer = Arc<dyn Observe>;

/// Reconciles one environment. The production implementation (`pipeline::Pipeline`) loads the
/// files with `spec` and runs `crate::reconcile::reconcile_once`.
#[async_trait]
pub trait Reconcile: Send + Sync {
    async fn reconcile(&self, job: Job) -> ReconcileOutcome;
}
