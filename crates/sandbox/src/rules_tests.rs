//! Unit tests for the body rules (R1–R6, R13–R15).

use std::collections::BTreeMap;
use tokio::time::Instant;

use chrono::Utc;
use serde_json::{Map, json};

use super::*;
use crate::state::{ComputeType, Deployment, Envelope, ProvisioningState, Timestamps};

fn dep(name: &str, state: ProvisioningState) -> (String, Deployment) {
    (
        name.to_string(),
        Deployment {
            name: name.to_string(),
            location: "westus2".into(),
            envelope: Envelope::default(),
            compute_type: ComputeType::Managed,
            props: Map::new(),
            state,
            times: Timestamps::new(Utc::now()),
            ready_at: Some(Instant::now()),
            previous: None,
            seq: 1,
        },
    )
}

fn deps() -> BTreeMap<String, Deployment> {
    [
        dep("blue", ProvisioningState::Succeeded),
        dep("green", ProvisioningState::Succeeded),
        dep("red", ProvisioningState::Failed),
    ]
    .into_iter()
    .collect()
}

fn w(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn traffic_must_sum_to_100_or_be_all_zero() {
    assert!(check_traffic(&w(&[("blue", 90), ("green", 10)]), None, false, &deps()).is_ok());
    assert!(check_traffic(&w(&[("blue", 0), ("green", 0)]), None, false, &deps()).is_ok());
    assert!(check_traffic(&BTreeMap::new(), None, false, &deps()).is_ok());
    let e = check_traffic(&w(&[("blue", 90)]), None, false, &deps()).unwrap_err();
    assert_eq!(e.code, "BadArgument");
    assert!(e.message.contains("sum to 100"));
}

#[test]
fn traffic_to_unknown_or_failed_deployments_is_refused() {
    assert!(check_traffic(&w(&[("ghost", 100)]), None, false, &deps()).is_err());
    assert!(check_traffic(&w(&[("red", 100)]), None, false, &deps()).is_err());
    assert!(check_traffic(&w(&[("blue", 100), ("red", 0)]), None, false, &deps()).is_ok());
}

#[test]
fn mirror_rules_r3_to_r6() {
    let live = w(&[("blue", 100)]);
    assert!(check_traffic(&live, Some(&w(&[("green", 50)])), false, &deps()).is_ok());
    assert!(
        check_traffic(&live, Some(&w(&[("green", 51)])), false, &deps()).is_err(),
        "R3"
    );
    let two = w(&[("blue", 100), ("green", 0)]);
    let many = w(&[("green", 10), ("red", 10)]);
    assert!(
        check_traffic(&two, Some(&many), false, &deps()).is_err(),
        "R4"
    );
    assert!(
        check_traffic(&live, Some(&w(&[("blue", 10)])), false, &deps()).is_err(),
        "R5"
    );
    assert!(
        check_traffic(&live, Some(&w(&[("green", 10)])), true, &deps()).is_err(),
        "R6"
    );
    assert!(check_traffic(&live, Some(&w(&[("green", 0)])), true, &deps()).is_ok());
}

#[test]
fn weights_must_be_integers_between_0_and_100() {
    let body = |t| json!({"location": "westus2", "properties": {"authMode": "Key", "traffic": t}});
    assert!(endpoint_put(&body(json!({"blue": 101})), "westus2").is_err());
    assert!(endpoint_put(&body(json!({"blue": -1})), "westus2").is_err());
    assert!(endpoint_put(&body(json!({"blue": 50.5})), "westus2").is_err());
    assert!(endpoint_put(&body(json!({"blue": 100})), "westus2").is_ok());
}

#[test]
fn endpoint_put_requires_location_properties_and_auth_mode() {
    assert!(endpoint_put(&json!({"properties": {"authMode": "Key"}}), "westus2").is_err());
    assert!(endpoint_put(&json!({"location": "westus2"}), "westus2").is_err());
    assert!(endpoint_put(&json!({"location": "westus2", "properties": {}}), "westus2").is_err());
    assert!(
        endpoint_put(
            &json!({"location": "eastus", "properties": {"authMode": "Key"}}),
            "westus2"
        )
        .is_err()
    );
    let ok = endpoint_put(
        &json!({"location": "West US 2", "properties": {"authMode": "AMLToken"}}),
        "westus2",
    )
    .unwrap();
    assert_eq!(ok.props["publicNetworkAccess"], "Enabled");
}

#[test]
fn unknown_endpoint_properties_are_refused() {
    let e = endpoint_put(
        &json!({"location": "westus2", "properties": {"authMode": "Key", "mirror_traffic": {}}}),
        "westus2",
    )
    .unwrap_err();
    assert!(e.message.contains("mirror_traffic"));
}

#[test]
fn patches_accept_only_their_fields() {
    assert!(
        endpoint_patch(&json!({"tags": {"a": "b"}, "identity": {"type": "SystemAssigned"}}))
            .is_ok()
    );
    assert!(endpoint_patch(&json!({"properties": {"traffic": {}}})).is_err());
    assert!(deployment_patch(&json!({"sku": {"capacity": 3}, "tags": {}})).is_ok());
    assert!(deployment_patch(&json!({"properties": {"model": "x"}})).is_err());
    assert!(deployment_patch(&json!({"sku": {"capacity": 0}})).is_err());
}

#[test]
fn names_follow_the_spec_pattern() {
    assert!(check_name("endpoint", "my-endpoint_1").is_ok());
    assert!(check_name("endpoint", "-bad").is_err());
    assert!(check_name("endpoint", "has space").is_err());
    assert!(check_name("endpoint", "").is_err());
}
