//! Executes a plan through a backend: endpoints in parallel (up to a limit that adapts to the
//! backend's throttle signal, `concurrency`), steps of one endpoint
//! strictly in order, one write in flight per endpoint. A failed step stops its endpoint's
//! remaining steps (a failed test leaves traffic where it was, because traffic steps come after
//! the tests); other endpoints go on. The report lists every step with its outcome.
//!
//! The executor owns step timeouts, for every backend: each step runs under
//! `Backend::step_timeout(step)`; a step that outlives it fails as `timed out after Ns`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, BackendError, ErrorKind};
use crate::concurrency::Aimd;
use crate::plan::{Plan, Step};

#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Endpoints applied at the same time, at most: lowered while the backend reports
    /// throttling and raised back when it is healthy (`concurrency::Aimd`).
    pub concurrency: usize,
    /// Print what would happen; execute nothing.
    pub dry_run: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            concurrency: 8,
            dry_run: false,
        }
    }
}

/// How one step ended. In the JSON report: `{"status": "done"|"failed"|"skipped"|"would_run",
/// "detail": "..."}`, and for a failure also `"kind"` and `"transient"` (see [`StepError`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepStatus {
    Done(String),
    Failed(StepError),
    /// Not run: an earlier step of the same endpoint failed, or the run was cancelled.
    Skipped(String),
    /// `--dry-run`.
    WouldRun,
}

/// Why a step failed, typed: what failed (`kind`), whether trying again may help, the message
/// for people, and the backend's error itself as the `source`.
#[derive(Clone, Debug)]
pub struct StepError {
    pub kind: ErrorKind,
    pub transient: bool,
    pub message: String,
    pub source: Option<Arc<BackendError>>,
}

impl StepError {
    /// A failure with no backend error behind it.
    pub fn new(kind: ErrorKind, transient: bool, message: impl Into<String>) -> StepError {
        StepError {
            kind,
            transient,
            message: message.into(),
            source: None,
        }
    }
}

impl From<BackendError> for StepError {
    fn from(err: BackendError) -> StepError {
        StepError {
            kind: err.kind(),
            transient: err.is_transient(),
            message: err.to_string(),
            source: Some(Arc::new(err)),
        }
    }
}

/// Equal when kind, transience and message are: the source is the same error by construction.
impl PartialEq for StepError {
    fn eq(&self, other: &StepError) -> bool {
        (self.kind, self.transient, &self.message) == (other.kind, other.transient, &other.message)
    }
}

impl Eq for StepError {}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StepError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Serialize for StepStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            status: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            detail: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            kind: Option<ErrorKind>,
            #[serde(skip_serializing_if = "Option::is_none")]
            transient: Option<bool>,
        }
        let json = match self {
            StepStatus::Done(d) => Json {
                status: "done",
                detail: Some(d),
                kind: None,
                transient: None,
            },
            StepStatus::Failed(e) => Json {
                status: "failed",
                detail: Some(&e.message),
                kind: Some(e.kind),
                transient: Some(e.transient),
            },
            StepStatus::Skipped(why) => Json {
                status: "skipped",
                detail: Some(why),
                kind: None,
                transient: None,
            },
            StepStatus::WouldRun => Json {
                status: "would_run",
                detail: None,
                kind: None,
                transient: None,
            },
        };
        json.serialize(s)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct StepResult {
    pub step: Step,
    pub outcome: StepStatus,
    #[serde(with = "millis")]
    pub duration: Duration,
}

mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

/// The result of applying a plan, in plan order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ApplyReport {
    pub results: Vec<StepResult>,
    /// The run was cancelled (Ctrl-C, SIGTERM, shutdown) and some steps were skipped for it.
    pub interrupted: bool,
}

/// Why a step was skipped when the run was cancelled before it started.
const CANCELLED: &str = "cancelled before this step";

impl ApplyReport {
    pub fn failures(&self) -> impl Iterator<Item = &StepResult> {
        self.results
            .iter()
            .filter(|r| matches!(r.outcome, StepStatus::Failed(_)))
    }

    pub fn succeeded(&self) -> bool {
        self.results
            .iter()
            .all(|r| matches!(r.outcome, StepStatus::Done(_) | StepStatus::WouldRun))
    }

    /// Number of steps that changed live state.
    pub fn writes(&self) -> usize {
        self.results
            .iter()
            .filter(|r| matches!(r.outcome, StepStatus::Done(_)) && r.step.action.is_write())
            .count()
    }

    /// One line per failure, or `None` when everything succeeded.
    pub fn error(&self) -> Option<String> {
        let lines: Vec<String> = self
            .failures()
            .map(|r| match &r.outcome {
                StepStatus::Failed(e) => format!("{}: {e}", r.step.reason),
                _ => unreachable!("failures() filters"),
            })
            .collect();
        (!lines.is_empty()).then(|| lines.join("\n"))
    }
}

