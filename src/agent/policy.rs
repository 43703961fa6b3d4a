//! What the agent does after a tick: a pure function of the reconcile's outcome, like
//! kube-runtime's `controller::Action` and `error_policy`. The worker only carries it out.

use std::time::Duration;

use super::backoff::Backoff;
use crate::apply;
use crate::backend::ErrorKind;
use crate::reconcile::ReconcileOutcome;

/// The next thing to do for one environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Healthy: reconcile again at the poll interval (the fetch loop's next tick, which re-sends
    /// the snapshot; a push or file change comes sooner).
    RequeueAfter(Duration),
    /// Retry the same revision once the delay has passed; a new revision goes at once.
    RetryAfter(Duration),
    /// Do not reconcile this revision again: the same files give the same result. A new
    /// revision goes at once.
    AwaitChange,
}

/// The knobs `next_action` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Failures that may pass by themselves (the platform, the network) back off with it.
    pub backoff: Backoff,
    /// The agent's poll interval.
    pub poll_interval: Duration,
}

/// `attempt` counts consecutive failures including this outcome (1 = the first failure).
pub fn next_action(outcome: &ReconcileOutcome, attempt: u32, policy: &Policy) -> Action {
    if let Some(due) = outcome.plan().and_then(rollout_due) {
        // A staged rollout moves on its own clock: come back when its next stage or gate is
        // due (a shift just made: at once), however the tick ended otherwise.
        if !outcome.is_failure() {
            return Action::RequeueAfter(due.min(policy.poll_interval));
        }
    }
    match outcome {
        ReconcileOutcome::InSync
        | ReconcileOutcome::Applied { .. }
        | ReconcileOutcome::DriftReported { .. }
        | ReconcileOutcome::Planned { .. }
        // Shutdown or lost leadership: whoever leads next continues from live state.
        | ReconcileOutcome::Interrupted { .. } => Action::RequeueAfter(policy.poll_interval),
        // The same files load the same way: wait for a commit that fixes them.
        ReconcileOutcome::Invalid(_) => Action::AwaitChange,
        // A gate (pre-traffic test) said no: retrying the same commit would roll the same
        // deployment out again and fail the same way. Wait for a new commit.
        ReconcileOutcome::ApplyFailed { report, .. } if gate_failed(report) => Action::AwaitChange,
        // The platform, the network, a refusal that depends on live state (another writer may
        // change it), a step that failed on the platform: back off and retry.
        ReconcileOutcome::Refused(_)
        | ReconcileOutcome::BackendFailed(_)
        | ReconcileOutcome::Aborted(_)
        | ReconcileOutcome::ApplyFailed { .. } => {
            Action::RetryAfter(policy.backoff.delay(attempt.max(1)))
        }
    }
}

/// When the soonest moving rollout of the plan wants to be looked at again (at least 1 s).
fn rollout_due(plan: &crate::plan::Plan) -> Option<Duration> {
    plan.rollouts
        .iter()
        .filter(|r| !r.is_failed() && !r.is_paused())
        .map(|r| Duration::from_secs(r.next_check_seconds.unwrap_or(1).max(1)))
        .min()
}

