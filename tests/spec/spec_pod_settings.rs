//! The Kubernetes production settings in the loader: the rules the field table cannot state
//! are located errors, and a valid file loads into the model the backend writes.

use std::fs;

use flightdeck::spec::load_environment;
use tempfile::TempDir;

const K8S_ENV: &str =
    "name: test-env\ntarget:\n  kubernetes:\n    namespace: models\n    router: istio\n";
const ENDPOINT: &str = "name: scoring\ntraffic:\n  blue: 100\n";
const BLUE: &str = "name: blue\nendpoint_name: scoring\nimage: repo/model:1\nport: 8080\n";

fn load(extra: &str) -> Result<flightdeck::model::DesiredState, Vec<String>> {
    let tmp = TempDir::new().unwrap();
    fs::write(tmp.path().join("environment.yaml"), K8S_ENV).unwrap();
    fs::write(tmp.path().join("scoring.yml"), ENDPOINT).unwrap();
    fs::write(tmp.path().join("blue.yml"), format!("{BLUE}{extra}")).unwrap();
    let prefix = format!("{}/", tmp.path().display());
    load_environment(tmp.path(), flightdeck::backend::profile_of).map_err(|d| {
        d.to_string()
            .lines()
            .map(|l| l.replace(&prefix, ""))
            .collect()
    })
}

#[test]
fn the_production_settings_rules_are_located_errors() {
    let extra = "autoscaling:\n  min_instances: 5\n  max_instances: 2\n  target_cpu_utilization_percentage: 70\n\
disruption_budget:\n  min_available: 1\n  max_unavailable: 1\n\
pre_stop:\n  command: []\n\
tolerations:\n  - operator: Equal\n    value: x\n\
topology_spread:\n  - across: racks\n\
service_account: Scoring_Reader\n\
security_context:\n  drop_capabilities: [all]\n";
    assert_eq!(
        load(extra).unwrap_err(),
        [
            "blue.yml:6:18: min_instances (5) is greater than max_instances (2)",
            "blue.yml:9:1: disruption_budget needs exactly one of `min_available`, `max_unavailable`",
            "blue.yml:13:12: pre_stop.command is empty",
            "blue.yml:15:5: tolerations: an entry without `key` needs `operator: Exists`",
            "blue.yml:18:13: across: unknown value `racks`, expected one of `nodes`, `zones`",
            "blue.yml:19:18: service_account: `Scoring_Reader` is not a Kubernetes object name (lowercase letters, digits, `-` and `.`)",
            "blue.yml:21:23: drop_capabilities: `all` is not a capability name (e.g. ALL, NET_RAW)",
        ]
    );
}

#[test]
fn autoscaling_needs_a_utilization_target_and_its_bounds() {
    assert_eq!(
        load("autoscaling:\n  max_instances: 3\n").unwrap_err(),
        [
            "blue.yml:5:1: autoscaling has no `min_instances`",
            "blue.yml:5:1: autoscaling needs target_cpu_utilization_percentage or target_memory_utilization_percentage",
        ]
    );
}

#[test]
fn a_security_context_drops_all_capabilities_and_forbids_escalation_by_default() {
    let state = load("security_context:\n  run_as_non_root: true\n").expect("loads");
    let blue = &state.endpoints["scoring"].deployments["blue"].settings;
    let sc = blue.security_context.as_ref().expect("declared");
    assert_eq!(sc.drop_capabilities, ["ALL"]);
    assert!(!sc.allow_privilege_escalation);
    assert_eq!(sc.run_as_non_root, Some(true));
}
