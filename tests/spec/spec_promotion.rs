//! `promotion:` in environment.yaml through the real binary: a valid mapping loads (aliases,
//! legacy stages, slot templates, the mode), and every bad entry is reported at once, located.

use std::fs;
use std::process::Command;

use flightdeck::promotion::{PromotionMode, Selector};
use flightdeck::spec::load_environment;
use tempfile::TempDir;

const TARGET: &str = "name: test-env\ntarget:\n  state_file:\n    path: .live.json\n";

fn env(environment_extra: &str) -> TempDir {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("env");
    fs::create_dir_all(dir.join("deployments")).unwrap();
    fs::write(
        dir.join("environment.yaml"),
        format!("{TARGET}{environment_extra}"),
    )
    .unwrap();
    let files = [
        ("churn.yml", "name: churn\n"),
        (
            "blue.yml",
            "name: blue\nendpoint_name: churn\nmodel: azureml:churn-model:3\n",
        ),
        (
            "green.yml",
            "name: green\nendpoint_name: churn\nmodel: azureml:churn-model:2\n",
        ),
        ("fraud.yml", "name: fraud\n"),
        (
            "deployments/fraud.yml",
            "name: model\nendpoint_name: fraud\nmodel: azureml:fraud:1\n",
        ),
    ];
    for (path, text) in files {
        fs::write(dir.join(path), text).unwrap();
    }
    tmp
}

const SLOTS: &str =
    "slots:\n  fraud:\n    names: [fraud-a, fraud-b]\n    template: deployments/fraud.yml\n";

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
fn a_promotion_mapping_loads_aliases_stages_slot_templates_and_the_mode() {
    let tmp = env(&format!(
        "{SLOTS}promotion:\n  mode: pull_request\n  models:\n    - model: churn-model@champion\n      endpoint: churn\n      deployment: blue\n    - model: churn-model/Production\n      endpoint: churn\n      deployment: green\n    - model: fraud@champion\n      endpoint: fraud\n"
    ));
    let (code, stderr) = validate(&tmp);
    assert_eq!(code, 0, "{stderr}");
    let desired =
        load_environment(&tmp.path().join("env"), flightdeck::backend::profile_of).expect("loads");
    let p = &desired.environment.promotion;
    assert_eq!(p.mode, PromotionMode::PullRequest);
    assert_eq!(p.models.len(), 3);
    assert_eq!(
        p.models[0].model.selector,
        Selector::Alias("champion".into())
    );
    assert_eq!(p.models[0].deployment.as_deref(), Some("blue"));
    assert_eq!(
        p.models[1].model.selector,
        Selector::Stage("Production".into())
    );
    assert_eq!(p.models[2].endpoint, "fraud");
    assert_eq!(p.models[2].deployment, None);
}

#[test]
fn every_bad_promotion_entry_is_reported_at_once_with_its_location() {
    let tmp = env(&format!(
        "{SLOTS}promotion:\n  mode: sometimes\n  models:\n    - model: churn-model\n      endpoint: churn\n      deployment: blue\n    - model: churn-model@champion\n      endpoint: chrn\n    - model: churn-model@champion\n      endpoint: churn\n      deployment: gren\n    - model: churn-model@champion\n      endpoint: churn\n    - model: fraud@champion\n      endpoint: fraud\n      deployment: fraud-a\n    - model: churn-model@latest\n      endpoint: churn\n      deployment: blue\n      deploymnt: x\n"
    ));
    let (code, stderr) = validate(&tmp);
    assert_eq!(code, 2, "{stderr}");
    let env = tmp.path().join("env").join("environment.yaml");
    let at = |line: u32| format!("{}:{line}:", env.display());
    for (line, needle) in [
        (
            10,
            "mode: unknown value `sometimes`, expected one of `commit`, `pull_request`",
        ),
        (
            12,
            "promotion.models[0]: model `churn-model` is not a registry reference: expected MODEL@ALIAS",
        ),
        (
            16,
            "promotion.models[1]: endpoint `chrn` is not declared in this environment, did you mean `churn`?",
        ),
        (
            19,
            "promotion.models[2]: endpoint churn: deployment `gren` is not declared (declared: blue, green), did you mean `green`?",
        ),
        (
            21,
            "promotion.models[3]: endpoint churn declares 2 deployments (blue, green); add `deployment:`",
        ),
        (
            24,
            "promotion.models[4]: endpoint fraud has slots: its template is what a promotion changes, remove `deployment: fraud-a`",
        ),
        (25, "alias `latest` is reserved by MLflow"),
        (
            28,
            "unknown field `deploymnt` in promotion.models[5], did you mean `deployment`?",
        ),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&at(line)) && l.contains(needle)),
            "no line {line} with {needle:?} in:\n{stderr}"
        );
    }
}
