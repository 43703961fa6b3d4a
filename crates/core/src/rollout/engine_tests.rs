//! Model-based tests of the rollout engine: the engine decides, the real planner plans its
//! endpoint, the in-memory platform (which enforces Azure ML's rules) applies each step, and
//! the traffic-safety invariants are checked after every step of every stage. A random "crash"
//! drops the record write after an apply, as a killed process would; the rollout must still
//! converge without skipping bake time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use proptest::prelude::*;

use super::engine::{self, Decision, Input, RecordWrite, Status};
use super::gates::GateResult;
use super::policy::{Comparison, Gate, OnFailure, RolloutPolicy, Stage, StageTarget, Threshold};
use super::record::{RolloutRecord, RolloutState};
use crate::backend::memory::apply_step;
use crate::metrics::{Reading, Readings, Signal};
use crate::model::*;
use crate::plan::{PlanOptions, plan, profile::NEUTRAL};

const EP: &str = "ep";

fn settings(model: &str) -> Box<DeploymentSettings> {
    Box::new(DeploymentSettings {
        model: Some(AssetRef::parse(model)),
        instance_type: Some("Standard_DS3_v2".into()),
        instance_count: Some(1),
        ..DeploymentSettings::default()
    })
}

fn live_with(traffic: &[(&str, u32)]) -> LiveState {
    let deployments = traffic
        .iter()
        .map(|(d, _)| {
            let live = LiveDeployment {
                name: d.to_string(),
                settings: settings("azureml:m:1"),
                state: DeploymentState::Ready,
                phase: None,
            };
            (d.to_string(), live)
        })
        .collect();
    let endpoint = LiveEndpoint {
        name: EP.into(),
        settings: EndpointSettings::default(),
        traffic: traffic.iter().map(|(d, w)| (d.to_string(), *w)).collect(),
        mirror_traffic: Weights::new(),
        deployments,
        scoring_uri: None,
        busy: None,
        problems: Vec::new(),
        rollout: None,
    };
    LiveState {
        endpoints: [(EP.to_string(), endpoint)].into(),
        taken: Vec::new(),
    }
}

/// Green (a new model) replaces blue: `green: 100`, blue no longer declared.
fn desired_green() -> Endpoint {
    let green = Deployment {
        name: "green".into(),
        settings: settings("azureml:m:2"),
        test: None,
    };
    Endpoint {
        name: EP.into(),
        settings: EndpointSettings::default(),
        traffic: Some([("green".to_string(), 100)].into()),
        mirror_traffic: None,
        deployments: [("green".to_string(), green)].into(),
    }
}

fn desired_state(endpoint: Endpoint) -> DesiredState {
    DesiredState {
        environment: Environment {
            name: "t".into(),
            target: Target::StateFile {
                path: "live.json".into(),
            },
            drift: DriftPolicy::default(),
            rollout: Default::default(),
            slots: Default::default(),
            promotion: Default::default(),
        },
        endpoints: [(EP.to_string(), endpoint)].into(),
    }
}

fn policy(weights: &[u32], bakes: &[u64], pauses: &[bool], on_failure: OnFailure) -> RolloutPolicy {
    RolloutPolicy {
        steps: weights
            .iter()
            .zip(bakes)
            .zip(pauses)
            .map(|((w, b), p)| Stage {
                target: StageTarget::Weight(*w),
                bake: Duration::from_secs(*b),
                pause: *p,
                gates: vec![Gate {
                    signal: Signal::ErrorRate,
                    comparison: Comparison::Below,
                    threshold: Threshold::Absolute(0.02),
                }],
                smoke: false,
            })
            .collect(),
        min_requests: 0,
        max_bake: None,
        on_no_data: OnFailure::Rollback,
        on_failure,
        deadline: None,
        keep_failed: true,
        scale_with_traffic: false,
    }
}

/// `policy` with a mirror stage of `percent` and `bake` seconds first, gated like the others.
fn with_mirror(mut policy: RolloutPolicy, percent: u32, bake: u64) -> RolloutPolicy {
    let gates = policy.steps[0].gates.clone();
    policy.steps.insert(
        0,
        Stage {
            target: StageTarget::Mirror(percent),
            bake: Duration::from_secs(bake),
            pause: false,
            gates,
            smoke: false,
        },
    );
    policy
}