/// Every failed step failed its test (the typed `test_failed` kind): the rollout was stopped by
/// its gate, not by the platform. A test step that could not reach the model (a timeout, a
/// lost connection) is the platform's failure and is retried.
fn gate_failed(report: &apply::ApplyReport) -> bool {
    let mut failures = report.failures().peekable();
    failures.peek().is_some()
        && failures.all(|r| match &r.outcome {
            apply::StepStatus::Failed(error) => error.kind == ErrorKind::TestFailed,
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::{ApplyReport, StepError, StepResult, StepStatus as Outcome};
    use crate::backend::BackendError;
    use crate::model::{TestSpec, Weights};
    use crate::plan::Action as StepAction;
    use crate::plan::{Plan, Refusal, Step};
    use crate::reconcile::{BackendFailure, Invalid};

    const POLL: Duration = Duration::from_secs(60);

    fn policy() -> Policy {
        Policy {
            backoff: Backoff {
                base: Duration::from_secs(2),
                max: Duration::from_secs(300),
            },
            poll_interval: POLL,
        }
    }

    fn step(action: StepAction) -> Step {
        Step::new("scoring".into(), action, "r".into())
    }

    fn test_step() -> Step {
        step(StepAction::TestDeployment {
            deployment: "green".into(),
            test: TestSpec {
                requests: vec![crate::model::TestRequest::new("sample-request.json", "{}")],
                expect_status: None,
                expect_body_contains: None,
                ..Default::default()
            },
        })
    }

    fn traffic_step() -> Step {
        step(StepAction::SetTraffic {
            traffic: Weights::from([("green".to_string(), 100)]),
        })
    }

    fn ran(results: Vec<(Step, Outcome)>) -> (Plan, ApplyReport) {
        let plan = Plan {
            steps: results.iter().map(|(s, _)| s.clone()).collect(),
            ..Plan::default()
        };
        let results = results
            .into_iter()
            .map(|(step, outcome)| StepResult {
                step,
                outcome,
                duration: Duration::ZERO,
            })
            .collect();
        (
            plan,
            ApplyReport {
                results,
                interrupted: false,
            },
        )
    }

    fn gate_failure() -> ReconcileOutcome {
        let (plan, report) = ran(vec![
            (
                test_step(),
                Outcome::Failed(StepError::new(
                    ErrorKind::TestFailed,
                    false,
                    "test failed: 500",
                )),
            ),
            (
                traffic_step(),
                Outcome::Skipped("test_deployment failed".into()),
            ),
        ]);
        ReconcileOutcome::ApplyFailed { plan, report }
    }

    fn platform_failure() -> ReconcileOutcome {
        let (plan, report) = ran(vec![
            (test_step(), Outcome::Done("200".into())),
            (
                traffic_step(),
                Outcome::Failed(StepError::new(
                    ErrorKind::Platform,
                    true,
                    "InternalServerError",
                )),
            ),
        ]);
        ReconcileOutcome::ApplyFailed { plan, report }
    }

    fn applied() -> ReconcileOutcome {
        let (plan, report) = ran(vec![(traffic_step(), Outcome::Done(String::new()))]);
        ReconcileOutcome::Applied { plan, report }
    }

    fn interrupted() -> ReconcileOutcome {
        let (plan, mut report) = ran(vec![(
            traffic_step(),
            Outcome::Skipped("cancelled before this step".into()),
        )]);
        report.interrupted = true;
        ReconcileOutcome::Interrupted { plan, report }
    }

    fn backend_down() -> ReconcileOutcome {
        ReconcileOutcome::BackendFailed(BackendFailure::ReadLive(BackendError::transport(
            "scoring",
            "connection refused",
            None,
        )))
    }

    #[test]
    fn every_outcome_maps_to_the_action_the_agent_takes() {
        let second_failure = Action::RetryAfter(Duration::from_secs(4));
        let table: Vec<(&str, ReconcileOutcome, Action)> = vec![
            (
                "in sync",
                ReconcileOutcome::InSync,
                Action::RequeueAfter(POLL),
            ),
            ("applied", applied(), Action::RequeueAfter(POLL)),
            (
                "drift reported",
                ReconcileOutcome::DriftReported {
                    plan: Plan::default(),
                },
                Action::RequeueAfter(POLL),
            ),
            (
                "planned by a follower",
                ReconcileOutcome::Planned {
                    plan: Plan::default(),
                },
                Action::RequeueAfter(POLL),
            ),
            ("interrupted", interrupted(), Action::RequeueAfter(POLL)),
            (
                "invalid YAML",
                ReconcileOutcome::Invalid(Invalid::Source("e.yaml:3:1: unknown key".into())),
                Action::AwaitChange,
            ),
            ("failed gate", gate_failure(), Action::AwaitChange),
            (
                "platform failure in a step",
                platform_failure(),
                second_failure,
            ),
            ("backend unreachable", backend_down(), second_failure),
            (
                "connect failed",
                ReconcileOutcome::BackendFailed(BackendFailure::Connect(anyhow::anyhow!(
                    "no credential"
                ))),
                second_failure,
            ),
            (
                "plan refused",
                ReconcileOutcome::Refused(vec![Refusal {
                    endpoint: "scoring".into(),
                    deployment: None,
                    message: "create-only".into(),
                }]),
                second_failure,
            ),
            (
                "aborted",
                ReconcileOutcome::Aborted("cannot watch".into()),
                second_failure,
            ),
        ];
        for (what, outcome, expected) in table {
            assert_eq!(next_action(&outcome, 2, &policy()), expected, "{what}");
        }
    }

    #[test]
    fn transient_failures_back_off_exponentially_up_to_the_cap() {
        let delays: Vec<Action> = [1, 2, 3, 9, 30]
            .iter()
            .map(|&n| next_action(&backend_down(), n, &policy()))
            .collect();
        let secs = |s| Action::RetryAfter(Duration::from_secs(s));
        assert_eq!(delays, [secs(2), secs(4), secs(8), secs(300), secs(300)]);
    }

    #[test]
    fn invalid_input_and_a_failed_gate_wait_for_a_new_commit_however_often_they_failed() {
        for attempt in [1, 5, 1000] {
            let invalid = ReconcileOutcome::Invalid(Invalid::Source("bad".into()));
            assert_eq!(
                next_action(&invalid, attempt, &policy()),
                Action::AwaitChange
            );
            assert_eq!(
                next_action(&gate_failure(), attempt, &policy()),
                Action::AwaitChange
            );
        }
    }

    #[test]
    fn a_platform_failure_beside_a_failed_gate_is_retried() {
        let (plan, report) = ran(vec![
            (
                test_step(),
                Outcome::Failed(StepError::new(
                    ErrorKind::TestFailed,
                    false,
                    "test failed: 500",
                )),
            ),
            (
                traffic_step(),
                Outcome::Failed(StepError::new(
                    ErrorKind::Platform,
                    true,
                    "InternalServerError",
                )),
            ),
        ]);
        let outcome = ReconcileOutcome::ApplyFailed { plan, report };
        assert_eq!(
            next_action(&outcome, 1, &policy()),
            Action::RetryAfter(Duration::from_secs(2))
        );
    }
}
