//! Model-based property tests of the planner: for random (desired, live) pairs, execute the plan
//! step by step on the in-memory backend (which enforces the platform's rules) and check the
//! traffic-safety invariants after every step; at the end live equals desired and re-planning
//! is empty; plans are deterministic.

use std::collections::{BTreeMap, BTreeSet};

use flightdeck::backend::memory::apply_step;
use flightdeck::model::*;
use flightdeck::plan::{Action, PlanOptions, diff, plan};
use proptest::prelude::*;

const DEPLOYMENTS: &[&str] = &["blue", "green", "red", "teal"];
const ENDPOINTS: &[&str] = &["ep-a", "ep-b", "ep-c"];
/// `drift.ignore` names that the generated settings touch.
const IGNORABLE: &[&str] = &[
    "instance_count",
    "description",
    "model",
    "instance_type",
    "readiness_probe",
    "traffic",
    "mirror_traffic",
    "auth_mode",
];

pub(crate) fn settings() -> impl Strategy<Value = DeploymentSettings> {
    (
        prop::sample::select(vec!["azureml:m:1", "azureml:m:2"]),
        // Mostly the same instance type: a change of it on a busy deployment is refused.
        prop_oneof![9 => Just("Standard_DS3_v2"), 1 => Just("Standard_F4s_v2")],
        1u32..4,
        prop::option::of(prop::sample::select(vec!["v1", "v2"])),
        prop::option::of(1u32..20),
    )
        .prop_map(|(model, itype, count, desc, period)| DeploymentSettings {
            model: Some(AssetRef::parse(model)),
            instance_type: Some(itype.to_string()),
            instance_count: Some(count),
            description: desc.map(str::to_string),
            readiness_probe: period.map(|p| Probe {
                period: Some(p),
                ..Probe::default()
            }),
            ..DeploymentSettings::default()
        })
}

/// A split of 100 over `names` (some may get 0), or empty.
fn split(names: Vec<String>) -> impl Strategy<Value = Weights> {
    let n = names.len();
    (prop::collection::vec(0u32..=100, n), any::<bool>()).prop_map(move |(raw, empty)| {
        let total: u32 = raw.iter().sum();
        if empty || n == 0 || total == 0 {
            return Weights::new();
        }
        let mut w: Vec<u32> = raw.iter().map(|r| r * 100 / total).collect();
        let short = 100 - w.iter().sum::<u32>();
        let max = (0..n).max_by_key(|i| raw[*i]).expect("non-empty");
        w[max] += short;
        names.iter().cloned().zip(w).collect()
    })
}

fn names_subset(min: usize) -> impl Strategy<Value = Vec<String>> {
    prop::sample::subsequence(DEPLOYMENTS.to_vec(), min..=DEPLOYMENTS.len())
        .prop_map(|v| v.into_iter().map(str::to_string).collect())
}

fn test_spec() -> TestSpec {
    TestSpec {
        requests: vec![flightdeck::model::TestRequest::new(
            "sample-request.json",
            "{}",
        )],
        expect_status: None,
        expect_body_contains: None,
        ..Default::default()
    }
}

fn desired_endpoint(name: &'static str) -> impl Strategy<Value = Endpoint> {
    names_subset(1)
        .prop_flat_map(|names| {
            let n = names.len();
            (
                Just(names.clone()),
                prop::collection::vec((settings(), any::<bool>()), n),
                split(names.clone()),
                prop::option::of((prop::sample::select(names), 1u32..=50)),
                0u8..10,
            )
        })
        .prop_map(move |(names, sets, traffic, mirror, unmanaged)| {
            let deployments = names
                .iter()
                .zip(sets)
                .map(|(n, (s, tested))| {
                    let d = Deployment {
                        name: n.clone(),
                        settings: Box::new(s),
                        test: tested.then(test_spec),
                    };
                    (n.clone(), d)
                })
                .collect();
            // Mirror only to a deployment without live traffic (R5, enforced by validation).
            let mirror_traffic = mirror
                .filter(|(m, _)| !effective(&traffic).contains_key(m))
                .map(|(m, w)| Weights::from([(m, w)]));
            Endpoint {
                name: name.to_string(),
                settings: EndpointSettings {
                    auth_mode: Some(AuthMode::Key),
                    ..EndpointSettings::default()
                },
                traffic: (unmanaged != 0).then_some(traffic),
                mirror_traffic: if unmanaged == 1 {
                    None
                } else {
                    Some(mirror_traffic.unwrap_or_default())
                },
                deployments,
            }
        })
}

fn state() -> impl Strategy<Value = DeploymentState> {
    prop_oneof![
        6 => Just(DeploymentState::Ready),
        1 => Just(DeploymentState::Provisioning),
        1 => Just(DeploymentState::Failed { message: "OutOfQuota".into() }),
    ]
}