/// When the mirror to green started and stopped (the end of the run if it never stopped).
fn mirror_span(trace: &Trace, end: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let first = trace
        .mirror
        .iter()
        .position(|(_, m)| m.contains_key("green"))?;
    let stop = trace.mirror[first..]
        .iter()
        .find(|(_, m)| !m.contains_key("green"))
        .map_or(end, |(at, _)| *at);
    Some((trace.mirror[first].0, stop))
}

fn readings(error_rate: f64, deployments: &[String]) -> Readings {
    let window = super::super::metrics::Window {
        start: DateTime::<Utc>::MIN_UTC,
        end: DateTime::<Utc>::MIN_UTC,
    };
    deployments
        .iter()
        .map(|d| {
            let mut by = BTreeMap::new();
            for s in [Signal::ErrorRate, Signal::Requests] {
                let value = if s == Signal::Requests {
                    1000.0
                } else {
                    error_rate
                };
                by.insert(
                    s,
                    Reading {
                        value: Some(value),
                        query: format!("{s} {d}"),
                        window,
                    },
                );
            }
            (d.clone(), by)
        })
        .collect()
}

/// What happened over a whole simulated rollout.
#[derive(Debug, Default)]
struct Trace {
    /// Every live traffic map after every step, with the time.
    traffic: Vec<(DateTime<Utc>, Weights)>,
    /// Every live mirror map after every step, with the time.
    mirror: Vec<(DateTime<Utc>, Weights)>,
    statuses: Vec<Status>,
    evaluations: usize,
    last: Option<Status>,
    /// Every deployment's instance count after every step (with `traffic`).
    counts: Vec<BTreeMap<String, u32>>,
}

fn counts(ep: &LiveEndpoint) -> BTreeMap<String, u32> {
    ep.deployments
        .iter()
        .map(|(d, l)| (d.clone(), l.settings.instance_count.unwrap_or(0)))
        .collect()
}

struct World {
    live: LiveState,
    now: DateTime<Utc>,
    /// Under `scale_with_traffic`: each deployment's full count (at weight 100). After every
    /// step, a deployment that takes `w` has at least `scale::count_at(full, w, 100)`
    /// instances: capacity goes up before traffic, and down only after it left.
    full: BTreeMap<String, u32>,
}

impl World {
    fn endpoint(&self) -> &LiveEndpoint {
        &self.live.endpoints[EP]
    }

    /// Plans `endpoint` with the real planner and applies it step by step on the in-memory
    /// platform, checking the invariants after every step.
    fn apply(&mut self, endpoint: &Endpoint, trace: &mut Trace) -> Result<(), TestCaseError> {
        let desired = desired_state(endpoint.clone());
        let p = plan(&desired, &self.live, &PlanOptions::default(), &NEUTRAL)
            .map_err(|r| TestCaseError::fail(format!("refused: {r:?}")))?;
        for step in &p.steps {
            apply_step(&mut self.live, step, &BTreeSet::new())
                .map_err(|e| TestCaseError::fail(format!("platform refused {step:?}: {e}")))?;
            let ep = self.endpoint();
            let sum = weight_sum(&ep.traffic);
            prop_assert!(sum == 100 || sum == 0, "traffic sums to {sum}");
            for d in effective(&ep.traffic)
                .keys()
                .chain(effective(&ep.mirror_traffic).keys())
            {
                let live = ep.deployments.get(d);
                prop_assert!(
                    live.is_some_and(|l| l.state.is_ready()),
                    "routes to {d}, missing or not ready"
                );
            }
            for (d, w) in effective(&ep.traffic) {
                if let Some(full) = self.full.get(&d) {
                    let need = super::scale::count_at(*full, w, 100);
                    let has = ep.deployments[&d].settings.instance_count.unwrap_or(0);
                    prop_assert!(
                        has >= need,
                        "{d} takes {w}% with {has} instances < {need} after {step:?}"
                    );
                }
            }
            for d in effective(&ep.mirror_traffic).keys() {
                prop_assert!(
                    !effective(&ep.traffic).contains_key(d),
                    "{d} gets live and mirror traffic at once"
                );
            }
            trace.traffic.push((self.now, effective(&ep.traffic)));
            trace.mirror.push((self.now, effective(&ep.mirror_traffic)));
            trace.counts.push(counts(ep));
        }
        let again = plan(&desired, &self.live, &PlanOptions::default(), &NEUTRAL)
            .map_err(|r| TestCaseError::fail(format!("re-plan refused: {r:?}")))?;
        prop_assert!(
            again.steps.is_empty(),
            "re-plan after apply: {:?}",
            again.steps
        );
        Ok(())
    }

