//! The production [`Reconcile`]: load the environment from the revision's files (`spec`), read
//! live state (`backend`), plan (`plan`, with `drift.ignore`), and apply (`apply`) unless the
//! environment only reports drift or this replica does not lead. Because every reconcile plans
//! from live state, an agent restarted mid-rollout simply continues from where live state is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;

use super::reconcile::{Job, Outcome, OutcomeKind, Reconcile, ReconcileError, StepRecord};
use crate::apply::{self, ApplyOptions, ApplyReport};
use crate::backend::{self, Backend, BackendError, ConnectOptions};
use crate::model::{DriftMode, Environment};
use crate::plan::{self, PlanOptions};
use crate::spec;

/// Opens a backend for an environment; `env_dir` anchors relative paths (`state_file`).
pub type Connector = Arc<
    dyn Fn(Environment, PathBuf) -> BoxFuture<'static, anyhow::Result<Box<dyn Backend>>>
        + Send
        + Sync,
>;

/// The real connector: `backend::connect` with the agent's connect options.
pub fn default_connector(options: ConnectOptions) -> Connector {
    Arc::new(move |environment: Environment, env_dir: PathBuf| {
        let options = options.clone();
        Box::pin(async move { backend::connect(&environment, &env_dir, &options).await })
    })
}

pub struct Pipeline {
    connector: Connector,
    /// For a local directory source, environment paths are relative to this root.
    root: Option<PathBuf>,
    /// Endpoints applied at the same time within one environment.
    pub concurrency: usize,
    /// Backends are reused across ticks (token caches, connection pools) until the
    /// environment's target changes.
    backends: tokio::sync::Mutex<HashMap<PathBuf, Connected>>,
}

/// A backend and the environment (target) it was opened for.
type Connected = (Environment, Arc<dyn Backend>);

impl Pipeline {
    pub fn new(connector: Connector, root: Option<PathBuf>) -> Pipeline {
        Pipeline {
            connector,
            root,
            concurrency: 8,
            backends: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    async fn backend(
        &self,
        path: &Path,
        environment: &Environment,
    ) -> Result<Arc<dyn Backend>, ReconcileError> {
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
        let backend: Arc<dyn Backend> = (self.connector)(environment.clone(), env_dir)
            .await
            .map_err(|e| ReconcileError::Backend {
                message: format!("{e:#}"),
                source: Arc::new(BackendError::Other(e)),
            })?
            .into();
        backends.insert(path.to_path_buf(), (environment.clone(), backend.clone()));
        Ok(backend)
    }
}

#[async_trait]
impl Reconcile for Pipeline {
    async fn reconcile(&self, job: Job) -> Result<Outcome, ReconcileError> {
        let desired = spec::load_tree(&job.files, &job.path).map_err(|diagnostics| {
            ReconcileError::Invalid(diagnostics.to_string().trim_end().to_string())
        })?;
        let backend = self.backend(&job.path, &desired.environment).await?;
        let live = backend
            .read_live()
            .await
            .map_err(|e| ReconcileError::Backend {
                message: e.to_string(),
                source: Arc::new(e),
            })?;
        let options = PlanOptions {
            prune: false,
            ignore: desired.environment.drift.ignore.clone(),
        };
        let plan = plan::plan(&desired, &live, &options).map_err(|refusals| {
            let lines: Vec<String> = refusals.iter().map(|r| r.to_string()).collect();
            ReconcileError::Refused(lines.join("; "))
        })?;
        let outcome = |kind| Outcome {
            kind,
            plan: plan.steps.clone(),
            steps: Vec::new(),
        };
        if plan.is_empty() {
            return Ok(outcome(OutcomeKind::InSync));
        }
        if desired.environment.drift.mode == DriftMode::Report && !job.revision_changed {
            tracing::warn!(
                steps = plan.steps.len(),
                "drift detected, reporting only (drift.mode: report)"
            );
            return Ok(outcome(OutcomeKind::DriftReported));
        }
        if !job.may_apply {
            return Ok(outcome(OutcomeKind::Planned));
        }
        tracing::info!(
            steps = plan.steps.len(),
            drift = !job.revision_changed,
            "applying"
        );
        let options = ApplyOptions {
            concurrency: self.concurrency,
            dry_run: false,
        };
        let report = apply::apply(&plan, backend.as_ref(), &options, &job.cancel).await;
        let steps = records(&report);
        if report.succeeded() {
            return Ok(Outcome {
                kind: OutcomeKind::Applied,
                plan: plan.steps,
                steps,
            });
        }
        let first_failure = report.failures().find_map(|r| match &r.outcome {
            apply::StepStatus::Failed(error) => Some(error.clone()),
            _ => None,
        });
        match (report.error(), first_failure) {
            (Some(message), Some(error)) => Err(ReconcileError::Apply {
                message,
                error,
                plan: plan.steps,
                steps,
            }),
            // Nothing failed, yet not everything ran: the run was cancelled between steps.
            _ => Err(ReconcileError::Cancelled {
                plan: plan.steps,
                steps,
            }),
        }
    }
}

/// Steps that ran (done or failed), for status and metrics.
fn records(report: &ApplyReport) -> Vec<StepRecord> {
    report
        .results
        .iter()
        .filter_map(|r| {
            let (ok, detail) = match &r.outcome {
                apply::StepStatus::Done(detail) => (true, detail.clone()),
                apply::StepStatus::Failed(error) => (false, error.message.clone()),
                apply::StepStatus::Skipped(_) | apply::StepStatus::WouldRun => return None,
            };
            Some(StepRecord {
                kind: r.step.action.kind().to_string(),
                subject: r.step.subject(),
                ok,
                detail,
            })
        })
        .collect()
}
