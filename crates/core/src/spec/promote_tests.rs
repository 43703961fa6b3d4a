use std::path::{Path, PathBuf};

use super::*;
use crate::spec::{self, MemFiles};

const ENV: &str = "name: prod\ntarget:\n  state_file:\n    path: state.json\n";

fn files(list: &[(&str, &str)]) -> (FileMap, DesiredState) {
    let mut map = FileMap::new();
    for (p, t) in list {
        map.insert(PathBuf::from(format!("env/{p}")), t.as_bytes().to_vec());
    }
    let desired = spec::load_environment_from(&MemFiles(map.clone()), Path::new("env"), |_| {
        &crate::plan::profile::NEUTRAL
    })
    .unwrap_or_else(|d| panic!("{d}"));
    (map, desired)
}

const COMBINED: &str = "name: scoring\ntraffic:\n  blue: 100\ndeployments:\n  # blue\n  - name: blue\n    model:\n      name: churn\n      version: 4 # prod\n    instance_type: Standard_DS3_v2\n    instance_count: 1\n  - name: green\n    model: azureml:churn:4\n    instance_type: Standard_DS3_v2\n    instance_count: 1\n";

fn model(v: &str) -> Artifact {
    Artifact::model(v).unwrap()
}

#[test]
fn a_combined_file_gets_exactly_its_version_line_changed() {
    let (map, desired) = files(&[("environment.yaml", ENV), ("scoring.yml", COMBINED)]);
    let e = promote_edit(
        &map,
        Path::new("env"),
        &desired,
        "scoring",
        Some("blue"),
        &model("churn:5"),
    )
    .unwrap();
    assert_eq!(
        e.new_text,
        COMBINED.replace("version: 4 # prod", "version: 5 # prod")
    );
    assert_eq!((e.line, e.at.as_str()), (9, "deployments[0].model.version"));
    assert_eq!((e.previous.as_str(), e.new.as_str()), ("4", "5"));
}

#[test]
fn a_reference_string_keeps_its_azureml_prefix() {
    let (map, desired) = files(&[("environment.yaml", ENV), ("scoring.yml", COMBINED)]);
    let e = promote_edit(
        &map,
        Path::new("env"),
        &desired,
        "scoring",
        Some("green"),
        &model("azureml:churn:6"),
    )
    .unwrap();
    assert_eq!(
        e.new_text,
        COMBINED.replace("azureml:churn:4", "azureml:churn:6")
    );
}

#[test]
fn several_deployments_without_a_name_an_unknown_one_or_another_model_are_refused() {
    let (map, desired) = files(&[("environment.yaml", ENV), ("scoring.yml", COMBINED)]);
    let err = |d: Option<&str>, a: &Artifact| {
        promote_edit(&map, Path::new("env"), &desired, "scoring", d, a)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(None, &model("churn:5")),
        "endpoint scoring declares 2 deployments (blue, green); pass --deployment NAME"
    );
    assert_eq!(
        err(Some("red"), &model("churn:5")),
        "endpoint scoring: deployment red is not declared (declared: blue, green)"
    );
    assert_eq!(
        err(Some("blue"), &model("fraud:5")),
        "endpoint scoring: deployment blue (env/scoring.yml): it serves model churn, not fraud; promote changes a version, not the model"
    );
    assert_eq!(
        err(Some("blue"), &model("churn:4")),
        "endpoint scoring: deployment blue (env/scoring.yml:9) already declares churn version 4"
    );
    let other = promote_edit(
        &map,
        Path::new("env"),
        &desired,
        "scorng",
        None,
        &model("churn:5"),
    );
    assert_eq!(
        other.unwrap_err().to_string(),
        "endpoint scorng is not declared in this environment (did you mean `scoring`?)"
    );
}

#[test]
fn an_image_is_promoted_in_an_inline_environment() {
    let ep = "name: scoring\n";
    let d = "name: blue\nendpoint_name: scoring\nmodel: azureml:churn:1\nenvironment:\n  name: env\n  version: 1\n  image: registry.example.com/score:1.0 # base\ninstance_type: Standard_DS3_v2\ninstance_count: 1\n";
    let (map, desired) = files(&[
        ("environment.yaml", ENV),
        ("scoring.yml", ep),
        ("blue.yml", d),
    ]);
    let e = promote_edit(
        &map,
        Path::new("env"),
        &desired,
        "scoring",
        None,
        &Artifact::Image("registry.example.com/score:1.1".into()),
    )
    .unwrap();
    assert_eq!(e.new_text, d.replace("score:1.0 #", "score:1.1 #"));
    assert_eq!(e.path, PathBuf::from("env/blue.yml"));
    assert_eq!(Artifact::Image("r.io:5000/a/b:2.1".into()).version(), "2.1");
}

#[test]
fn a_model_name_and_version_are_required() {
    assert_eq!(
        Artifact::model("churn").unwrap_err().to_string(),
        "`churn` is not a registered model version; write NAME:VERSION or azureml:NAME:VERSION"
    );
}
