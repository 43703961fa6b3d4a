use super::*;
use crate::model::{AssetRef, Deployment, DeploymentSettings, DeploymentState, LiveDeployment};
use crate::plan::profile::NEUTRAL;

fn settings(model: &str) -> Box<DeploymentSettings> {
    Box::new(DeploymentSettings {
        model: Some(AssetRef::parse(model)),
        instance_count: Some(2),
        ..DeploymentSettings::default()
    })
}

fn slots(model: &str) -> Slots {
    Slots {
        names: ["blue".into(), "green".into()],
        template_file: "deployments/scoring.yml".into(),
        template: Deployment {
            name: "model".into(),
            settings: settings(model),
            test: None,
        },
        after_swap: AfterSwap::Keep,
    }
}

fn declared() -> Endpoint {
    Endpoint {
        name: "scoring".into(),
        settings: Default::default(),
        traffic: None,
        mirror_traffic: None,
        deployments: Default::default(),
    }
}

fn live(blue: (&str, u32), green: (&str, u32)) -> LiveEndpoint {
    let d = |name: &str, model: &str| LiveDeployment {
        name: name.into(),
        settings: settings(model),
        state: DeploymentState::Ready,
        phase: None,
    };
    LiveEndpoint {
        name: "scoring".into(),
        settings: Default::default(),
        traffic: [("blue".into(), blue.1), ("green".into(), green.1)].into(),
        mirror_traffic: Default::default(),
        deployments: [
            ("blue".into(), d("blue", blue.0)),
            ("green".into(), d("green", green.0)),
        ]
        .into(),
        scoring_uri: None,
        busy: None,
        problems: Vec::new(),
        rollout: None,
    }
}

#[test]
fn both_slots_serving_and_neither_running_the_template_is_refused_with_both_weights() {
    let live = live(("azureml:m:1", 90), ("azureml:m:2", 10));
    let err = resolve_endpoint(
        &slots("azureml:m:3"),
        &declared(),
        Some(&live),
        true,
        &[],
        &NEUTRAL,
    )
    .unwrap_err();
    assert!(
        err.contains("blue (90% live) and green (10% live) both take traffic"),
        "{err}"
    );
}

#[test]
fn mid_swap_the_slot_running_the_template_stays_the_target_and_the_other_keeps_its_settings() {
    let live = live(("azureml:m:1", 90), ("azureml:m:2", 10));
    let r = resolve_endpoint(
        &slots("azureml:m:2"),
        &declared(),
        Some(&live),
        false,
        &[],
        &NEUTRAL,
    )
    .unwrap();
    assert_eq!(r.target, "green");
    assert_eq!(
        r.endpoint.traffic,
        Some([("green".into(), 100), ("blue".into(), 0)].into())
    );
    assert_eq!(
        r.endpoint.deployments["blue"].settings,
        settings("azureml:m:1")
    );
    assert_eq!(
        r.note.as_deref(),
        Some(
            "slot green runs the template (model azureml:m:2); traffic swaps to it from blue (90% live)"
        )
    );
}

#[test]
fn with_both_slots_running_the_template_the_one_with_more_traffic_wins_and_steady_state_has_no_note()
 {
    let live = live(("azureml:m:2", 0), ("azureml:m:2", 100));
    let r = resolve_endpoint(
        &slots("azureml:m:2"),
        &declared(),
        Some(&live),
        true,
        &[],
        &NEUTRAL,
    )
    .unwrap();
    assert_eq!(r.target, "green");
    assert_eq!(r.note, None);
}
