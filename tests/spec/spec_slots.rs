//! `slots:` in environment.yaml through the real binary: a valid declaration validates and
//! loads (the template is no deployment of its own), and every class of mistake is reported at
//! once, located, with did-you-mean from the field table.

use std::fs;
use std::process::Command;

use flightdeck::slots::AfterSwap;
use flightdeck::spec::load_environment;
use tempfile::TempDir;

const TARGET: &str = "name: test-env\ntarget:\n  state_file:\n    path: .live.json\n";
const TEMPLATE: &str =
    "name: model\nendpoint_name: scoring\nmodel: azureml:churn:5\ninstance_count: 2\n";

fn env(environment_extra: &str, files: &[(&str, &str)]) -> TempDir {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("env");
    fs::create_dir_all(dir.join("deployments")).unwrap();
    fs::write(
        dir.join("environment.yaml"),
        format!("{TARGET}{environment_extra}"),
    )
    .unwrap();
    for (path, text) in files {
        fs::write(dir.join(path), text).unwrap();
    }
    tmp
}

fn validate(tmp: &TempDir) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .arg("validate")
        .arg(tmp.path().join("env"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_slot_declaration_loads_with_its_template_and_no_deployment_of_its_own() {
    let tmp = env(
        "slots:\n  scoring:\n    names: [blue, green]\n    template: deployments/scoring.yml\n    after_swap: delete\n",
        &[
            ("scoring.yml", "name: scoring\nauth_mode: key\n"),
            ("deployments/scoring.yml", TEMPLATE),
        ],
    );
    let (code, stderr) = validate(&tmp);
    assert_eq!(code, 0, "{stderr}");
    let desired =
        load_environment(&tmp.path().join("env"), flightdeck::backend::profile_of).expect("loads");
    let slots = &desired.environment.slots["scoring"];
    assert_eq!(slots.names, ["blue".to_string(), "green".to_string()]);
    assert_eq!(slots.after_swap, AfterSwap::Delete);
    assert_eq!(slots.template.settings.instance_count, Some(2));
    let endpoint = &desired.endpoints["scoring"];
    assert!(endpoint.deployments.is_empty(), "{endpoint:?}");
    assert_eq!(endpoint.traffic, None);
}

#[test]
fn every_slot_mistake_is_reported_at_once_with_its_location() {
    let tmp = env(
        "slots:\n  scoring:\n    names: [blue, red]\n    template: deployments/scoring.yml\n    after_swap: keep\n  scorng:\n    names: [a1x, b1x]\n    template: deployments/scoring.yml\n  other:\n    names: [solo]\n    template: deployments/missing.yml\n    aftr_swap: keep\n  third:\n    names: [x1y, x1y]\n    template: other.yml\n    after_swap: sometimes\n",
        &[
            ("scoring.yml", "name: scoring\ntraffic:\n  blue: 100\n"),
            ("deployments/scoring.yml", TEMPLATE),
            (
                "red.yml",
                "name: red\nendpoint_name: scoring\nmodel: azureml:churn:4\n",
            ),
            ("other.yml", "name: other\n"),
            ("third.yml", "name: third\n"),
        ],
    );
    let (code, stderr) = validate(&tmp);
    assert_eq!(code, 2, "{stderr}");
    let env_file = tmp.path().join("env/environment.yaml");
    let env_file = env_file.display();
    for expected in [
        // traffic in the endpoint file naming a slot
        "scoring.yml:2:1: endpoint `scoring` has slots (environment.yaml `slots.scoring`): flightdeck routes its traffic to the slot that runs the template, remove `traffic` (it names slot `blue`)".to_string(),
        // a slot name clashing with a declared deployment
        format!("{env_file}:7:19: slots.scoring: slot `red` clashes with deployment `red` that endpoint `scoring` declares"),
        // unknown endpoint, with did-you-mean
        format!("{env_file}:10:3: slots.scorng: endpoint `scorng` is not declared, did you mean `scoring`?"),
        // one slot, a missing template, an unknown field with did-you-mean
        format!("{env_file}:14:12: slots.other: names lists 1 slot, expected exactly two (blue/green)"),
        format!("{env_file}:15:15: slots.other: template `deployments/missing.yml`: no deployment file there"),
        format!("{env_file}:16:5: unknown field `aftr_swap` in slots.other, did you mean `after_swap`?"),
        // a slot listed twice, a template that is an endpoint file, a bad after_swap
        format!("{env_file}:18:18: slots.third: slot `x1y` is listed twice"),
        format!("{env_file}:19:15: slots.third: template `other.yml` is an endpoint file, expected a deployment file"),
        format!("{env_file}:20:17: after_swap: unknown value `sometimes`"),
    ] {
        assert!(stderr.contains(&expected), "missing {expected:?} in:\n{stderr}");
    }
    assert!(stderr.contains("error: 9 problem(s) found"), "{stderr}");
}

#[test]
fn a_template_of_another_endpoint_and_three_slots_are_refused() {
    let tmp = env(
        "slots:\n  scoring:\n    names: [blue, green, red]\n    template: deployments/other.yml\n",
        &[
            ("scoring.yml", "name: scoring\n"),
            ("other.yml", "name: other\n"),
            (
                "deployments/other.yml",
                "name: model\nendpoint_name: other\nmodel: azureml:churn:5\n",
            ),
        ],
    );
    let (code, stderr) = validate(&tmp);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("slots.scoring: names lists 3 slots, expected exactly two (blue/green)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("slots.scoring: template `deployments/other.yml` is a deployment of endpoint `other`, not of `scoring`"),
        "{stderr}"
    );
}
