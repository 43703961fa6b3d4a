//! The rollout driver: the I/O around the pure engine (`flightdeck_core::rollout`). Before
//! planning it asks the engine what each endpoint with a policy does this tick, reading metrics
//! when the engine asks (one read per gated endpoint, all endpoints at once), and replaces
//! those endpoints in the desired state with the stage the engine chose. The planner then plans
//! that as usual. Around the apply it writes the records the engine returned: some before
//! traffic moves, the rest once the endpoint's steps all succeeded.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;

use crate::apply::{ApplyReport, StepStatus};
use crate::backend::{Backend, BackendError, ErrorKind};
use crate::clock;
use crate::metrics::MetricsProvider;
use crate::model::{DeploymentState, DesiredState, LiveState, effective};
use crate::plan::{Action, Plan, Refusal, Step};
use crate::rollout::engine::{self, EXTEND_POLL};
use crate::rollout::{Decision, Input, RecordWrite, RolloutView, Status};

/// This tick's decisions, and the desired state to plan (each rolling endpoint at its stage).
pub struct Prepared {
    pub desired: DesiredState,
    pub decisions: BTreeMap<String, Decision>,
    pub views: Vec<RolloutView>,
}

/// Whether gates may read metrics (and run the `smoke` gate's requests) this time.
#[derive(Clone)]
pub enum Metrics<'a> {
    /// `plan` and `diff`: never read; a stage whose bake is over shows as "judging the gates".
    Skip,
    /// `apply` and the agent: read from `provider` (`None`: the environment declares none);
    /// the `smoke` gate runs the candidate's test through `backend`, as the planner's
    /// pre-traffic `test_deployment` step does.
    Read {
        provider: Option<Arc<dyn MetricsProvider>>,
        backend: &'a dyn Backend,
    },
}

/// Asks the engine about every endpoint that has a policy and exists live.
pub async fn prepare(
    desired: &DesiredState,
    live: &LiveState,
    metrics: Metrics<'_>,
    revision: Option<&str>,
) -> Result<Prepared, Vec<Refusal>> {
    let settings = &desired.environment.rollout;
    let now = clock::now_utc();
    let mut decisions = BTreeMap::new();
    let mut reads = Vec::new();
    for (name, endpoint) in &desired.endpoints {
        let (Some(policy), Some(live_ep)) = (settings.policy_for(name), live.endpoints.get(name))
        else {
            continue;
        };
        let input = Input {
            policy,
            desired: endpoint,
            live: live_ep,
            record: live_ep.rollout.as_ref(),
            revision,
            now,
            readings: None,
            smoke: None,
        };
        let decision = engine::decide(&input);
        let asks = decision.read.is_some() || decision.smoke.is_some();
        match &metrics {
            Metrics::Read { .. } if asks => {
                reads.push((name.clone(), decision.read.clone(), decision.smoke.clone()))
            }
            _ => {
                decisions.insert(name.clone(), decision);
            }
        }
    }
    // One metrics read (and smoke run) per gated endpoint, all endpoints at once.
    let (provider, backend) = match metrics {
        Metrics::Read { provider, backend } => (provider, Some(backend)),
        Metrics::Skip => (None, None),
    };
    let results = join_all(reads.into_iter().map(|(name, request, smoke)| {
        let provider = provider.clone();
        async move {
            let smoke = match (smoke, backend) {
                (Some(ask), Some(backend)) => Some(run_smoke(backend, desired, &ask).await),
                _ => None,
            };
            let Some(request) = request else {
                return (name, Ok(Default::default()), smoke);
            };
            let result = match provider {
                Some(p) => p.read(&request).await,
                None => Err(BackendError::Platform {
                    subject: format!("endpoint {name}"),
                    code: "NoMetricsSource".into(),
                    message: "the rollout's gates need `rollout.metrics` in environment.yaml"
                        .into(),
                    transient: false,
                    source: None,
                }),
            };
            (name, result, smoke)
        }
    }))
    .await;
    for (name, result, smoke) in results {
        let policy = settings.policy_for(&name).expect("read only for a policy");
        let endpoint = &desired.endpoints[&name];
        let live_ep = &live.endpoints[&name];
        let input = Input {
            policy,
            desired: endpoint,
            live: live_ep,
            record: live_ep.rollout.as_ref(),
            revision,
            now,
            readings: None,
            smoke: smoke.as_ref(),
        };
        let decision = match result {
            Ok(readings) => engine::decide(&Input {
                readings: Some(&readings),
                ..input
            }),
            Err(e) => {
                // No verdict without data: hold the stage and look again soon.
                tracing::warn!(endpoint = %name, error = %e, "rollout metrics read failed");
                let mut waiting = engine::decide(&input);
                let stage = match waiting.status {
                    Status::Evaluating { stage } => stage,
                    _ => 0,
                };
                waiting.read = None;
                waiting.smoke = None;
                waiting.wait = Some(EXTEND_POLL);
                waiting.status = Status::Baking {
                    stage,
                    remaining: EXTEND_POLL,
                    why: format!("metrics read failed ({e})"),
                };
                waiting
            }
        };
        decisions.insert(name, decision);
    }
    let mut refusals = Vec::new();
    let mut effective_desired = desired.clone();
    let mut views = Vec::new();
    for (name, decision) in &decisions {
        if let Status::Refused(message) = &decision.status {
            refusals.push(Refusal {
                endpoint: name.clone(),
                deployment: None,
                message: message.clone(),
            });
            continue;
        }
        if let Some(staged) = &decision.endpoint {
            effective_desired
                .endpoints
                .insert(name.clone(), staged.clone());
        }
        let policy = settings
            .policy_for(name)
            .expect("decided only with a policy");
        let declared = desired.endpoints[name]
            .traffic
            .as_ref()
            .map(effective)
            .unwrap_or_default();
        let live_traffic = &live.endpoints[name].traffic;
        if let Some(view) = RolloutView::of(name, policy, &declared, live_traffic, decision) {
            views.push(view);
        }
    }
    if !refusals.is_empty() {
        return Err(refusals);
    }
    Ok(Prepared {
        desired: effective_desired,
        decisions,
        views,
    })
}

