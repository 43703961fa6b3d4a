//! Property tests of blue/green slot resolution (`flightdeck::slots::resolve`, pure): for
//! random live states of the two slots and a template, the resolved endpoint never routes to a
//! missing or not-ready slot (checked after every step of its plan on the in-memory backend),
//! its traffic sums to 100, and resolving again once the plan is applied is stable: the same
//! slot, and an empty re-plan.

use std::collections::{BTreeMap, BTreeSet};

use flightdeck::backend::memory::apply_step;
use flightdeck::model::*;
use flightdeck::plan::{PlanOptions, plan};
use flightdeck::slots::{AfterSwap, Slots, resolve};
use proptest::prelude::*;

use super::plan_properties::{check_invariants, environment, settings};

const EP: &str = "scoring";
const SLOTS: [&str; 2] = ["blue", "green"];

fn after_swap() -> impl Strategy<Value = AfterSwap> {
    prop_oneof![
        Just(AfterSwap::Keep),
        Just(AfterSwap::ScaleDown),
        Just(AfterSwap::Delete)
    ]
}

/// One slot as it may be live: absent, or running the template or other settings, ready or
/// failed.
#[derive(Clone, Debug)]
enum LiveSlot {
    Absent,
    Present {
        template: bool,
        other: Box<DeploymentSettings>,
        ready: bool,
    },
}

fn live_slot() -> impl Strategy<Value = LiveSlot> {
    prop_oneof![
        1 => Just(LiveSlot::Absent),
        4 => (any::<bool>(), settings(), prop::bool::weighted(0.85)).prop_map(
            |(template, other, ready)| LiveSlot::Present { template, other: Box::new(other), ready }
        ),
    ]
}

/// Declared and live states: the template, each slot's live form, and the live split between
/// the ready slots (`split` percent to the first ready one).
fn case() -> impl Strategy<Value = (DeploymentSettings, [LiveSlot; 2], u32, AfterSwap, bool)> {
    (
        settings(),
        [live_slot(), live_slot()],
        0u32..=100,
        after_swap(),
        any::<bool>(),
    )
}

fn desired(template: &DeploymentSettings, after: AfterSwap) -> DesiredState {
    let mut environment = environment();
    let template = Deployment {
        name: "template".into(),
        settings: Box::new(template.clone()),
        test: None,
    };
    environment.slots.insert(
        EP.into(),
        Slots {
            names: SLOTS.map(str::to_string),
            template_file: "deployments/scoring.yml".into(),
            template,
            after_swap: after,
        },
    );
    let endpoint = Endpoint {
        name: EP.into(),
        settings: EndpointSettings {
            auth_mode: Some(AuthMode::Key),
            ..EndpointSettings::default()
        },
        traffic: None,
        mirror_traffic: None,
        deployments: BTreeMap::new(),
    };
    DesiredState {
        environment,
        endpoints: BTreeMap::from([(EP.to_string(), endpoint)]),
    }
}