    fn write(&mut self, write: &RecordWrite) {
        let ep = self.live.endpoints.get_mut(EP).expect("endpoint");
        match write {
            RecordWrite::Keep => {}
            RecordWrite::Clear => ep.rollout = None,
            RecordWrite::Write { record, stamp } => {
                let mut r = record.clone();
                if *stamp {
                    r.since = self.now;
                }
                ep.rollout = Some(r);
            }
        }
    }
}

/// Runs a rollout to its end. `gate_fails[i]`: the i-th evaluation sees a bad error rate;
/// `crashes[i]`: the i-th record write is lost; a pause is resumed after `resume_after`.
fn simulate(
    policy: &RolloutPolicy,
    desired: &Endpoint,
    start: LiveState,
    gate_fails: &[bool],
    crashes: &[bool],
    resume_after: Duration,
) -> Result<(World, Trace), TestCaseError> {
    let mut full = BTreeMap::new();
    if policy.scale_with_traffic {
        for (d, l) in &start.endpoints[EP].deployments {
            full.insert(d.clone(), l.settings.instance_count.unwrap_or(0));
        }
        for (d, dep) in &desired.deployments {
            full.insert(d.clone(), dep.settings.instance_count.unwrap_or(0));
        }
    }
    let mut world = World {
        live: start,
        now: "2026-12-01T10:00:00Z".parse().unwrap(),
        full,
    };
    let mut trace = Trace::default();
    let mut writes = 0usize;
    for _tick in 0..400 {
        let live_ep = world.endpoint().clone();
        let input = Input {
            policy,
            desired,
            live: &live_ep,
            record: live_ep.rollout.as_ref(),
            revision: Some("abc1234"),
            now: world.now,
            readings: None,
            smoke: None,
        };
        let mut decision: Decision = engine::decide(&input);
        if let Some(read) = &decision.read {
            // A bad candidate stays bad: once failing, every later evaluation (after a crash) fails too.
            let fails = gate_fails
                .get(trace.evaluations)
                .or(gate_fails.last())
                .copied()
                .unwrap_or(false);
            trace.evaluations += 1;
            let r = readings(if fails { 0.5 } else { 0.0 }, &read.deployments);
            decision = engine::decide(&Input {
                readings: Some(&r),
                smoke: None,
                ..input
            });
            prop_assert!(decision.read.is_none(), "asked twice for metrics");
        }
        trace.statuses.push(decision.status.clone());
        let endpoint = decision.endpoint.clone().unwrap_or_else(|| desired.clone());
        match &decision.status {
            Status::Refused(why) => return Err(TestCaseError::fail(why.clone())),
            Status::Done | Status::NotRolling | Status::Held { .. } => {
                world.apply(&endpoint, &mut trace)?;
                world.write(&decision.record);
                trace.last = Some(decision.status.clone());
                return Ok((world, trace));
            }
            _ => {}
        }
        if let Some(before) = &decision.record_before {
            // Lost with a crash: nothing was applied either.
            let crash = crashes.get(writes).copied().unwrap_or(false);
            writes += 1;
            if crash {
                world.now += chrono::Duration::seconds(1);
                continue;
            }
            world.write(&RecordWrite::Write {
                record: before.clone(),
                stamp: false,
            });
        }
        world.apply(&endpoint, &mut trace)?;
        let crash = crashes.get(writes).copied().unwrap_or(false);
        writes += 1;
        if !crash {
            world.write(&decision.record);
        }
        if let Status::Paused { .. } = decision.status {
            // A person resumes after a while (only a stored pause can be resumed).
            world.now += chrono::Duration::from_std(resume_after).unwrap();
            let ep = world.live.endpoints.get_mut(EP).expect("endpoint");
            if let Some(next) = ep.rollout.as_ref().and_then(engine::resume) {
                ep.rollout = Some(next);
            }
            continue;
        }
        let step = decision.wait.unwrap_or(Duration::from_secs(1));
        world.now += chrono::Duration::from_std(step).unwrap();
    }
    Err(TestCaseError::fail(format!(
        "no end after 400 ticks: {:?}",
        trace.statuses.last()
    )))
}

