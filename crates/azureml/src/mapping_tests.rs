use proptest::prelude::*;

use super::*;

fn ws() -> Workspace {
    Workspace {
        id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws".into(),
    }
}

/// Every field `declared` sets, `got` has with the same value (undeclared fields may differ:
/// ARM fills in defaults).
fn assert_declared_round_trip(declared: &DeploymentSettings, got: &DeploymentSettings) {
    macro_rules! same {
        ($field:ident) => {
            if declared.$field.is_some() {
                assert_eq!(declared.$field, got.$field, stringify!($field));
            }
        };
    }
    same!(description);
    same!(tags);
    same!(model);
    same!(model_mount_path);
    same!(environment);
    same!(code_configuration);
    same!(instance_type);
    same!(instance_count);
    same!(environment_variables);
    same!(request_settings);
    same!(liveness_probe);
    same!(readiness_probe);
}

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,12}"
}

fn asset() -> impl Strategy<Value = AssetRef> {
    prop_oneof![
        (name(), "[0-9]{1,3}").prop_map(|(name, version)| AssetRef::Registered { name, version }),
        name().prop_map(|n| AssetRef::Id {
            id: format!("azureml://registries/shared/models/{n}/versions/1")
        }),
        name().prop_map(|p| AssetRef::Local {
            path: format!("./{p}")
        }),
    ]
}

fn probe() -> impl Strategy<Value = Probe> {
    (
        proptest::option::of(0u32..600),
        proptest::option::of(1u32..600),
        proptest::option::of(1u32..600),
        proptest::option::of(1u32..50),
        proptest::option::of(1u32..5),
    )
        .prop_map(
            |(initial_delay, period, timeout, failure_threshold, success_threshold)| Probe {
                initial_delay,
                period,
                timeout,
                failure_threshold,
                success_threshold,
                path: None,
                port: None,
            },
        )
}

fn map() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(name(), "[ -~]{0,10}", 0..4)
}

fn settings() -> impl Strategy<Value = DeploymentSettings> {
    (
        (
            proptest::option::of("[ -~]{0,20}"),
            proptest::option::of(map()),
            proptest::option::of(asset()),
            proptest::option::of(asset()),
            proptest::option::of((name(), name())),
            proptest::option::of(name()),
        ),
        (
            proptest::option::of(1u32..20),
            proptest::option::of(map()),
            proptest::option::of((
                proptest::option::of(1u32..120_000),
                proptest::option::of(1u32..100),
                proptest::option::of(0u32..60_000),
            )),
            proptest::option::of(probe()),
            proptest::option::of(probe()),
            proptest::option::of("/[a-z]{1,8}(/[a-z]{1,8})?"),
        ),
    )
        .prop_map(
            |((description, tags, model, environment, code, instance_type), rest)| {
                let (
                    instance_count,
                    environment_variables,
                    rs,
                    liveness_probe,
                    readiness_probe,
                    model_mount_path,
                ) = rest;
                DeploymentSettings {
                    description,
                    tags,
                    model,
                    model_mount_path,
                    environment,
                    image: None,
                    code_configuration: code.map(|(code, script)| CodeConfiguration {
                        code,
                        scoring_script: format!("{script}.py"),
                    }),
                    instance_type,
                    instance_count,
                    environment_variables,
                    request_settings: rs.map(|(a, b, c)| RequestSettings {
                        request_timeout_ms: a,
                        max_concurrent_requests_per_instance: b,
                        max_queue_wait_ms: c,
                    }),
                    liveness_probe,
                    readiness_probe,
                    port: None,
                    resources: None,
                    ..Default::default()
                }
            },
        )
}

proptest! {
    #[test]
    fn every_declared_deployment_field_survives_to_arm_and_back(s in settings()) {
        let mut body = deployment_body(&ws(), "westus2", None, &s);
        body["name"] = json!("blue");
        body["properties"]["provisioningState"] = json!("Succeeded");
        let live = deployment_from_value(&ws(), &body).unwrap();
        assert_declared_round_trip(&s, &live.settings);
        prop_assert_eq!(live.state, DeploymentState::Ready);
        prop_assert_eq!(live.settings.image, None);
    }

    #[test]
    fn updates_keep_undeclared_live_fields(s in settings()) {
        let live = json!({
            "location": "westus2",
            "sku": {"name": "Default", "capacity": 3},
            "properties": {
                "endpointComputeType": "Managed",
                "instanceType": "Standard_DS3_v2",
                "codeConfiguration": {"codeId": "code-1", "scoringScript": "score.py"},
                "livenessProbe": {"period": "PT10S", "failureThreshold": 30},
                "appInsightsEnabled": true
            }
        });
        let body = deployment_body(&ws(), "westus2", Some(live), &s);
        prop_assert_eq!(&body["properties"]["appInsightsEnabled"], &json!(true));
        if s.instance_count.is_none() {
            prop_assert_eq!(&body["sku"]["capacity"], &json!(3));
        }
        if s.instance_type.is_none() {
            prop_assert_eq!(&body["properties"]["instanceType"], &json!("Standard_DS3_v2"));
        }
        if s.liveness_probe.as_ref().is_none_or(|p| p.failure_threshold.is_none()) {
            prop_assert_eq!(&body["properties"]["livenessProbe"]["failureThreshold"], &json!(30));
        }
    }
}

