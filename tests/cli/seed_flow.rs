//! The six reference declarative-flow files (az ml 2021 preview form, loaded unchanged), replayed
//! in sequence against the in-memory backend, give exactly the seed flow: create the endpoint
//! with blue; scale blue; create green at 0%; 90/10; green 100; delete blue.

use std::collections::BTreeSet;
use std::path::PathBuf;

use flightdeck::backend::memory::apply_step;
use flightdeck::model::{DesiredState, DriftPolicy, Environment, LiveState, Target};
use flightdeck::plan::{Action, PlanOptions, plan};
use flightdeck::spec::{self, DiskFiles};

fn reference(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reference/azureml-cli-yaml/canary-declarative-flow")
        .join(name)
}

fn desired_from(file: &str) -> DesiredState {
    let endpoints = spec::load_endpoint_files(&DiskFiles, &[reference(file)])
        .unwrap_or_else(|d| panic!("{file} must load as it is:\n{d}"));
    DesiredState {
        environment: Environment {
            name: "seed".into(),
            target: Target::StateFile {
                path: "live.json".into(),
            },
            drift: DriftPolicy::default(),
            rollout: Default::default(),
            slots: Default::default(),
            promotion: Default::default(),
        },
        endpoints: endpoints.into_iter().map(|e| (e.name.clone(), e)).collect(),
    }
}

/// Each step as `action deployment [detail]`.
fn describe(action: &Action) -> String {
    match action {
        Action::SetTraffic { traffic } => format!(
            "set_traffic {}",
            traffic
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Action::ScaleDeployment {
            deployment,
            from,
            to,
        } => format!("scale_deployment {deployment} {from}->{to}"),
        other => format!("{} {}", other.kind(), other.deployment().unwrap_or(""))
            .trim()
            .to_string(),
    }
}

#[test]
fn replaying_the_six_reference_files_gives_exactly_the_seed_flow() {
    let expected: [&[&str]; 6] = [
        &[
            "create_endpoint",
            "create_deployment blue",
            "set_traffic blue=100",
        ],
        &["scale_deployment blue 1->2"],
        &["create_deployment green"],
        &["set_traffic blue=90,green=10"],
        &["set_traffic blue=0,green=100"],
        &["delete_deployment blue"],
    ];
    let files = [
        "1-create-endpoint-with-blue.yml",
        "2-scale-blue.yml",
        "3-create-green.yml",
        "4-flight-green.yml",
        "5-full-green.yml",
        "6-delete-blue.yml",
    ];
    let mut live = LiveState::default();
    for (file, want) in files.iter().zip(expected) {
        let desired = desired_from(file);
        let p = plan(
            &desired,
            &live,
            &PlanOptions::default(),
            flightdeck::backend::profile_of(&desired.environment.target),
        )
        .expect("no refusal");
        let got: Vec<String> = p.steps.iter().map(|s| describe(&s.action)).collect();
        assert_eq!(got, want, "{file}");
        for step in &p.steps {
            apply_step(&mut live, step, &BTreeSet::new()).expect("the platform accepts the step");
        }
        let again = plan(
            &desired,
            &live,
            &PlanOptions::default(),
            flightdeck::backend::profile_of(&desired.environment.target),
        )
        .expect("no refusal");
        assert!(
            again.is_empty(),
            "{file}: re-plan is not empty: {:?}",
            again.steps
        );
    }
}

#[test]
fn the_seed_flow_reasons_read_as_the_rollout() {
    let mut live = LiveState::default();
    let mut reasons = Vec::new();
    for file in [
        "1-create-endpoint-with-blue.yml",
        "2-scale-blue.yml",
        "3-create-green.yml",
        "4-flight-green.yml",
        "5-full-green.yml",
        "6-delete-blue.yml",
    ] {
        let desired = desired_from(file);
        let p = plan(
            &desired,
            &live,
            &PlanOptions::default(),
            flightdeck::backend::profile_of(&desired.environment.target),
        )
        .expect("no refusal");
        for step in &p.steps {
            reasons.push(step.reason.clone());
            apply_step(&mut live, step, &BTreeSet::new()).expect("accepted");
        }
    }
    assert_eq!(
        reasons,
        [
            "create endpoint my-endpoint: declared, not live",
            "create blue at 0% traffic",
            "route 100% to blue",
            "scale blue 1 → 2",
            "create green at 0% traffic",
            "flight green 10% (was blue 100)",
            "full traffic to green (was blue 90 / green 10)",
            "delete blue: no longer declared, drained",
        ]
    );
}

#[test]
fn the_reference_files_say_that_they_rely_on_local_code() {
    let p = plan(
        &desired_from("3-create-green.yml"),
        &LiveState::default(),
        &PlanOptions::default(),
        flightdeck::backend::profile_of(&desired_from("3-create-green.yml").environment.target),
    )
    .expect("no refusal");
    let notes: Vec<String> = p
        .notes
        .iter()
        .map(|n| format!("{:?} {}", n.deployment, n.message))
        .collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[0].contains("code ../../model-1/onlinescoring/"),
        "{notes:?}"
    );
}
