//! The rollout engine: a pure function from (policy, declared endpoint, live endpoint, stored
//! progress, now, metric readings) to what this tick does. It never performs I/O: the driver at
//! the edge (`reconcile`) reads metrics when the engine asks, plans and applies the endpoint it
//! returns with the ordinary planner, and writes the record it returns once that apply
//! succeeded. So the safety rules stay the planner's: a stage's traffic is an ordinary desired
//! traffic map, and the planner creates, waits for and tests the candidate before it routes to it.
//!
//! Crash safety comes from the order of writes. A rollout's first shift and every rollback write
//! their record *before* traffic moves (`Decision::record_before`): a new rollout is marked
//! `shifting`, a rollback `failed`, so a crash in between can neither restart the rollout from a
//! half-moved baseline nor send traffic back to a failed candidate. Every shift writes the record
//! again *after* traffic moved, stamping `since`: the bake counts from then, so a restart may bake
//! a stage longer than asked, never shorter, and never shifts twice.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::gates::{self, GateResult, SmokeRequest, SmokeRun, Verdict};
use super::policy::{OnFailure, RolloutPolicy, StageTarget};
use super::record::{RolloutRecord, RolloutState};
use super::scale;
use crate::metrics::{MetricsRequest, Readings, Window};
use crate::model::{Deployment, Endpoint, LiveEndpoint, Weights, effective, weights_display};

/// How often an extended bake (too little data) looks again, at most.
pub const EXTEND_POLL: Duration = Duration::from_secs(30);

/// Everything the engine decides from.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub policy: &'a RolloutPolicy,
    pub desired: &'a Endpoint,
    pub live: &'a LiveEndpoint,
    /// The progress the platform holds for this endpoint.
    pub record: Option<&'a RolloutRecord>,
    /// The Git commit being applied, when known.
    pub revision: Option<&'a str>,
    pub now: DateTime<Utc>,
    /// The metrics read for this tick, when the engine asked for them.
    pub readings: Option<&'a Readings>,
    /// The candidate's smoke run for this tick, when the engine asked for one (`smoke` gate).
    pub smoke: Option<&'a SmokeRun>,
}

/// Where this endpoint's rollout stands after the decision.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    /// No policy, or the declared state moves no traffic onto a deployment: applied as written.
    NotRolling,
    /// The declared state cannot be rolled out with this policy; nothing is applied.
    Refused(String),
    /// Moving live traffic to `stage` (0-based).
    Shifting { stage: usize },
    /// Traffic is at `stage`; its bake has `remaining` to go (or is extended for data).
    Baking {
        stage: usize,
        remaining: Duration,
        why: String,
    },
    /// The bake is over: the gates need a metrics read (and the `smoke` gate a smoke run).
    Evaluating { stage: usize },
    /// Waiting for `flightdeck rollout resume` or `abort`.
    Paused { stage: usize, reason: String },
    /// Returning traffic to the last good split, in one step.
    RollingBack { reason: String },
    /// This declared state failed before; it is not tried again until Git changes.
    Held { reason: String },
    /// Applying the declared traffic (the last stage).
    Completing,
    /// The declared traffic was reached.
    Done,
}

/// What to do with the stored progress once this tick's apply succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordWrite {
    Keep,
    /// Write this record; if `stamp` is set its `since` becomes the time of writing.
    Write {
        record: RolloutRecord,
        stamp: bool,
    },
    /// Remove the stored progress (it belonged to an older desired state).
    Clear,
}

/// The engine's answer for one endpoint and one tick.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: Status,
    /// The endpoint to plan instead of the declared one; `None`: the declared one.
    pub endpoint: Option<Endpoint>,
    /// A record to store before applying `endpoint` (a new rollout, a rollback).
    pub record_before: Option<RolloutRecord>,
    /// What to store once `endpoint` was applied.
    pub record: RecordWrite,
    /// Metrics to read, then decide again with `readings`.
    pub read: Option<MetricsRequest>,
    /// The candidate's smoke requests to run (the `smoke` gate), then decide again with
    /// `smoke`; asked together with `read` when the stage has both.
    pub smoke: Option<SmokeRequest>,
    /// Look again after this long; `None`: nothing is timed.
    pub wait: Option<Duration>,
    pub verdicts: Vec<Verdict>,
}

impl Decision {
    fn new(status: Status) -> Self {
        Decision {
            status,
            endpoint: None,
            record_before: None,
            record: RecordWrite::Keep,
            read: None,
            smoke: None,
            wait: None,
            verdicts: Vec::new(),
        }
    }
}

