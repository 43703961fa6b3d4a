//! A rollout interrupted between steps (shutdown, lost lease) resumes from live state: the
//! next reconcile plans only what is left, never repeating or skipping a step.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use flightdeck::agent::pipeline::{Connector, Pipeline};
use flightdeck::agent::{Job, Reconcile, ReconcileOutcome};
use flightdeck::apply::StepStatus as Ran;
use flightdeck::backend::memory::MemoryBackend;
use flightdeck::backend::{Backend, BackendError, StepDetail};
use flightdeck::model::LiveState;
use flightdeck::plan::Step;
use flightdeck::source::{EnvTree, FileMap};
use tokio_util::sync::CancellationToken;

/// Shares one in-memory platform; cancels `stop` after `stop_after` executed steps.
struct Interrupting {
    live: Arc<MemoryBackend>,
    stop: Mutex<Option<(usize, CancellationToken)>>,
}

#[async_trait]
impl Backend for Interrupting {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn read_live(&self) -> Result<LiveState, BackendError> {
        self.live.read_live().await
    }

    async fn execute(&self, step: &Step) -> Result<StepDetail, BackendError> {
        let outcome = self.live.execute(step).await;
        if let Some((left, token)) = self.stop.lock().unwrap().as_mut() {
            *left -= 1;
            if *left == 0 {
                token.cancel(); // like SIGTERM arriving during this step
            }
        }
        outcome
    }

    async fn write_rollout(
        &self,
        endpoint: &str,
        record: Option<&flightdeck::rollout::RolloutRecord>,
    ) -> Result<(), BackendError> {
        self.live.write_rollout(endpoint, record).await
    }
}

fn connector(live: Arc<MemoryBackend>, stop: Option<(usize, CancellationToken)>) -> Connector {
    let stop = Arc::new(Mutex::new(stop));
    Arc::new(move |_environment, _dir| {
        let backend = Interrupting {
            live: live.clone(),
            stop: Mutex::new(stop.lock().unwrap().take()),
        };
        Box::pin(async move { Ok(Box::new(backend) as Box<dyn Backend>) })
    })
}

fn files() -> Arc<EnvTree> {
    let mut files = FileMap::new();
    let mut add = |name: &str, content: &str| {
        files.insert(
            PathBuf::from("environments/dev").join(name),
            content.as_bytes().to_vec(),
        );
    };
    add(
        "environment.yaml",
        "name: dev\ntarget:\n  state_file:\n    path: live.json\n",
    );
    add(
        "scoring.yml",
        "name: scoring\nauth_mode: key\ntraffic:\n  blue: 100\ndeployments:\n  - name: blue\n    model: azureml:m:1\n    instance_type: Standard_DS3_v2\n    instance_count: 2\n",
    );
    Arc::new(EnvTree::from(files))
}

fn job(cancel: CancellationToken) -> Job {
    Job {
        path: PathBuf::from("environments/dev"),
        revision: "abc".into(),
        files: files(),
        revision_changed: true,
        may_apply: true,
        cancel,
        observe: None,
    }
}

#[tokio::test]
async fn a_restart_mid_rollout_continues_from_live_state() {
    let live = Arc::new(MemoryBackend::new(LiveState::default()));
    let first_run = CancellationToken::new();
    let before_restart = Pipeline::new(
        connector(live.clone(), Some((1, first_run.clone()))),
        None,
        8,
    );
    let outcome = before_restart.reconcile(job(first_run)).await;
    let ReconcileOutcome::Interrupted { plan, report } = &outcome else {
        panic!("expected a cancelled rollout, got {outcome:?}");
    };
    let plan = &plan.steps;
    let ran = |o: &Ran| matches!(o, Ran::Done(_) | Ran::Failed(_));
    assert_eq!(
        report.results.iter().filter(|r| ran(&r.outcome)).count(),
        1,
        "the step in flight finished, the rest did not start"
    );
    assert!(plan.len() > 1);
    let done_first = live.log();
    assert_eq!(done_first.len(), 1);

    // "Restart": a new pipeline with fresh state plans from what is live now.
    let after_restart = Pipeline::new(connector(live.clone(), None), None, 8);
    let outcome = after_restart.reconcile(job(CancellationToken::new())).await;
    let ReconcileOutcome::Applied { plan: resumed, .. } = &outcome else {
        panic!("expected the rest applied, got {outcome:?}");
    };
    assert_eq!(
        resumed.steps.len(),
        plan.len() - 1,
        "only the remaining steps are planned"
    );
    let log = live.log();
    assert_eq!(
        log.len(),
        plan.len(),
        "every step ran exactly once: {log:?}"
    );
    let kinds: Vec<&str> = plan.iter().map(|s| s.action.kind()).collect();
    let ran: Vec<&str> = log.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(ran, kinds, "in the original order");

    let again = after_restart.reconcile(job(CancellationToken::new())).await;
    assert!(matches!(again, ReconcileOutcome::InSync), "{again:?}");
}