/// How long each distinct traffic map was held before live traffic moved on.
fn holds(trace: &Trace, end: DateTime<Utc>) -> Vec<(Weights, Duration)> {
    let mut out: Vec<(Weights, DateTime<Utc>)> = Vec::new();
    for (at, t) in &trace.traffic {
        if out.last().is_none_or(|(last, _)| last != t) {
            out.push((t.clone(), *at));
        }
    }
    let mut result = Vec::new();
    for i in 0..out.len() {
        let until = out.get(i + 1).map_or(end, |n| n.1);
        result.push((out[i].0.clone(), (until - out[i].1).to_std().unwrap()));
    }
    result
}

fn stages() -> impl Strategy<Value = (Vec<u32>, Vec<u64>, Vec<bool>)> {
    (1usize..=4).prop_flat_map(|n| {
        (
            prop::collection::btree_set(1u32..100, n),
            prop::collection::vec(1u64..900, n),
            prop::collection::vec(prop::bool::weighted(0.2), n),
        )
            .prop_map(|(w, b, p)| (w.into_iter().collect(), b, p))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Every stage: traffic sums to 100, routes only to ready deployments, re-planning after
    /// apply is empty (checked inside `apply`). A passing rollout visits each stage in order,
    /// bakes each at least its `bake` (however many record writes were lost), and ends at the
    /// declared traffic with an empty plan.
    #[test]
    fn a_passing_rollout_visits_every_stage_in_order_and_bakes_each_fully(
        (weights, bakes, pauses) in stages(),
        crashes in prop::collection::vec(prop::bool::weighted(0.3), 0..20),
    ) {
        let policy = policy(&weights, &bakes, &pauses, OnFailure::Rollback);
        let desired = desired_green();
        let (world, trace) = simulate(&policy, &desired, live_with(&[("blue", 100)]), &[], &crashes, Duration::from_secs(60))?;
        prop_assert_eq!(trace.last.clone(), Some(Status::Done), "{:?}", trace.statuses);
        prop_assert_eq!(effective(&world.endpoint().traffic), effective(desired.traffic.as_ref().unwrap()));
        prop_assert!(!world.endpoint().deployments.contains_key("blue"), "blue deleted at the end");
        let held = holds(&trace, world.now);
        let expected: Vec<Weights> = std::iter::once([("blue".to_string(), 100)].into())
            .chain(weights.iter().map(|w| engine::weighted(&[("blue".to_string(), 100)].into(), "green", *w)))
            .chain(std::iter::once(effective(desired.traffic.as_ref().unwrap())))
            .collect();
        let seen: Vec<Weights> = held.iter().map(|(t, _)| t.clone()).collect();
        prop_assert_eq!(&seen, &expected);
        for (i, bake) in bakes.iter().enumerate() {
            prop_assert!(held[i + 1].1 >= Duration::from_secs(*bake),
                "stage {} held {:?} < bake {}s", i + 1, held[i + 1].1, bake);
        }
        let record = world.endpoint().rollout.clone().expect("record");
        prop_assert_eq!(record.state, RolloutState::Succeeded);
    }

    /// A gate that fails at any stage returns traffic to the baseline in one step, keeps the
    /// candidate for inspection, and holds: deciding again plans nothing until Git changes.
    #[test]
    fn a_failed_gate_rolls_back_in_one_step_and_holds_until_git_changes(
        (weights, bakes, pauses) in stages(),
        fail_at in 0usize..4,
        crashes in prop::collection::vec(prop::bool::weighted(0.3), 0..20),
    ) {
        let policy = policy(&weights, &bakes, &pauses, OnFailure::Rollback);
        let fail_at = fail_at % weights.len();
        let mut gate_fails = vec![false; fail_at];
        gate_fails.push(true);
        let desired = desired_green();
        let (world, trace) = simulate(&policy, &desired, live_with(&[("blue", 100)]), &gate_fails, &crashes, Duration::from_secs(60))?;
        let baseline: Weights = [("blue".to_string(), 100)].into();
        let held = matches!(trace.last, Some(Status::Held { .. }));
        prop_assert!(held, "{:?}", trace.statuses);
        prop_assert_eq!(effective(&world.endpoint().traffic), baseline.clone());
        prop_assert!(world.endpoint().deployments.contains_key("green"), "the failed candidate is kept");
        // The candidate never got more than the failing stage's weight (a crash may make a
        // stage be judged again, and fail earlier), and the rollback went straight to baseline.
        let seen: Vec<Weights> = holds(&trace, world.now).into_iter().map(|(t, _)| t).collect();
        let peak = seen.iter().map(|t| t.get("green").copied().unwrap_or(0)).max().unwrap_or(0);
        prop_assert!(peak <= weights[fail_at], "green reached {} > {}", peak, weights[fail_at]);
        prop_assert_eq!(seen.last(), Some(&baseline));
        let record = world.endpoint().rollout.clone().expect("record");
        prop_assert_eq!(record.state, RolloutState::Failed);
        prop_assert!(record.reason.as_deref().unwrap_or("").starts_with("gate failed at stage "), "{:?}", record.reason);
        // Not retried: the same desired state stays held with an empty plan.
        let live_ep = world.endpoint().clone();
        let again = engine::decide(&Input { policy: &policy, desired: &desired, live: &live_ep, record: live_ep.rollout.as_ref(), revision: None, now: world.now + chrono::Duration::hours(1), readings: None, smoke: None });
        let held_again = matches!(again.status, Status::Held { .. });
        prop_assert!(held_again, "{:?}", again.status);
        let p = plan(&desired_state(again.endpoint.unwrap()), &world.live, &PlanOptions::default(), &NEUTRAL).unwrap();
        prop_assert!(p.steps.is_empty(), "{:?}", p.steps);
        // Git changes (a new model): a new rollout starts from the live traffic.
        let mut changed = desired.clone();
        changed.deployments.get_mut("green").unwrap().settings.model = Some(AssetRef::parse("azureml:m:3"));
        let fresh = engine::decide(&Input { policy: &policy, desired: &changed, live: &live_ep, record: live_ep.rollout.as_ref(), revision: None, now: world.now, readings: None, smoke: None });
        let shifting = matches!(fresh.status, Status::Shifting { .. });
        prop_assert!(shifting, "{:?}", fresh.status);
    }

    /// `scale_with_traffic`: at every stage each deployment runs `ceil(full × weight / 100)`
    /// instances (at least 1); the ordering rule (up before the shift, down after it) is checked
    /// after every step inside `apply`. A rollback gives blue back its count, the failed green
    /// keeps its own; a passing rollout ends at the declared count.
    #[test]
    fn with_scale_with_traffic_the_counts_follow_each_stage_scaling_up_before_and_down_after_the_shift(
        (weights, bakes, pauses) in stages(),
        blue_count in 1u32..9,
        green_count in 1u32..9,
        fails in prop::bool::weighted(0.3),
        crashes in prop::collection::vec(prop::bool::weighted(0.3), 0..20),
    ) {
        let mut policy = policy(&weights, &bakes, &pauses, OnFailure::Rollback);
        policy.scale_with_traffic = true;
        let mut desired = desired_green();
        desired.deployments.get_mut("green").unwrap().settings.instance_count = Some(green_count);
        let mut start = live_with(&[("blue", 100)]);
        start.endpoints.get_mut(EP).unwrap().deployments.get_mut("blue").unwrap().settings.instance_count = Some(blue_count);
        let gate_fails = if fails { vec![true] } else { vec![] };
        let (world, trace) = simulate(&policy, &desired, start, &gate_fails, &crashes, Duration::from_secs(60))?;
        // Each stage's traffic is held, at some step, with exactly the stage's counts.
        let full: BTreeMap<&str, u32> = [("blue", blue_count), ("green", green_count)].into();
        let mut i = 0;
        while i < trace.traffic.len() {
            let t = trace.traffic[i].1.clone();
            let mut j = i;
            while j < trace.traffic.len() && trace.traffic[j].1 == t {
                j += 1;
            }
            if weights.iter().any(|w| t.get("green") == Some(w)) {
                let want: BTreeMap<String, u32> = t
                    .iter()
                    .map(|(d, w)| (d.clone(), super::scale::count_at(full[d.as_str()], *w, 100)))
                    .collect();
                let exact = trace.counts[i..j].iter().any(|c| want.iter().all(|(d, n)| c.get(d) == Some(n)));
                prop_assert!(exact, "at {:?} never exactly {:?}: {:?}", t, want, &trace.counts[i..j]);
            }
            i = j;
        }
        let ep = world.endpoint();
        if fails {
            prop_assert!(matches!(trace.last, Some(Status::Held { .. })), "{:?}", trace.statuses);
            prop_assert_eq!(ep.deployments["blue"].settings.instance_count, Some(blue_count));
            let first = super::scale::count_at(green_count, weights[0], 100);
            prop_assert_eq!(ep.deployments["green"].settings.instance_count, Some(first));
        } else {
            prop_assert_eq!(trace.last.clone(), Some(Status::Done), "{:?}", trace.statuses);
            prop_assert_eq!(ep.deployments["green"].settings.instance_count, Some(green_count));
        }
    }

    /// A mirror stage first: green is mirrored (never with live traffic: checked after every
    /// step) for at least its bake while blue keeps 100, then the mirror is dropped in the plan
    /// that gives green its first live weight, and the rollout goes on to the declared traffic.
    #[test]
    fn a_mirror_stage_mirrors_first_then_drops_the_mirror_as_live_weight_begins(
        (weights, bakes, pauses) in stages(),
        percent in 1u32..=50,
        mirror_bake in 1u64..900,
        crashes in prop::collection::vec(prop::bool::weighted(0.3), 0..20),
    ) {
        let policy = with_mirror(policy(&weights, &bakes, &pauses, OnFailure::Rollback), percent, mirror_bake);
        let desired = desired_green();
        let (world, trace) = simulate(&policy, &desired, live_with(&[("blue", 100)]), &[], &crashes, Duration::from_secs(60))?;
        prop_assert_eq!(trace.last.clone(), Some(Status::Done), "{:?}", trace.statuses);
        let (start, stop) = mirror_span(&trace, world.now).expect("green was mirrored");
        prop_assert!((stop - start).to_std().unwrap() >= Duration::from_secs(mirror_bake), "{:?}\n{:?}\n{:?}", trace.mirror, trace.traffic, trace.statuses);
        let mirrored: Vec<&Weights> = trace.mirror.iter().filter(|(_, m)| m.contains_key("green")).map(|(_, m)| m).collect();
        prop_assert!(mirrored.iter().all(|m| m["green"] == percent), "{:?}", mirrored);
        let first_live = trace.traffic.iter().find(|(_, t)| t.contains_key("green")).map(|(at, _)| *at).expect("green got traffic");
        prop_assert!(first_live >= stop, "green took live traffic before the mirror was dropped");
        prop_assert!(effective(&world.endpoint().mirror_traffic).is_empty());
        prop_assert_eq!(effective(&world.endpoint().traffic), effective(desired.traffic.as_ref().unwrap()));
    }

    /// A candidate that fails at the mirror stage is rolled back having never taken live
    /// traffic: the mirror is dropped and the rollout is held.
    #[test]
    fn a_candidate_failing_at_the_mirror_stage_never_takes_live_traffic(
        (weights, bakes, pauses) in stages(),
        percent in 1u32..=50,
        crashes in prop::collection::vec(prop::bool::weighted(0.3), 0..20),
    ) {
        let policy = with_mirror(policy(&weights, &bakes, &pauses, OnFailure::Rollback), percent, 60);
        let desired = desired_green();
        let (world, trace) = simulate(&policy, &desired, live_with(&[("blue", 100)]), &[true], &crashes, Duration::from_secs(60))?;
        let held = matches!(trace.last, Some(Status::Held { .. }));
        prop_assert!(held, "{:?}", trace.statuses);
        prop_assert!(trace.traffic.iter().all(|(_, t)| !t.contains_key("green")), "green took live traffic");
        prop_assert!(mirror_span(&trace, world.now).is_some(), "green was mirrored");
        prop_assert!(effective(&world.endpoint().mirror_traffic).is_empty(), "the mirror is dropped");
        let record = world.endpoint().rollout.clone().expect("record");
        prop_assert!(record.reason.as_deref().unwrap_or("").starts_with("gate failed at stage 1"), "{:?}", record.reason);
    }

    /// Stage weights always split 100 between the candidate and the baseline deployments.
    #[test]
    fn weighted_stages_always_sum_to_100(
        blue in 0u32..=100,
        w in 0u32..=100,
    ) {
        let baseline: Weights = [("blue".to_string(), blue), ("red".to_string(), 100 - blue)].into();
        let t = engine::weighted(&baseline, "green", w);
        prop_assert_eq!(weight_sum(&t), 100);
        prop_assert_eq!(t.get("green").copied().unwrap_or(0), if w == 0 { 0 } else { w });
    }
}

#[test]
fn a_rollout_paused_on_failure_waits_for_a_person_and_goes_on_when_resumed() {
    let mut policy = policy(&[10, 50], &[60, 60], &[false, false], OnFailure::Pause);
    policy.on_failure = OnFailure::Pause;
    let desired = desired_green();
    let (world, trace) = simulate(
        &policy,
        &desired,
        live_with(&[("blue", 100)]),
        &[true],
        &[],
        Duration::from_secs(600),
    )
    .unwrap();
    assert!(
        trace.statuses.iter().any(|s| matches!(s, Status::Paused { reason, .. } if reason.contains("gate failed at stage 1"))),
        "{:?}",
        trace.statuses
    );
    assert_eq!(trace.last, Some(Status::Done));
    assert_eq!(
        effective(&world.endpoint().traffic),
        [("green".to_string(), 100)].into()
    );
}

#[test]
fn too_little_data_extends_the_bake_up_to_max_bake_then_applies_on_no_data() {
    let mut policy = policy(&[10], &[60], &[false], OnFailure::Rollback);
    policy.min_requests = 100;
    policy.max_bake = Some(Duration::from_secs(300));
    let desired = desired_green();
    let live = live_with(&[("blue", 100)]);
    let mut record = RolloutRecord {
        digest: engine::digest(&desired),
        revision: None,
        candidate: "green".into(),
        stage: 0,
        since: "2026-12-01T10:00:00Z".parse().unwrap(),
        started: "2026-12-01T10:00:00Z".parse().unwrap(),
        state: RolloutState::Progressing,
        baseline: [("blue".to_string(), 100)].into(),
        shifting: false,
        approved: false,
        reason: None,
        scale: Default::default(),
    };
    let mut ep = live.endpoints[EP].clone();
    ep.traffic = [("blue".to_string(), 90), ("green".to_string(), 10)].into();
    ep.deployments.insert(
        "green".into(),
        LiveDeployment {
            name: "green".into(),
            settings: settings("azureml:m:2"),
            state: DeploymentState::Ready,
            phase: None,
        },
    );
    let mut few = readings(0.0, &["green".into(), "blue".into()]);
    few.get_mut("green")
        .unwrap()
        .get_mut(&Signal::Requests)
        .unwrap()
        .value = Some(12.0);
    let at = |secs: i64| record.since + chrono::Duration::seconds(secs);
    let decide = |record: &RolloutRecord, now, r: &Readings| {
        engine::decide(&Input {
            policy: &policy,
            desired: &desired,
            live: &ep,
            record: Some(record),
            revision: None,
            now,
            readings: Some(r),
            smoke: None,
        })
    };
    let extended = decide(&record, at(90), &few);
    match &extended.status {
        Status::Baking { why, remaining, .. } => {
            assert_eq!(why, "waiting for data: 12 of 100 requests");
            assert_eq!(*remaining, Duration::from_secs(210));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(extended.wait, Some(engine::EXTEND_POLL));
    let enough = readings(0.0, &["green".into(), "blue".into()]);
    assert!(matches!(
        decide(&record, at(120), &enough).status,
        Status::Completing
    ));
    let given_up = decide(&record, at(301), &few);
    match given_up.status {
        Status::RollingBack { reason } => {
            assert!(
                reason.contains("too little data at stage 1 after 5m"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    record.approved = true;
    let _ = record;
}

#[test]
fn a_relative_latency_gate_catches_a_twice_slower_candidate() {
    let mut policy = policy(&[10], &[60], &[false], OnFailure::Rollback);
    policy.steps[0].gates = vec![Gate {
        signal: Signal::LatencyP99,
        comparison: Comparison::Below,
        threshold: Threshold::RelativeToBaseline(1.2),
    }];
    let r = super::gates::evaluate(
        &policy.steps[0].gates,
        &{
            let mut r = readings(0.0, &[]);
            for (d, v) in [("green", 200.0), ("blue", 100.0)] {
                r.entry(d.to_string()).or_default().insert(
                    Signal::LatencyP99,
                    Reading {
                        value: Some(v),
                        query: String::new(),
                        window: super::super::metrics::Window {
                            start: DateTime::<Utc>::MIN_UTC,
                            end: DateTime::<Utc>::MIN_UTC,
                        },
                    },
                );
            }
            r
        },
        "green",
        Some("blue"),
        super::super::metrics::Window {
            start: DateTime::<Utc>::MIN_UTC,
            end: DateTime::<Utc>::MIN_UTC,
        },
    );
    assert_eq!(r[0].result, GateResult::Fail);
}

#[test]
fn a_candidate_that_already_takes_live_traffic_skips_the_mirror_stage() {
    let policy = with_mirror(policy(&[50], &[60], &[false], OnFailure::Rollback), 10, 60);
    let live = live_with(&[("blue", 90), ("green", 10)]);
    let live_ep = live.endpoints[EP].clone();
    let mut desired = desired_green();
    desired.deployments.get_mut("green").unwrap().settings =
        live_ep.deployments["green"].settings.clone();
    let decision = engine::decide(&Input {
        policy: &policy,
        desired: &desired,
        live: &live_ep,
        record: None,
        revision: None,
        now: "2026-12-01T10:00:00Z".parse().unwrap(),
        readings: None,
        smoke: None,
    });
    assert_eq!(decision.status, Status::Shifting { stage: 1 });
    let endpoint = decision.endpoint.expect("a staged endpoint");
    assert_eq!(
        endpoint.mirror_traffic, None,
        "no mirror to a live deployment"
    );
    assert_eq!(
        endpoint.traffic,
        Some([("blue".to_string(), 50), ("green".to_string(), 50)].into())
    );
}

#[test]
fn the_mirror_stage_keeps_live_traffic_at_the_baseline_and_mirrors_the_candidate() {
    let policy = with_mirror(policy(&[50], &[60], &[false], OnFailure::Rollback), 10, 60);
    let live = live_with(&[("blue", 100)]);
    let live_ep = live.endpoints[EP].clone();
    let decision = engine::decide(&Input {
        policy: &policy,
        desired: &desired_green(),
        live: &live_ep,
        record: None,
        revision: None,
        now: "2026-12-01T10:00:00Z".parse().unwrap(),
        readings: None,
        smoke: None,
    });
    assert_eq!(decision.status, Status::Shifting { stage: 0 });
    let before = decision
        .record_before
        .expect("recorded before the first shift");
    assert!(before.shifting);
    let endpoint = decision.endpoint.expect("a staged endpoint");
    assert_eq!(endpoint.traffic, Some([("blue".to_string(), 100)].into()));
    assert_eq!(
        endpoint.mirror_traffic,
        Some([("green".to_string(), 10)].into())
    );
}