/// Something that happened during apply, for live progress output.
#[derive(Clone, Copy, Debug)]
pub enum ApplyEvent<'a> {
    Started(&'a Step),
    Finished(&'a StepResult),
}

/// One endpoint's steps run in order: its index in the plan and the results.
type EndpointRun<'a> = Pin<Box<dyn Future<Output = (usize, Vec<StepResult>)> + Send + 'a>>;

/// Applies a plan with no progress callback.
pub async fn apply(
    plan: &Plan,
    backend: &dyn Backend,
    opts: &ApplyOptions,
    cancel: &CancellationToken,
) -> ApplyReport {
    apply_observed(plan, backend, opts, cancel, &|_| {}).await
}

/// Applies a plan, calling `observe` as each step starts and ends.
pub async fn apply_observed(
    plan: &Plan,
    backend: &dyn Backend,
    opts: &ApplyOptions,
    cancel: &CancellationToken,
    observe: &(dyn Fn(ApplyEvent<'_>) + Sync),
) -> ApplyReport {
    let concurrency = opts.concurrency.max(1);
    // Boxing each endpoint's run as `dyn Future + Send` keeps the whole future `Send` (the
    // closure-in-stream form trips rustc's "not general enough" lifetime inference), so callers
    // can `tokio::spawn` it.
    let runs: Vec<EndpointRun<'_>> = plan
        .by_endpoint()
        .into_iter()
        .enumerate()
        .map(|(i, (_, steps))| {
            Box::pin(async move {
                (
                    i,
                    run_endpoint(&steps, backend, opts, cancel, observe).await,
                )
            }) as EndpointRun<'_>
        })
        .collect();
    let mut limit = Aimd::new(concurrency);
    let mut pending = runs.into_iter();
    let mut running = FuturesUnordered::new();
    let mut per_group: Vec<(usize, Vec<StepResult>)> = Vec::new();
    loop {
        while running.len() < limit.limit() {
            match pending.next() {
                Some(run) => running.push(run),
                None => break,
            }
        }
        let Some(done) = running.next().await else {
            break;
        };
        per_group.push(done);
        limit.on(backend.pressure());
    }
    per_group.sort_by_key(|(i, _)| *i);
    let results: Vec<StepResult> = per_group.into_iter().flat_map(|(_, r)| r).collect();
    let interrupted = results
        .iter()
        .any(|r| matches!(&r.outcome, StepStatus::Skipped(why) if why == CANCELLED));
    ApplyReport {
        results,
        interrupted,
    }
}

/// `endpoint E` or `endpoint E: deployment D`, as backends name a step's subject.
fn subject(step: &Step) -> String {
    match step.action.deployment() {
        Some(d) => format!("endpoint {}: deployment {d}", step.endpoint),
        None => format!("endpoint {}", step.endpoint),
    }
}

async fn run_endpoint(
    steps: &[&Step],
    backend: &dyn Backend,
    opts: &ApplyOptions,
    cancel: &CancellationToken,
    observe: &(dyn Fn(ApplyEvent<'_>) + Sync),
) -> Vec<StepResult> {
    let mut results = Vec::with_capacity(steps.len());
    let mut stop: Option<String> = None;
    for step in steps {
        let step = (*step).clone();
        if stop.is_none() && cancel.is_cancelled() {
            stop = Some(CANCELLED.into());
        }
        if let Some(why) = &stop {
            let result = StepResult {
                step,
                outcome: StepStatus::Skipped(why.clone()),
                duration: Duration::ZERO,
            };
            observe(ApplyEvent::Finished(&result));
            results.push(result);
            continue;
        }
        observe(ApplyEvent::Started(&step));
        let started = Instant::now();
        let outcome = if opts.dry_run {
            StepStatus::WouldRun
        } else {
            let budget = backend.step_timeout(&step);
            let ran = tokio::time::timeout(budget, backend.execute(&step))
                .await
                .unwrap_or_else(|_| {
                    Err(BackendError::Timeout {
                        subject: subject(&step),
                        what: step.action.kind().replace('_', " "),
                        seconds: budget.as_secs_f64().ceil() as u64,
                    })
                });
            match ran {
                Ok(o) => StepStatus::Done(o.detail),
                Err(e) => {
                    tracing::warn!(
                        endpoint = %step.endpoint,
                        action = step.action.kind(),
                        kind = %e.kind(),
                        transient = e.is_transient(),
                        error = %e,
                        "step failed"
                    );
                    stop = Some(format!("{} failed", step.action.kind()));
                    StepStatus::Failed(e.into())
                }
            }
        };
        let result = StepResult {
            step,
            outcome,
            duration: started.elapsed(),
        };
        observe(ApplyEvent::Finished(&result));
        results.push(result);
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;

    fn assert_send<T: Send>(_: &T) {}

    fn flight_green(endpoint: &str) -> Vec<Step> {
        use crate::model::{DeploymentSettings, TestSpec, Weights};
        use crate::plan::Action;
        let step = |action| Step::new(endpoint.to_string(), action, "test".into());
        vec![
            step(Action::CreateEndpoint {
                settings: Default::default(),
            }),
            step(Action::CreateDeployment {
                deployment: "green".into(),
                settings: Box::new(DeploymentSettings::default()),
            }),
            step(Action::TestDeployment {
                deployment: "green".into(),
                test: TestSpec {
                    requests: vec![crate::model::TestRequest::new("sample-request.json", "{}")],
                    expect_status: None,
                    expect_body_contains: None,
                    ..Default::default()
                },
            }),
            step(Action::SetTraffic {
                traffic: Weights::from([("green".to_string(), 100)]),
            }),
        ]
    }

    #[tokio::test]
    async fn a_failed_test_stops_its_endpoint_before_traffic_moves_and_other_endpoints_go_on() {
        let backend = MemoryBackend::default();
        let plan = Plan {
            steps: [flight_green("ep-a"), flight_green("ep-b")].concat(),
            notes: vec![],
            pending: vec![],
            rollouts: vec![],
        };
        backend.fail_tests_of("green");
        let report = apply(
            &plan,
            &backend,
            &ApplyOptions::default(),
            &CancellationToken::new(),
        )
        .await;
        assert!(!report.succeeded());
        assert!(
            !report.interrupted,
            "nothing was skipped for a cancellation"
        );
        // Both endpoints ran up to their (failing) gate, and neither moved traffic.
        assert_eq!(report.failures().count(), 2);
        assert_eq!(report.writes(), 4, "create endpoint + create green, twice");
        let skipped: Vec<_> = report
            .results
            .iter()
            .filter(|r| matches!(r.outcome, StepStatus::Skipped(_)))
            .map(|r| r.step.action.kind())
            .collect();
        assert_eq!(skipped, ["set_traffic", "set_traffic"]);
        assert!(backend.log().iter().all(|l| !l.starts_with("set_traffic")));
        assert!(report.error().expect("an error").contains("test failed"));
        let live = backend.snapshot();
        assert!(live.endpoints.values().all(|e| e.traffic.is_empty()));
    }

    #[tokio::test]
    async fn a_cancelled_run_skips_every_step_not_yet_started() {
        let backend = MemoryBackend::default();
        let plan = Plan {
            steps: flight_green("ep-a"),
            notes: vec![],
            pending: vec![],
            rollouts: vec![],
        };
        let cancel = CancellationToken::new();
        cancel.cancel();
        let report = apply(&plan, &backend, &ApplyOptions::default(), &cancel).await;
        assert!(report.interrupted);
        assert_eq!(report.writes(), 0);
        assert!(
            report
                .results
                .iter()
                .all(|r| matches!(r.outcome, StepStatus::Skipped(_)))
        );
        assert!(backend.log().is_empty());
    }

    /// A backend whose every step hangs, as a platform that never answers does.
    struct Hanging;

    #[async_trait::async_trait]
    impl Backend for Hanging {
        fn name(&self) -> &'static str {
            "hanging"
        }
        async fn read_live(&self) -> Result<crate::model::LiveState, BackendError> {
            Ok(Default::default())
        }
        async fn execute(&self, _: &Step) -> Result<crate::backend::StepDetail, BackendError> {
            std::future::pending().await
        }
        async fn write_rollout(
            &self,
            _: &str,
            _: Option<&crate::rollout::RolloutRecord>,
        ) -> Result<(), BackendError> {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_that_never_returns_fails_after_its_budget_and_stops_its_endpoint() {
        let plan = Plan {
            steps: flight_green("ep-a"),
            notes: vec![],
            pending: vec![],
            rollouts: vec![],
        };
        let report = apply(
            &plan,
            &Hanging,
            &ApplyOptions::default(),
            &CancellationToken::new(),
        )
        .await;
        let StepStatus::Failed(error) = &report.results[0].outcome else {
            panic!("{:?}", report.results[0].outcome);
        };
        assert_eq!(
            error.message,
            "endpoint ep-a: timed out after 1800s waiting for create endpoint"
        );
        assert_eq!((error.kind, error.transient), (ErrorKind::Timeout, true));
        let source = std::error::Error::source(error).expect("the backend error");
        assert!(matches!(
            source.downcast_ref::<BackendError>(),
            Some(BackendError::Timeout { seconds: 1800, .. })
        ));
        // Paused time: the budget passed on the tokio clock, not the wall clock.
        assert_eq!(report.results[0].duration, Duration::from_secs(1800));
        let json = serde_json::to_value(&report.results[0].outcome).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"status": "failed", "kind": "timeout", "transient": true,
                "detail": "endpoint ep-a: timed out after 1800s waiting for create endpoint"})
        );
        assert!(
            report.results[1..]
                .iter()
                .all(|r| matches!(r.outcome, StepStatus::Skipped(_)))
        );
    }

    #[test]
    fn the_apply_future_is_send_so_it_can_be_spawned() {
        let backend = MemoryBackend::default();
        let (plan, opts, cancel) = (
            Plan::default(),
            ApplyOptions::default(),
            CancellationToken::new(),
        );
        let fut = apply(&plan, &backend, &opts, &cancel);
        assert_send(&fut);
    }
}