/// The digest that identifies a declared endpoint for its rollout record: equal digests mean
/// "the same desired state", so a failed one is not tried again until Git changes it.
pub fn digest(desired: &Endpoint) -> String {
    let json = serde_json::to_vec(desired).expect("an endpoint serialises");
    Sha256::digest(&json)
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Decides this tick for one endpoint.
pub fn decide(input: &Input<'_>) -> Decision {
    let Some(declared) = input.desired.traffic.as_ref().map(effective) else {
        return Decision::new(Status::NotRolling);
    };
    let digest = digest(input.desired);
    match input.record {
        Some(r) if r.digest == digest => continue_rollout(input, r, &declared),
        previous => start(input, previous, &declared, digest),
    }
}

/// A person's `rollout abort`, or the driver after the candidate failed to become ready or
/// pass its pre-traffic test: back to the baseline in one step, and held there.
pub fn abandon(input: &Input<'_>, record: &RolloutRecord, reason: String) -> Decision {
    let mut endpoint = staged(input.desired, input.live, &record.baseline);
    if input.policy.scale_with_traffic {
        scale::set_rollback(&mut endpoint, record, input.live);
    }
    endpoint.mirror_traffic = Some(without(&input.live.mirror_traffic, &record.candidate));
    if !input.policy.keep_failed
        && record.baseline.get(&record.candidate).copied().unwrap_or(0) == 0
    {
        endpoint.deployments.remove(&record.candidate);
    }
    let mut failed = record.clone();
    failed.state = RolloutState::Failed;
    failed.shifting = false;
    failed.reason = Some(reason.clone());
    Decision {
        endpoint: Some(endpoint),
        record_before: Some(failed),
        ..Decision::new(Status::RollingBack { reason })
    }
}

/// A person's `rollout resume`: a paused stage goes on (its pause, or its failed gate under
/// `on_failure: pause`, is overridden).
pub fn resume(record: &RolloutRecord) -> Option<RolloutRecord> {
    if record.state != RolloutState::Paused {
        return None;
    }
    let mut next = record.clone();
    next.state = RolloutState::Progressing;
    next.approved = true;
    next.reason = None;
    Some(next)
}

fn start(
    input: &Input<'_>,
    previous: Option<&RolloutRecord>,
    declared: &Weights,
    digest: String,
) -> Decision {
    // Mid-rollout, the last good traffic is still the old rollout's baseline.
    let baseline = match previous {
        Some(r) if matches!(r.state, RolloutState::Progressing | RolloutState::Paused) => {
            effective(&r.baseline)
        }
        _ => effective(&input.live.traffic),
    };
    let stale = previous.is_some_and(|r| r.state != RolloutState::Succeeded);
    let not_rolling = || Decision {
        record: if stale {
            RecordWrite::Clear
        } else {
            RecordWrite::Keep
        },
        ..Decision::new(Status::NotRolling)
    };
    if baseline.is_empty() {
        return not_rolling(); // a first deployment has nothing to protect
    }
    let gainers: Vec<&String> = declared
        .iter()
        .filter(|(d, w)| **w > baseline.get(*d).copied().unwrap_or(0))
        .map(|(d, _)| d)
        .collect();
    let candidate = match gainers.as_slice() {
        [] => return not_rolling(),
        [one] => (*one).clone(),
        many => {
            let weights_only = input
                .policy
                .steps
                .iter()
                .any(|s| matches!(s.target, StageTarget::Weight(_)));
            if weights_only {
                return Decision::new(Status::Refused(format!(
                    "endpoint {}: the declared traffic moves onto {} deployments ({}); a `weight` stage \
                     names one candidate, so give each stage a whole `traffic` map",
                    input.desired.name,
                    many.len(),
                    many.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            // N-way: the gates watch the deployment that gains the most.
            let gain = |d: &String| declared[d] - baseline.get(d).copied().unwrap_or(0);
            (*many.iter().max_by_key(|d| gain(d)).expect("non-empty")).clone()
        }
    };
    if let Err(problem) = check_traffic_stages(input, declared) {
        return Decision::new(Status::Refused(problem));
    }
    let scale = if input.policy.scale_with_traffic {
        scale::baseline_counts(&baseline, input.live)
    } else {
        Default::default()
    };
    let record = RolloutRecord {
        digest,
        revision: input.revision.map(str::to_string),
        candidate,
        stage: 0,
        since: input.now,
        started: input.now,
        state: RolloutState::Progressing,
        baseline,
        shifting: true,
        approved: false,
        reason: None,
        scale,
    };
    let first = next_stage(input.policy, &record, declared, None);
    let mut decision = shift_to(input, record, declared, first);
    if let RecordWrite::Write { record, .. } = &decision.record {
        let mut before = record.clone();
        before.shifting = true;
        decision.record_before = Some(before);
    }
    decision
}

fn continue_rollout(input: &Input<'_>, record: &RolloutRecord, declared: &Weights) -> Decision {
    let steps = input.policy.steps.len();
    match record.state {
        RolloutState::Succeeded => return Decision::new(Status::Done),
        RolloutState::Failed => {
            let reason = record
                .reason
                .clone()
                .unwrap_or_else(|| "the rollout failed".to_string());
            return Decision {
                endpoint: Some(held(input.policy, input.desired, input.live, record)),
                ..Decision::new(Status::Held { reason })
            };
        }
        RolloutState::Paused => {
            return Decision {
                endpoint: Some(at_stage_endpoint(input, record, declared, record.stage)),
                ..Decision::new(Status::Paused {
                    stage: record.stage,
                    reason: record.reason.clone().unwrap_or_default(),
                })
            };
        }
        RolloutState::Progressing => {}
    }
    if record.stage >= steps {
        // The declared traffic was applied; the record may not have been written yet.
        return shift_to(input, record.clone(), declared, steps);
    }
    if let Some(deadline) = input.policy.deadline
        && elapsed(record.started, input.now) > deadline
    {
        let reason = format!(
            "deadline of {} passed at stage {}",
            humantime::format_duration(deadline),
            record.stage + 1
        );
        return fail(input, record, reason, Vec::new());
    }
    match input.live.deployments.get(&record.candidate) {
        Some(d) if d.state.is_ready() => {}
        Some(d) if d.state.is_terminal() => {
            let reason = format!(
                "candidate {} is no longer ready at stage {}",
                record.candidate,
                record.stage + 1
            );
            return fail(input, record, reason, Vec::new());
        }
        Some(_) => {} // provisioning: the planner waits for it before any shift
        None if record.shifting && record.stage == 0 => {
            // The first record is written before the plan creates the candidate, so a crash in
            // between leaves a record whose candidate was never created, and traffic that never
            // moved: create it now (the planner waits for it before the shift).
            return shift_to(input, record.clone(), declared, 0);
        }
        None => {
            let reason = format!("candidate {} disappeared", record.candidate);
            return fail(input, record, reason, Vec::new());
        }
    }
    let stage = record.stage;
    let at_stage = traffic_at(input.policy, record, declared, stage);
    let live = effective(&input.live.traffic);
    if record.shifting {
        // Written before a shift that may or may not have happened: (re)apply the stage, and
        // its bake starts once traffic is there.
        return shift_to(input, record.clone(), declared, stage);
    }
    let mirror_moved = mirror_at(input.policy, record, stage)
        .is_some_and(|m| m != effective(&input.live.mirror_traffic));
    if live != effective(&at_stage) || mirror_moved {
        // Traffic moved after the last record: the next stage was reached but not recorded
        // (adopt it; its bake starts now), or someone changed it (go back; the bake restarts).
        let next = next_stage(input.policy, record, declared, Some(stage));
        let next_traffic = traffic_at(input.policy, record, declared, next);
        if live == effective(&next_traffic) {
            return shift_to(input, record.clone(), declared, next);
        }
        return shift_to(input, record.clone(), declared, stage);
    }
    let spec = &input.policy.steps[stage];
    let baked = elapsed(record.since, input.now);
    let endpoint = at_stage_endpoint(input, record, declared, stage);
    if baked < spec.bake {
        let remaining = spec.bake - baked;
        return Decision {
            endpoint: Some(endpoint),
            wait: Some(remaining),
            ..Decision::new(Status::Baking {
                stage,
                remaining,
                why: "bake".to_string(),
            })
        };
    }
    let signals = gates::signals_for(input.policy, &spec.gates);
    let window = Window {
        start: record.since,
        end: input.now,
    };
    // A person's `rollout resume` approved this stage: its pause, or its failed gate.
    let judged = !record.approved;
    let baseline = primary_baseline(record);
    let read = (judged && !signals.is_empty() && input.readings.is_none()).then(|| {
        let mut deployments = vec![record.candidate.clone()];
        deployments.extend(baseline.clone());
        MetricsRequest {
            endpoint: input.desired.name.clone(),
            deployments,
            signals: signals.clone(),
            window,
        }
    });
    let smoke = (judged && spec.smoke && input.smoke.is_none()).then(|| SmokeRequest {
        endpoint: input.desired.name.clone(),
        deployment: record.candidate.clone(),
    });
    if read.is_some() || smoke.is_some() {
        return Decision {
            endpoint: Some(endpoint),
            read,
            smoke,
            ..Decision::new(Status::Evaluating { stage })
        };
    }
    // The smoke gate judges first: a wrong answer fails the stage whatever the metrics say.
    let smoke_verdict = input.smoke.filter(|_| judged && spec.smoke).map(|run| {
        let files = input
            .desired
            .deployments
            .get(&record.candidate)
            .and_then(|d| d.test.as_ref())
            .map(|t| t.files())
            .unwrap_or_default();
        Verdict::smoke(run, files, window)
    });
    if let Some(v) = &smoke_verdict
        && v.result == GateResult::Fail
    {
        let reason = format!("gate failed at stage {}: {}", stage + 1, v.describe());
        return on_failure(
            input,
            record,
            reason,
            vec![v.clone()],
            input.policy.on_failure,
        );
    }
    let verdicts = if signals.is_empty() || !judged {
        smoke_verdict.into_iter().collect()
    } else {
        let readings = input.readings.expect("asked for above");
        let verdicts = gates::evaluate(
            &spec.gates,
            readings,
            &record.candidate,
            baseline.as_deref(),
            window,
        );
        let verdicts: Vec<Verdict> = smoke_verdict.into_iter().chain(verdicts).collect();
        let requests = gates::candidate_requests(readings, &record.candidate).unwrap_or(0.0);
        let short = input.policy.min_requests > 0 && requests < input.policy.min_requests as f64;
        let no_data = verdicts.iter().any(|v| v.result == GateResult::NoData);
        if verdicts.iter().any(|v| v.result == GateResult::Fail) && !short {
            let failed: Vec<String> = verdicts
                .iter()
                .filter(|v| v.result == GateResult::Fail)
                .map(Verdict::describe)
                .collect();
            let reason = format!("gate failed at stage {}: {}", stage + 1, failed.join("; "));
            return on_failure(input, record, reason, verdicts, input.policy.on_failure);
        }
        if short || no_data {
            let limit = input.policy.max_bake.unwrap_or(spec.bake).max(spec.bake);
            let why = if short {
                format!(
                    "waiting for data: {} of {} requests",
                    requests, input.policy.min_requests
                )
            } else {
                "waiting for data: a gate has no value yet".to_string()
            };
            if baked < limit {
                let remaining = limit - baked;
                return Decision {
                    endpoint: Some(endpoint),
                    wait: Some(remaining.min(EXTEND_POLL)),
                    verdicts,
                    ..Decision::new(Status::Baking {
                        stage,
                        remaining,
                        why,
                    })
                };
            }
            let reason = format!(
                "too little data at stage {} after {}: {}",
                stage + 1,
                humantime::format_duration(limit),
                why.trim_start_matches("waiting for data: ")
            );
            return on_failure(input, record, reason, verdicts, input.policy.on_no_data);
        }
        verdicts
    };
    if spec.pause && !record.approved {
        let mut paused = record.clone();
        paused.state = RolloutState::Paused;
        let reason = format!(
            "stage {} passed; waiting for `flightdeck rollout resume`",
            stage + 1
        );
        paused.reason = Some(reason.clone());
        return Decision {
            endpoint: Some(endpoint),
            record: RecordWrite::Write {
                record: paused,
                stamp: false,
            },
            verdicts,
            ..Decision::new(Status::Paused { stage, reason })
        };
    }
    let next = next_stage(input.policy, record, declared, Some(stage));
    let mut decision = shift_to(input, record.clone(), declared, next);
    decision.verdicts = verdicts;
    decision
}

fn on_failure(
    input: &Input<'_>,
    record: &RolloutRecord,
    reason: String,
    verdicts: Vec<Verdict>,
    action: OnFailure,
) -> Decision {
    match action {
        OnFailure::Rollback => fail(input, record, reason, verdicts),
        OnFailure::Pause => {
            let mut paused = record.clone();
            paused.state = RolloutState::Paused;
            paused.reason = Some(reason.clone());
            let declared = input
                .desired
                .traffic
                .as_ref()
                .map(effective)
                .unwrap_or_default();
            Decision {
                endpoint: Some(at_stage_endpoint(input, record, &declared, record.stage)),
                record: RecordWrite::Write {
                    record: paused,
                    stamp: false,
                },
                verdicts,
                ..Decision::new(Status::Paused {
                    stage: record.stage,
                    reason,
                })
            }
        }
    }
}

fn fail(
    input: &Input<'_>,
    record: &RolloutRecord,
    reason: String,
    verdicts: Vec<Verdict>,
) -> Decision {
    let mut decision = abandon(input, record, reason);
    decision.verdicts = verdicts;
    decision
}

/// Applies `stage` (the number of steps means the declared traffic) and records it.
fn shift_to(
    input: &Input<'_>,
    mut record: RolloutRecord,
    declared: &Weights,
    stage: usize,
) -> Decision {
    let steps = input.policy.steps.len();
    let moved = stage != record.stage;
    record.stage = stage;
    record.approved = record.approved && !moved;
    record.shifting = false;
    record.reason = None;
    if stage >= steps {
        record.state = RolloutState::Succeeded;
        return Decision {
            record: RecordWrite::Write {
                record,
                stamp: true,
            },
            ..Decision::new(Status::Completing)
        };
    }
    Decision {
        endpoint: Some(at_stage_endpoint(input, &record, declared, stage)),
        record: RecordWrite::Write {
            record,
            stamp: true,
        },
        ..Decision::new(Status::Shifting { stage })
    }
}

/// The first stage after `after` (or the first at all) that routes more to the candidate than
/// the baseline did and less than declared; the number of steps when none is left.
fn next_stage(
    policy: &RolloutPolicy,
    record: &RolloutRecord,
    declared: &Weights,
    after: Option<usize>,
) -> usize {
    let from = after.map_or(0, |s| s + 1);
    (from..policy.steps.len())
        .find(|&i| match &policy.steps[i].target {
            StageTarget::Weight(w) => {
                let base = record.baseline.get(&record.candidate).copied().unwrap_or(0);
                let goal = declared.get(&record.candidate).copied().unwrap_or(0);
                *w > base && *w < goal
            }
            StageTarget::Traffic(_) => true,
            // Only first, and never for a candidate that already takes live traffic [AML R5].
            StageTarget::Mirror(_) => {
                after.is_none() && record.baseline.get(&record.candidate).copied().unwrap_or(0) == 0
            }
        })
        .unwrap_or(policy.steps.len())
}

/// The traffic of `stage` (the declared traffic past the last step).
pub fn traffic_at(
    policy: &RolloutPolicy,
    record: &RolloutRecord,
    declared: &Weights,
    stage: usize,
) -> Weights {
    match policy.steps.get(stage).map(|s| &s.target) {
        None => declared.clone(),
        Some(StageTarget::Traffic(map)) => effective(map),
        Some(StageTarget::Weight(w)) => weighted(&record.baseline, &record.candidate, *w),
        Some(StageTarget::Mirror(_)) => effective(&record.baseline),
    }
}

/// The mirror traffic of `stage`: the candidate at the mirror stage's percent; `None` at other
/// stages (the declared mirror, from which the planner drops a deployment that takes live
/// traffic before it routes to it, [AML R5]).
pub fn mirror_at(policy: &RolloutPolicy, record: &RolloutRecord, stage: usize) -> Option<Weights> {
    match policy.steps.get(stage).map(|s| &s.target) {
        Some(StageTarget::Mirror(p)) => Some([(record.candidate.clone(), *p)].into()),
        _ => None,
    }
}

/// The declared endpoint at `stage`: its traffic and, at the mirror stage, its mirror.
fn at_stage_endpoint(
    input: &Input<'_>,
    record: &RolloutRecord,
    declared: &Weights,
    stage: usize,
) -> Endpoint {
    let traffic = traffic_at(input.policy, record, declared, stage);
    let mut endpoint = staged(input.desired, input.live, &traffic);
    if let Some(mirror) = mirror_at(input.policy, record, stage) {
        endpoint.mirror_traffic = Some(mirror);
    }
    if input.policy.scale_with_traffic {
        scale::set_stage(&mut endpoint, record, input.desired, &traffic);
    }
    endpoint
}

/// The candidate at `weight`, the other baseline deployments sharing the rest in proportion to
/// their baseline weights (largest remainder, ties by name), so the map sums to 100.
pub fn weighted(baseline: &Weights, candidate: &str, weight: u32) -> Weights {
    let weight = weight.min(100);
    let others: Vec<(&String, u32)> = baseline
        .iter()
        .filter(|(d, w)| d.as_str() != candidate && **w > 0)
        .map(|(d, w)| (d, *w))
        .collect();
    let total: u64 = others.iter().map(|(_, w)| u64::from(*w)).sum();
    let mut out = Weights::new();
    out.insert(candidate.to_string(), weight);
    if total == 0 {
        out.insert(candidate.to_string(), 100);
        return out;
    }
    let rest = u64::from(100 - weight);
    let mut shares: Vec<(&String, u64, u64)> = others
        .iter()
        .map(|(d, w)| {
            let exact = rest * u64::from(*w);
            (*d, exact / total, exact % total)
        })
        .collect();
    let mut left = rest - shares.iter().map(|(_, s, _)| s).sum::<u64>();
    shares.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(b.0)));
    for share in shares.iter_mut() {
        if left == 0 {
            break;
        }
        share.1 += 1;
        left -= 1;
    }
    for (d, s, _) in shares {
        out.insert(d.clone(), s as u32);
    }
    effective(&out)
}

/// Every `traffic` stage must sum to 100 and name only declared or baseline deployments.
fn check_traffic_stages(input: &Input<'_>, declared: &Weights) -> Result<(), String> {
    for (i, step) in input.policy.steps.iter().enumerate() {
        if let StageTarget::Traffic(map) = &step.target {
            let sum: u64 = map.values().map(|w| u64::from(*w)).sum();
            if sum != 100 {
                return Err(format!(
                    "endpoint {}: rollout stage {} routes {} (sums to {sum}, expected 100)",
                    input.desired.name,
                    i + 1,
                    weights_display(map)
                ));
            }
            for (d, w) in map {
                let known = input.desired.deployments.contains_key(d)
                    || declared.contains_key(d)
                    || input.live.deployments.contains_key(d);
                if *w > 0 && !known {
                    return Err(format!(
                        "endpoint {}: rollout stage {} routes to {d}, which is neither declared \
                         nor live",
                        input.desired.name,
                        i + 1
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The baseline deployment a relative gate compares with: the one that held the most traffic.
fn primary_baseline(record: &RolloutRecord) -> Option<String> {
    record
        .baseline
        .iter()
        .filter(|(d, w)| d.as_str() != record.candidate && **w > 0)
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(d, _)| d.clone())
}

/// The endpoint of a stage: `staged`, with the instance counts following the weights under
/// `scale_with_traffic` (`rollout::scale`).
/// The declared endpoint routed as `traffic`: deployments that take traffic but are no longer
/// declared (the baseline, until the last stage) are kept exactly as they are live.
pub fn staged(desired: &Endpoint, live: &LiveEndpoint, traffic: &Weights) -> Endpoint {
    let mut endpoint = desired.clone();
    endpoint.traffic = Some(traffic.clone());
    for (name, weight) in traffic {
        if *weight == 0 || endpoint.deployments.contains_key(name) {
            continue;
        }
        if let Some(d) = live.deployments.get(name) {
            endpoint.deployments.insert(
                name.clone(),
                Deployment {
                    name: name.clone(),
                    settings: d.settings.clone(),
                    test: None,
                },
            );
        }
    }
    endpoint
}

/// A failed desired state, held at its baseline (a rollback interrupted before it finished is
/// completed here): deployments that exist stay as they are, nothing new is created.
fn held(
    policy: &RolloutPolicy,
    desired: &Endpoint,
    live: &LiveEndpoint,
    record: &RolloutRecord,
) -> Endpoint {
    let mut endpoint = staged(desired, live, &record.baseline);
    if !policy.keep_failed && record.baseline.get(&record.candidate).copied().unwrap_or(0) == 0 {
        endpoint.deployments.remove(&record.candidate);
    }
    endpoint
        .deployments
        .retain(|name, _| live.deployments.contains_key(name));
    for (name, d) in &live.deployments {
        if let Some(kept) = endpoint.deployments.get_mut(name) {
            kept.settings = d.settings.clone();
        }
    }
    // A rollback interrupted before its apply may have left the mirror to the candidate.
    endpoint.mirror_traffic = Some(without(&live.mirror_traffic, &record.candidate));
    endpoint
}

/// `mirror` without `candidate` (and without zero entries).
fn without(mirror: &Weights, candidate: &str) -> Weights {
    let mut out = effective(mirror);
    out.remove(candidate);
    out
}

fn elapsed(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or(Duration::ZERO)
}