fn live(
    template: &DeploymentSettings,
    slots: &[LiveSlot; 2],
    split: u32,
    exists: bool,
) -> LiveState {
    let mut deployments = BTreeMap::new();
    for (name, slot) in SLOTS.iter().zip(slots) {
        if let LiveSlot::Present {
            template: t,
            other,
            ready,
        } = slot
        {
            let settings = if *t {
                template.clone()
            } else {
                (**other).clone()
            };
            let state = if *ready {
                DeploymentState::Ready
            } else {
                DeploymentState::Failed {
                    message: "OutOfQuota".into(),
                }
            };
            let d = LiveDeployment {
                name: name.to_string(),
                settings: Box::new(settings),
                state,
                phase: None,
            };
            deployments.insert(name.to_string(), d);
        }
    }
    // A consistent platform: live traffic only to ready deployments.
    let ready: Vec<&String> = deployments
        .iter()
        .filter(|(_, d)| d.state.is_ready())
        .map(|(n, _)| n)
        .collect();
    let traffic: Weights = match ready.as_slice() {
        [] => Weights::new(),
        [one] => Weights::from([((*one).clone(), 100)]),
        [a, b, ..] => Weights::from([((*a).clone(), split), ((*b).clone(), 100 - split)]),
    };
    if !exists && deployments.is_empty() {
        return LiveState::default();
    }
    let endpoint = LiveEndpoint {
        name: EP.into(),
        settings: EndpointSettings {
            auth_mode: Some(AuthMode::Key),
            ..EndpointSettings::default()
        },
        traffic,
        mirror_traffic: Weights::new(),
        deployments,
        scoring_uri: None,
        busy: None,
        problems: Vec::new(),
        rollout: None,
    };
    LiveState {
        endpoints: BTreeMap::from([(EP.to_string(), endpoint)]),
        taken: Vec::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn a_resolved_slot_endpoint_routes_only_to_ready_slots_and_resolves_again_to_no_change(
        (template, slots, split, after, exists) in case()
    ) {
        let declared = desired(&template, after);
        let live = live(&template, &slots, split, exists);
        let profile = flightdeck::backend::profile_of(&declared.environment.target);
        let mut resolved = declared.clone();
        let Ok(notes) = resolve(&mut resolved, &live, profile) else {
            // Refused only when both slots take traffic and neither runs the template.
            let l = &live.endpoints[EP];
            let takes = |n: &str| l.traffic.get(n).copied().unwrap_or(0) > 0;
            let runs = |n: &str| l.deployments.get(n).is_some_and(|d| *d.settings == template);
            prop_assert!(takes("blue") && takes("green") && !runs("blue") && !runs("green"));
            return Ok(());
        };
        let ep = &resolved.endpoints[EP];
        let traffic = ep.traffic.clone().expect("a slot endpoint's traffic is managed");
        prop_assert_eq!(weight_sum(&traffic), 100);
        let target: Vec<String> = effective(&traffic).into_keys().collect();
        prop_assert_eq!(target.len(), 1, "all traffic to one slot: {:?}", traffic);
        let target = target[0].clone();
        prop_assert!(SLOTS.contains(&target.as_str()));
        prop_assert_eq!(&*ep.deployments[&target].settings, &template);
        prop_assert!(ep.deployments.keys().all(|d| traffic.contains_key(d)));
        for n in &notes {
            prop_assert!(n.message.contains(&format!("slot {target}")), "{}", n.message);
        }

        let opts = PlanOptions::default();
        let p = match plan(&resolved, &live, &opts, profile) {
            Ok(p) => p,
            // The planner's rule: a create-only change (instance_type) is refused on a
            // deployment about to take traffic, so an existing idle slot cannot be recreated
            // and swapped to in one plan (docs/rollouts.md "Blue/green slots", limits).
            Err(r) => {
                prop_assert!(
                    r.iter().all(|r| r.deployment.as_deref() == Some(target.as_str())
                        && r.message.contains("cannot be changed in place")),
                    "plan refused: {r:?}"
                );
                return Ok(());
            }
        };
        let mut state = live.clone();
        for step in &p.steps {
            apply_step(&mut state, step, &BTreeSet::new())
                .map_err(|e| TestCaseError::fail(format!("step {step:?} failed: {e}")))?;
            check_invariants(&state).map_err(TestCaseError::fail)?;
        }
        prop_assert_eq!(state.endpoints[EP].traffic.get(&target).copied(), Some(100));

        // Resolved again against what the plan left: the same slot, and nothing to do.
        let mut again = declared.clone();
        let notes = resolve(&mut again, &state, profile)
            .map_err(|r| TestCaseError::fail(format!("re-resolve refused: {r:?}")))?;
        prop_assert!(notes.is_empty(), "steady state has no slot note: {:?}", notes);
        let traffic = again.endpoints[EP].traffic.clone().unwrap();
        prop_assert_eq!(traffic.get(&target).copied(), Some(100));
        let replan = plan(&again, &state, &opts, profile).expect("re-plan");
        prop_assert!(replan.steps.is_empty(), "re-plan not empty: {:#?}", replan.steps);
        let other = SLOTS.iter().find(|s| **s != target).unwrap();
        let old = state.endpoints[EP].deployments.get(*other);
        match after {
            AfterSwap::Delete => prop_assert!(old.is_none()),
            AfterSwap::ScaleDown => prop_assert!(old.is_none_or(|d| d.settings.instance_count == Some(1))),
            AfterSwap::Keep => {}
        }
    }
}
