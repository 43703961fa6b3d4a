use super::*;
use crate::model::{DeploymentSettings, DeploymentState, LiveDeployment};
use crate::plan::profile::NEUTRAL;
use crate::spec::{self, MemFiles};

const ENV: &str = "name: prod\ntarget:\n  state_file:\n    path: state.json\nslots:\n  ep1:\n    names: [blue, green]\n    template: deployments/model.yml\n";
const TEMPLATE: &str = "name: model\nendpoint_name: ep1\nmodel: azureml:churn:5 # the release\ninstance_type: Standard_DS3_v2\ninstance_count: 2\n";

/// The environment's files and its slots, as the loader reads them.
fn load(template: &str) -> (FileMap, Slots) {
    let mut map = FileMap::new();
    for (p, t) in [
        ("environment.yaml", ENV),
        ("ep1.yml", "name: ep1\n"),
        ("deployments/model.yml", template),
    ] {
        map.insert(PathBuf::from(format!("env/{p}")), t.as_bytes().to_vec());
    }
    let desired = spec::load_environment_from(&MemFiles(map.clone()), Path::new("env"), |_| {
        &crate::plan::profile::NEUTRAL
    })
    .unwrap_or_else(|d| panic!("{d}"));
    (map, desired.environment.slots["ep1"].clone())
}

/// Live: blue serving `blue` settings at 100%, green at 0% running the failed release.
fn live(blue: DeploymentSettings) -> LiveEndpoint {
    let d = |name: &str, settings: DeploymentSettings| LiveDeployment {
        name: name.into(),
        settings: Box::new(settings),
        state: DeploymentState::Ready,
        phase: None,
    };
    let green = DeploymentSettings {
        model: Some(AssetRef::parse("azureml:churn:5")),
        instance_type: Some("Standard_DS3_v2".into()),
        instance_count: Some(2),
        ..Default::default()
    };
    LiveEndpoint {
        name: "ep1".into(),
        settings: Default::default(),
        traffic: [("blue".into(), 100), ("green".into(), 0)].into(),
        mirror_traffic: Default::default(),
        deployments: [
            ("blue".into(), d("blue", blue)),
            ("green".into(), d("green", green)),
        ]
        .into(),
        scoring_uri: None,
        busy: None,
        problems: Vec::new(),
        rollout: None,
    }
}

fn serving(model: &str, count: u32) -> DeploymentSettings {
    DeploymentSettings {
        model: Some(AssetRef::parse(model)),
        instance_type: Some("Standard_DS3_v2".into()),
        instance_count: Some(count),
        environment: Some(AssetRef::parse("azureml:env:1")),
        ..Default::default()
    }
}

fn revert(template: &str, blue: DeploymentSettings) -> Result<TemplateRevert, TemplateError> {
    let (files, slots) = load(template);
    revert_template(
        &files,
        Path::new("env"),
        "ep1",
        &slots,
        &live(blue),
        &[],
        &NEUTRAL,
    )
}

#[test]
fn the_template_gets_the_serving_slots_model_version_and_keeps_its_comment() {
    let r = revert(TEMPLATE, serving("azureml:churn:4", 2)).unwrap();
    assert_eq!(r.serving, "blue");
    assert_eq!(
        r.fields,
        [FieldRestore {
            field: "model".into(),
            declared: "azureml:churn:5".into(),
            live: "azureml:churn:4".into(),
        }]
    );
    let change = r.change.unwrap();
    assert_eq!(change.path, PathBuf::from("env/deployments/model.yml"));
    assert_eq!(
        change.new.as_deref(),
        Some(TEMPLATE.replace("churn:5 #", "churn:4 #").as_str())
    );
}

#[test]
fn every_differing_declared_field_is_set_and_undeclared_ones_are_left_out() {
    // The live `environment` is not declared by the template: not compared, not written.
    let r = revert(TEMPLATE, serving("azureml:churn:4", 3)).unwrap();
    let fields: Vec<&str> = r.fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, ["model", "instance_count"]);
    assert_eq!(
        r.change.unwrap().new.as_deref(),
        Some(
            "name: model\nendpoint_name: ep1\nmodel: azureml:churn:4 # the release\ninstance_type: Standard_DS3_v2\ninstance_count: 3\n"
        )
    );
}

#[test]
fn a_model_written_as_a_mapping_gets_its_version_rewritten() {
    let template =
        "name: model\nendpoint_name: ep1\nmodel:\n  name: churn\n  version: 5\ninstance_count: 2\n";
    let r = revert(template, serving("azureml:churn:4", 2)).unwrap();
    assert_eq!(
        r.change.unwrap().new.as_deref(),
        Some(template.replace("version: 5", "version: 4").as_str())
    );
}

#[test]
fn a_mapping_that_names_another_model_is_refused() {
    let template = "name: model\nendpoint_name: ep1\nmodel:\n  name: churn\n  version: 5\n";
    let err = revert(template, serving("azureml:fraud:4", 2)).unwrap_err();
    assert!(
        matches!(err, TemplateError::Inexpressible(ref u) if u.field == "model"),
        "{err}"
    );
    assert!(err.to_string().contains("another asset"), "{err}");
}

#[test]
fn a_field_the_serving_slot_has_no_value_for_is_refused() {
    let mut blue = serving("azureml:churn:5", 2);
    blue.instance_count = None;
    let err = revert(TEMPLATE, blue).unwrap_err();
    assert!(err.to_string().contains("`instance_count`"), "{err}");
    assert!(err.to_string().contains("no live value"), "{err}");
}

#[test]
fn a_template_that_already_matches_the_serving_slot_needs_no_change() {
    let r = revert(TEMPLATE, serving("azureml:churn:5", 2)).unwrap();
    assert!(r.fields.is_empty() && r.change.is_none(), "{r:?}");
}

#[test]
fn no_slot_taking_traffic_is_refused() {
    let (files, slots) = load(TEMPLATE);
    let mut l = live(serving("azureml:churn:4", 2));
    l.traffic = [("blue".into(), 0)].into();
    let err =
        revert_template(&files, Path::new("env"), "ep1", &slots, &l, &[], &NEUTRAL).unwrap_err();
    assert!(matches!(err, TemplateError::NoServingSlot { .. }), "{err}");
}

#[test]
fn only_the_after_swap_of_the_slot_that_does_not_serve_is_accepted_after_a_revert() {
    let (_, mut slots) = load(TEMPLATE);
    let scale = |d: &str, to| Action::ScaleDeployment {
        deployment: d.into(),
        from: 2,
        to,
    };
    let delete = |d: &str| Action::DeleteDeployment {
        deployment: d.into(),
    };
    // `keep`: nothing is accepted.
    assert!(!is_after_swap(&slots, "blue", &scale("green", 1)));
    slots.after_swap = AfterSwap::ScaleDown;
    assert!(is_after_swap(&slots, "blue", &scale("green", 1)));
    assert!(!is_after_swap(&slots, "blue", &scale("green", 3)));
    assert!(!is_after_swap(&slots, "blue", &scale("blue", 1)));
    assert!(!is_after_swap(&slots, "blue", &delete("green")));
    slots.after_swap = AfterSwap::Delete;
    assert!(is_after_swap(&slots, "blue", &delete("green")));
    assert!(!is_after_swap(&slots, "blue", &delete("blue")));
    assert!(!is_after_swap(&slots, "blue", &delete("other")));
}