fn live_endpoint(name: &'static str) -> impl Strategy<Value = LiveEndpoint> {
    names_subset(0)
        .prop_flat_map(|names| {
            let n = names.len();
            (
                Just(names),
                prop::collection::vec((settings(), state()), n),
                any::<prop::sample::Index>(),
                1u32..=50,
                any::<bool>(),
            )
        })
        .prop_flat_map(move |(names, sets, pick, mirror_w, mirror_on)| {
            let deployments: BTreeMap<String, LiveDeployment> = names
                .iter()
                .zip(sets)
                .map(|(n, (s, st))| {
                    let d = LiveDeployment {
                        name: n.clone(),
                        settings: Box::new(s),
                        state: st,
                        phase: None,
                    };
                    (n.clone(), d)
                })
                .collect();
            let ready: Vec<String> = deployments
                .values()
                .filter(|d| d.state.is_ready())
                .map(|d| d.name.clone())
                .collect();
            (
                Just(deployments),
                split(ready.clone()),
                Just((ready, pick, mirror_w, mirror_on)),
            )
        })
        .prop_map(
            move |(deployments, traffic, (ready, pick, mirror_w, mirror_on))| {
                let idle: Vec<&String> = ready
                    .iter()
                    .filter(|n| !effective(&traffic).contains_key(*n))
                    .collect();
                let mirror_traffic = if mirror_on && !idle.is_empty() {
                    Weights::from([(pick.get(&idle).to_string(), mirror_w)])
                } else {
                    Weights::new()
                };
                LiveEndpoint {
                    name: name.to_string(),
                    settings: EndpointSettings {
                        auth_mode: Some(AuthMode::Key),
                        ..EndpointSettings::default()
                    },
                    traffic,
                    mirror_traffic,
                    deployments,
                    scoring_uri: None,
                    busy: None,
                    problems: Vec::new(),
                    rollout: None,
                }
            },
        )
}

pub(crate) fn environment() -> Environment {
    Environment {
        name: "prop".into(),
        target: Target::StateFile {
            path: "live.json".into(),
        },
        drift: DriftPolicy::default(),
        rollout: Default::default(),
        slots: Default::default(),
        promotion: Default::default(),
    }
}

fn desired_state() -> impl Strategy<Value = DesiredState> {
    (
        prop::option::of(desired_endpoint(ENDPOINTS[0])),
        prop::option::of(desired_endpoint(ENDPOINTS[1])),
        desired_endpoint(ENDPOINTS[2]),
    )
        .prop_map(|(a, b, c)| DesiredState {
            environment: environment(),
            endpoints: [a, b, Some(c)]
                .into_iter()
                .flatten()
                .map(|e| (e.name.clone(), e))
                .collect(),
        })
}

fn live_state() -> impl Strategy<Value = LiveState> {
    (
        prop::option::of(live_endpoint(ENDPOINTS[0])),
        prop::option::of(live_endpoint(ENDPOINTS[1])),
        prop::option::of(live_endpoint(ENDPOINTS[2])),
    )
        .prop_map(|(a, b, c)| LiveState {
            endpoints: [a, b, c]
                .into_iter()
                .flatten()
                .map(|e| (e.name.clone(), e))
                .collect(),
            taken: Vec::new(),
        })
}