#[test]
fn registered_assets_are_sent_as_workspace_arm_ids() {
    let s = DeploymentSettings {
        model: Some(AssetRef::parse("azureml:model-1:1")),
        environment: Some(AssetRef::parse("azureml:env:3")),
        ..Default::default()
    };
    let body = deployment_body(&ws(), "westus2", None, &s);
    assert_eq!(
        body["properties"]["model"],
        json!(format!("{}/models/model-1/versions/1", ws().id))
    );
    assert_eq!(
        body["properties"]["environmentId"],
        json!(format!("{}/environments/env/versions/3", ws().id))
    );
    assert_eq!(body["properties"]["endpointComputeType"], json!("Managed"));
    assert_eq!(body["sku"], json!({"name": "Default", "capacity": 1}));
}

#[test]
fn assets_of_another_workspace_stay_ids() {
    let other = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/other/models/m/versions/1";
    assert_eq!(
        ws().asset_from_arm("models", other),
        AssetRef::Id { id: other.into() }
    );
    let upper = format!("{}/models/m/versions/2", ws().id.to_uppercase());
    assert_eq!(
        ws().asset_from_arm("models", &upper),
        AssetRef::Registered {
            name: "m".into(),
            version: "2".into()
        }
    );
}

#[test]
fn endpoints_map_auth_mode_access_traffic_and_scoring_uri() {
    let body = json!({
        "name": "scoring",
        "tags": {"team": "ml"},
        "properties": {
            "authMode": "AMLToken",
            "description": "d",
            "publicNetworkAccess": "Disabled",
            "traffic": {"blue": 90, "green": 10},
            "mirrorTraffic": null,
            "scoringUri": "https://scoring.westus2.inference.ml.azure.com/score",
            "provisioningState": "Succeeded",
            "keys": null
        }
    });
    let e = endpoint_from_value(&body).unwrap();
    assert_eq!(e.settings.auth_mode, Some(AuthMode::AmlToken));
    assert_eq!(
        e.settings.public_network_access.as_deref(),
        Some("disabled")
    );
    assert_eq!(e.traffic.get("green"), Some(&10));
    assert!(e.mirror_traffic.is_empty());
    assert_eq!(
        e.scoring_uri.as_deref(),
        Some("https://scoring.westus2.inference.ml.azure.com/score")
    );

    let mut again = body.clone();
    strip_read_only(&mut again);
    overlay_endpoint(&mut again, &e.settings).unwrap();
    assert_eq!(again["properties"]["authMode"], json!("AMLToken"));
    assert_eq!(
        again["properties"]["publicNetworkAccess"],
        json!("Disabled")
    );
    assert!(again.get("name").is_none());
    assert!(again["properties"].get("scoringUri").is_none());
    assert!(again["properties"].get("keys").is_none());
}

#[test]
fn created_endpoints_default_to_key_auth_with_empty_traffic() {
    let body = endpoint_create_body(&EndpointSettings::default(), "westus2").unwrap();
    assert_eq!(
        body,
        json!({"location": "westus2", "properties": {"authMode": "Key", "traffic": {}, "mirrorTraffic": {}}})
    );
    let bad = EndpointSettings {
        public_network_access: Some("sometimes".into()),
        ..Default::default()
    };
    assert!(endpoint_create_body(&bad, "westus2").is_err());
}

#[test]
fn only_succeeded_failed_and_canceled_are_terminal() {
    assert_eq!(deployment_state(Some("Succeeded")), DeploymentState::Ready);
    assert!(matches!(
        deployment_state(Some("Canceled")),
        DeploymentState::Failed { .. }
    ));
    for busy in [
        "Creating",
        "Updating",
        "Scaling",
        "Deleting",
        "SomethingNew",
    ] {
        assert_eq!(
            deployment_state(Some(busy)),
            DeploymentState::Provisioning,
            "{busy}"
        );
    }
}