/// A held endpoint's failed candidate is left as it failed. The planner re-provisions every
/// failed deployment it is given, and for a held endpoint that would try the failed desired
/// state again on every apply and agent tick, before Git changes it (docs/environment-format.md
/// "Rollout policy"). Drops those steps from `plan`.
pub fn keep_failed_candidates(
    plan: &mut Plan,
    decisions: &BTreeMap<String, Decision>,
    live: &LiveState,
) {
    let failed_candidate = |endpoint: &str| -> Option<&str> {
        if !matches!(decisions.get(endpoint)?.status, Status::Held { .. }) {
            return None;
        }
        let live_ep = live.endpoints.get(endpoint)?;
        let candidate = live_ep.rollout.as_ref()?.candidate.as_str();
        let failed = matches!(
            live_ep.deployments.get(candidate)?.state,
            DeploymentState::Failed { .. }
        );
        failed.then_some(candidate)
    };
    plan.steps.retain(|step| match &step.action {
        Action::UpdateDeployment { deployment, .. } => {
            failed_candidate(&step.endpoint) != Some(deployment.as_str())
        }
        _ => true,
    });
}

/// Writes the records due before traffic moves. An endpoint whose record cannot be written is
/// not applied this tick (returned by name); the others go on.
pub async fn write_before(
    backend: &dyn Backend,
    decisions: &BTreeMap<String, Decision>,
) -> Vec<(String, BackendError)> {
    let writes = decisions.iter().filter_map(|(name, d)| {
        d.record_before
            .as_ref()
            .map(|r| async move { (name.clone(), backend.write_rollout(name, Some(r)).await) })
    });
    join_all(writes)
        .await
        .into_iter()
        .filter_map(|(name, r)| r.err().map(|e| (name, e)))
        .collect()
}