/// The traffic-safety invariants, checked after every step.
pub(crate) fn check_invariants(live: &LiveState) -> Result<(), String> {
    for e in live.endpoints.values() {
        let sum = weight_sum(&e.traffic);
        if sum != 0 && sum != 100 {
            return Err(format!("{}: traffic sums to {sum}", e.name));
        }
        for (what, weights) in [("traffic", &e.traffic), ("mirror", &e.mirror_traffic)] {
            for name in effective(weights).keys() {
                match e.deployments.get(name) {
                    None => return Err(format!("{}: {what} to missing {name}", e.name)),
                    Some(d) if !d.state.is_ready() => {
                        return Err(format!("{}: {what} to not-ready {name}", e.name));
                    }
                    Some(_) => {}
                }
            }
        }
        let mirror = effective(&e.mirror_traffic);
        if mirror.len() > 1 || weight_sum(&mirror) > 50 {
            return Err(format!("{}: mirror {mirror:?} breaks R3/R4", e.name));
        }
        if mirror.keys().any(|m| effective(&e.traffic).contains_key(m)) {
            return Err(format!("{}: mirror to a deployment with traffic", e.name));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn every_step_keeps_traffic_safe_and_the_end_state_is_the_desired_state(
        desired in desired_state(),
        live in live_state(),
        prune in any::<bool>(),
    ) {
        let opts = PlanOptions { prune, ignore: vec![] };
        let Ok(p) = plan(&desired, &live, &opts, flightdeck::backend::profile_of(&desired.environment.target)) else {
            // Refusals are only for create-only changes on busy deployments or deleting a
            // deployment that unmanaged traffic still uses; nothing is applied then.
            return Ok(());
        };
        let mut state = live.clone();
        for step in &p.steps {
            let had_traffic: BTreeSet<String> = state
                .endpoints
                .get(&step.endpoint)
                .map(|e| effective(&e.traffic).into_keys().collect())
                .unwrap_or_default();
            if let Action::DeleteDeployment { deployment } = &step.action {
                prop_assert!(!had_traffic.contains(deployment), "deleting {deployment} with traffic");
            }
            apply_step(&mut state, step, &BTreeSet::new())
                .map_err(|e| TestCaseError::fail(format!("step {step:?} failed: {e}")))?;
            check_invariants(&state).map_err(TestCaseError::fail)?;
        }
        let again = plan(&desired, &state, &opts, flightdeck::backend::profile_of(&desired.environment.target)).expect("re-plan has no refusals");
        prop_assert!(again.steps.is_empty(), "re-plan not empty: {:#?}", again.steps);
        for (name, want) in &desired.endpoints {
            let have = &state.endpoints[name];
            let declared: BTreeSet<&String> = want.deployments.keys().collect();
            let live_names: BTreeSet<&String> = have.deployments.keys().collect();
            prop_assert_eq!(declared, live_names);
            if let Some(t) = &want.traffic {
                prop_assert_eq!(effective(t), effective(&have.traffic));
            }
            if let Some(m) = &want.mirror_traffic {
                prop_assert_eq!(effective(m), effective(&have.mirror_traffic));
            }
            prop_assert!(have.deployments.values().all(|d| d.state.is_ready()));
        }
        if prune {
            prop_assert!(state.endpoints.keys().all(|k| desired.endpoints.contains_key(k)));
        }
    }

    #[test]
    fn plan_and_diff_agree_on_no_changes_for_every_drift_ignore(
        desired in desired_state(),
        live in live_state(),
        prune in any::<bool>(),
        ignore in prop::sample::subsequence(IGNORABLE.to_vec(), 0..=IGNORABLE.len()),
    ) {
        let opts = PlanOptions { prune, ignore: ignore.iter().map(|s| s.to_string()).collect() };
        let no_steps = plan(&desired, &live, &opts, flightdeck::backend::profile_of(&desired.environment.target)).is_ok_and(|p| p.steps.is_empty());
        let diffs = diff::diff(&desired, &live, &opts, flightdeck::backend::profile_of(&desired.environment.target));
        let no_differences = diffs.iter().all(|d| d.diff.is_empty());
        prop_assert_eq!(
            no_steps, no_differences,
            "ignore {:?}: plan {:#?}\ndiff {}", ignore, plan(&desired, &live, &opts, flightdeck::backend::profile_of(&desired.environment.target)), diff::text(&diffs)
        );
        // The notes about ignored Git changes are the same in both.
        if let Ok(p) = plan(&desired, &live, &opts, flightdeck::backend::profile_of(&desired.environment.target)) {
            let key = |n: &flightdeck::plan::Note| (n.endpoint.clone(), n.deployment.clone(), n.message.clone());
            let plan_notes: BTreeSet<_> = p.notes.iter().filter(|n| n.message.contains("drift.ignore")).map(key).collect();
            let diff_notes: BTreeSet<_> = diffs.iter().flat_map(|d| &d.notes).filter(|n| n.message.contains("drift.ignore")).map(key).collect();
            prop_assert_eq!(plan_notes, diff_notes);
        }
    }

    #[test]
    fn each_endpoints_steps_are_sorted_by_phase(
        desired in desired_state(),
        live in live_state(),
        prune in any::<bool>(),
    ) {
        let opts = PlanOptions { prune, ignore: vec![] };
        let profile = flightdeck::backend::profile_of(&desired.environment.target);
        let Ok(p) = plan(&desired, &live, &opts, profile) else { return Ok(()) };
        for (endpoint, steps) in p.by_endpoint() {
            let phases: Vec<_> = steps.iter().map(|s| s.phase).collect();
            prop_assert!(phases.is_sorted(), "{endpoint}: phases out of order: {phases:?}");
        }
    }

    #[test]
    fn plans_are_deterministic(desired in desired_state(), live in live_state()) {
        let opts = PlanOptions::default();
        prop_assert_eq!(plan(&desired, &live, &opts, flightdeck::backend::profile_of(&desired.environment.target)), plan(&desired.clone(), &live.clone(), &opts, flightdeck::backend::profile_of(&desired.clone().environment.target)));
    }

    #[test]
    fn a_deployment_is_tested_before_it_first_takes_traffic(
        desired in desired_state(),
        live in live_state(),
    ) {
        let Ok(p) = plan(&desired, &live, &PlanOptions::default(), flightdeck::backend::profile_of(&desired.environment.target)) else { return Ok(()) };
        for (i, step) in p.steps.iter().enumerate() {
            let Action::SetTraffic { traffic } = &step.action else { continue };
            let before = live
                .endpoints
                .get(&step.endpoint)
                .map(|e| effective(&e.traffic))
                .unwrap_or_default();
            for name in effective(traffic).keys().filter(|n| !before.contains_key(*n)) {
                let tested = desired.endpoints[&step.endpoint].deployments[name].test.is_some();
                if tested {
                    let gate = p.steps[..i].iter().any(|s| {
                        s.endpoint == step.endpoint
                            && matches!(&s.action, Action::TestDeployment { deployment, .. } if deployment == name)
                    });
                    prop_assert!(gate, "{name} takes traffic without its test");
                }
            }
        }
    }
}
