//! Executes a plan through a backend: endpoints in parallel (up to a limit), steps of one endpoint
//! strictly in order, one write in flight per endpoint. A failed step stops its endpoint's
//! remaining steps (a failed test leaves traffic where it was, because traffic steps come after
//! the tests); other endpoints go on. The report lists every step with its outcome.
//!
//! The executor owns step timeouts, for every backend: each step runs under
//! `Backend::step_timeout(step)`; a step that outlives it fails as `timed out after Ns`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::Instant;

use futures::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, BackendError};
use crate::plan::{Plan, Step};

#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Endpoints applied at the same time.
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

/// How one step ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "detail")]
pub enum Outcome {
    Done(String),
    Failed(String),
    /// Not run: an earlier step of the same endpoint failed, or the run was cancelled.
    Skipped(String),
    /// `--dry-run`.
    WouldRun,
}

#[derive(Clone, Debug, Serialize)]
pub struct StepResult {
    pub step: Step,
    pub outcome: Outcome,
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
            .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
    }

    pub fn succeeded(&self) -> bool {
        self.results
            .iter()
            .all(|r| matches!(r.outcome, Outcome::Done(_) | Outcome::WouldRun))
    }

    /// Number of steps that changed live state.
    pub fn writes(&self) -> usize {
        self.results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Done(_)) && r.step.action.is_write())
            .count()
    }

    /// One line per failure, or `None` when everything succeeded.
    pub fn error(&self) -> Option<String> {
        let lines: Vec<String> = self
            .failures()
            .map(|r| match &r.outcome {
                Outcome::Failed(e) => format!("{}: {e}", r.step.reason),
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
    let mut per_group: Vec<(usize, Vec<StepResult>)> = futures::stream::iter(runs)
        .buffer_unordered(concurrency)
        .collect()
        .await;
    per_group.sort_by_key(|(i, _)| *i);
    let results: Vec<StepResult> = per_group.into_iter().flat_map(|(_, r)| r).collect();
    let interrupted = results
        .iter()
        .any(|r| matches!(&r.outcome, Outcome::Skipped(why) if why == CANCELLED));
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
                outcome: Outcome::Skipped(why.clone()),
                duration: Duration::ZERO,
            };
            observe(ApplyEvent::Finished(&result));
            results.push(result);
            continue;
        }
        observe(ApplyEvent::Started(&step));
        let started = Instant::now();
        let outcome = if opts.dry_run {
            Outcome::WouldRun
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
                Ok(o) => Outcome::Done(o.detail),
                Err(e) => {
                    tracing::warn!(endpoint = %step.endpoint, action = step.action.kind(), error = %e, "step failed");
                    stop = Some(format!("{} failed", step.action.kind()));
                    Outcome::Failed(e.to_string())
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
                settings: DeploymentSettings::default(),
            }),
            step(Action::TestDeployment {
                deployment: "green".into(),
                test: TestSpec {
                    request_file: "sample-request.json".into(),
                    request_body: "{}".into(),
                    expect_status: None,
                    expect_body_contains: None,
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
            .filter(|r| matches!(r.outcome, Outcome::Skipped(_)))
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
                .all(|r| matches!(r.outcome, Outcome::Skipped(_)))
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
        async fn execute(&self, _: &Step) -> Result<crate::backend::StepOutcome, BackendError> {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_that_never_returns_fails_after_its_budget_and_stops_its_endpoint() {
        let plan = Plan {
            steps: flight_green("ep-a"),
            notes: vec![],
            pending: vec![],
        };
        let report = apply(
            &plan,
            &Hanging,
            &ApplyOptions::default(),
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(
            report.results[0].outcome,
            Outcome::Failed(
                "endpoint ep-a: timed out after 1800s waiting for create endpoint".into()
            )
        );
        assert!(
            report.results[1..]
                .iter()
                .all(|r| matches!(r.outcome, Outcome::Skipped(_)))
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