/// After the apply: endpoints whose steps all succeeded store their record (stamped now); an
/// endpoint whose candidate could not be brought up (a failed test, provisioning that failed or
/// timed out) is marked failed, so it is held at its baseline until Git changes.
pub async fn write_after(
    backend: &dyn Backend,
    decisions: &BTreeMap<String, Decision>,
    report: &ApplyReport,
) -> Vec<(String, BackendError)> {
    let now = crate::rollout::record::ceil_second(clock::now_utc());
    let mut writes = Vec::new();
    for (name, decision) in decisions {
        let failure = report
            .results
            .iter()
            .filter(|r| &r.step.endpoint == name)
            .find_map(|r| match &r.outcome {
                StepStatus::Failed(e) => Some(e),
                _ => None,
            });
        let skipped = report
            .results
            .iter()
            .any(|r| &r.step.endpoint == name && matches!(r.outcome, StepStatus::Skipped(_)));
        let record = match (failure, &decision.record) {
            (Some(e), RecordWrite::Write { record, .. })
                if matches!(decision.status, Status::Shifting { .. })
                    && candidate_failed(e.kind, e.transient) =>
            {
                let mut failed = record.clone();
                failed.state = crate::rollout::RolloutState::Failed;
                failed.shifting = false;
                failed.baseline = record.baseline.clone();
                failed.reason = Some(format!(
                    "candidate {} failed before taking traffic at stage {}: {}",
                    record.candidate,
                    record.stage + 1,
                    e.message
                ));
                Some(Some(failed))
            }
            (Some(_), _) => None,
            (None, _) if skipped || report.interrupted => None,
            (None, RecordWrite::Keep) => None,
            (None, RecordWrite::Clear) => Some(None),
            (None, RecordWrite::Write { record, stamp }) => {
                let mut r = record.clone();
                if *stamp {
                    r.since = now;
                }
                Some(Some(r))
            }
        };
        if let Some(record) = record {
            writes.push(async move {
                (
                    name.clone(),
                    backend.write_rollout(name, record.as_ref()).await,
                )
            });
        }
    }
    join_all(writes)
        .await
        .into_iter()
        .filter_map(|(name, r)| r.err().map(|e| (name, e)))
        .collect()
}

/// A failure that means the candidate itself is bad, not that the platform was busy.
fn candidate_failed(kind: ErrorKind, transient: bool) -> bool {
    match kind {
        ErrorKind::TestFailed | ErrorKind::Timeout => true,
        ErrorKind::Platform => !transient,
        _ => false,
    }
}

/// The `smoke` gate's run: the candidate's declared test, sent by the backend exactly as the
/// pre-traffic `test_deployment` step sends it (header-pinned to the candidate). A candidate
/// without a test, or a test that could not be sent, fails the gate with the reason.
async fn run_smoke(
    backend: &dyn Backend,
    desired: &DesiredState,
    ask: &crate::rollout::gates::SmokeRequest,
) -> crate::rollout::gates::SmokeRun {
    let test = desired
        .endpoints
        .get(&ask.endpoint)
        .and_then(|e| e.deployments.get(&ask.deployment))
        .and_then(|d| d.test.clone())
        .ok_or_else(|| format!("candidate {} declares no test", ask.deployment))?;
    let step = Step::new(
        ask.endpoint.clone(),
        Action::TestDeployment {
            deployment: ask.deployment.clone(),
            test,
        },
        format!("smoke gate: test {}", ask.deployment),
    );
    match backend.execute(&step).await {
        Ok(detail) => Ok(detail.detail),
        Err(e) => {
            tracing::info!(endpoint = %ask.endpoint, deployment = %ask.deployment, error = %e, "smoke gate failed");
            Err(match e {
                BackendError::TestFailed { message, .. } => message,
                other => other.to_string(),
            })
        }
    }
}

/// The plan `flightdeck plan` shows (and `promote` commits with): `desired` against `live`,
/// each endpoint in a staged rollout at its stage, without reading metrics (a stage whose bake
/// is over shows as "judging the gates"). Slot endpoints must already be resolved.
pub async fn plan_without_metrics(
    desired: &DesiredState,
    live: &LiveState,
    options: &crate::plan::PlanOptions,
) -> Result<Plan, Vec<Refusal>> {
    let profile = crate::backend::profile_of(&desired.environment.target);
    let prepared = if desired.environment.rollout.is_empty() {
        None
    } else {
        Some(prepare(desired, live, Metrics::Skip, None).await?)
    };
    let to_plan = prepared.as_ref().map_or(desired, |p| &p.desired);
    let mut plan = crate::plan::plan(to_plan, live, options, profile)?;
    if let Some(p) = prepared {
        keep_failed_candidates(&mut plan, &p.decisions, live);
        plan.rollouts = p.views;
    }
    Ok(plan)
}
