//! The sandbox-history checker the rollout proofs rely on (`rollout_history::check_routing`):
//! what it counts as routing to an unready deployment.

use flightdeck_testkit::rollout_history::check_routing;
use serde_json::{Value, json};

fn history(entries: Vec<Value>) -> Value {
    let entries: Vec<Value> = entries
        .into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            e["time"] = json!(format!("2026-12-01T10:00:{i:02}Z"));
            e["endpoint"] = json!("ep");
            e
        })
        .collect();
    json!({"dropped": 0, "entries": entries})
}

#[test]
fn traffic_on_a_deployment_still_being_created_is_routing_to_an_unready_one() {
    let h = history(vec![
        json!({"deployments": {"blue": "Succeeded"}, "traffic": {"blue": 100}}),
        json!({"deployments": {"green": "Creating"}}),
        json!({"traffic": {"blue": 90, "green": 10}}),
    ]);
    let err = check_routing(&h).unwrap_err();
    assert!(err.contains("green which is Creating"), "{err}");
}

#[test]
fn a_deployment_that_served_keeps_its_traffic_while_it_is_scaled_or_updated() {
    let h = history(vec![
        json!({"deployments": {"blue": "Succeeded", "green": "Succeeded"}, "traffic": {"blue": 50, "green": 50}}),
        json!({"deployments": {"blue": "Scaling"}}),
        json!({"deployments": {"blue": "Succeeded", "green": "Updating"}}),
        json!({"traffic": {"blue": 20, "green": 80}}),
        json!({"deployments": {"green": "Succeeded"}}),
    ]);
    check_routing(&h).unwrap();
}

#[test]
fn a_deployment_recreated_after_a_delete_has_not_served_until_it_succeeds_again() {
    let h = history(vec![
        json!({"deployments": {"blue": "Succeeded", "green": "Succeeded"}, "traffic": {"blue": 100}}),
        json!({"deployments": {"green": null}}),
        json!({"deployments": {"green": "Creating"}}),
        json!({"deployments": {"green": "Updating"}}),
        json!({"traffic": {"blue": 50, "green": 50}}),
    ]);
    let err = check_routing(&h).unwrap_err();
    assert!(err.contains("green which is Updating"), "{err}");
}

#[test]
fn a_failed_or_missing_deployment_never_takes_traffic() {
    let failed = history(vec![
        json!({"deployments": {"blue": "Succeeded", "green": "Succeeded"}, "traffic": {"blue": 100}}),
        json!({"deployments": {"green": "Failed"}}),
        json!({"traffic": {"blue": 90, "green": 10}}),
    ]);
    assert!(
        check_routing(&failed)
            .unwrap_err()
            .contains("which is Failed")
    );
    let missing = history(vec![
        json!({"deployments": {"blue": "Succeeded"}, "mirror": {"green": 10}, "traffic": {"blue": 100}}),
    ]);
    assert!(
        check_routing(&missing)
            .unwrap_err()
            .contains("which is missing")
    );
}
