//! The azureml backend against a scripted loopback ARM fake: the request sequence and body shape
//! of each plan action and read_live paging.

use flightdeck::backend::Backend;
use flightdeck::model::{
    AssetRef, AuthMode, DeploymentSettings, DeploymentState, EndpointSettings, Probe,
};
use flightdeck::plan::{Action, FieldChange};
use flightdeck_testkit::arm_fake::*;
use serde_json::json;

#[tokio::test]
async fn read_live_follows_next_links_and_lists_deployments_once_per_endpoint() {
    let fake = Fake::start().await;
    fake.on(
        "GET",
        &eps(""),
        vec![Canned::json(
            200,
            json!({
                "value": [endpoint_body("a", "Succeeded", json!({"blue": 100}), json!(null))],
                "nextLink": format!("{{base}}{}?api-version=2025-12-01&$skipToken=p2", eps(""))
            }),
        )],
    );
    fake.on_query(
        "GET",
        &eps(""),
        "skipToken=p2",
        vec![Canned::json(
            200,
            json!({"value": [endpoint_body("b", "Succeeded", json!({}), json!({}))]}),
        )],
    );
    fake.on(
        "GET",
        &eps("/a/deployments"),
        vec![Canned::json(
            200,
            json!({
                "value": [deployment_body("blue", "Succeeded", 2)],
                "nextLink": format!("{{base}}{}?api-version=2025-12-01&$skipToken=d2", eps("/a/deployments"))
            }),
        )],
    );
    fake.on_query(
        "GET",
        &eps("/a/deployments"),
        "skipToken=d2",
        vec![Canned::json(
            200,
            json!({"value": [deployment_body("green", "Creating", 1)], "nextLink": null}),
        )],
    );
    fake.on(
        "GET",
        &eps("/b/deployments"),
        vec![Canned::json(200, json!({"value": []}))],
    );

    let live = backend(&fake).read_live().await.unwrap();

    assert_eq!(live.endpoints.len(), 2);
    let a = &live.endpoints["a"];
    assert_eq!(a.traffic, weights(&[("blue", 100)]));
    assert_eq!(a.settings.auth_mode, Some(AuthMode::Key));
    assert_eq!(a.settings.public_network_access.as_deref(), Some("enabled"));
    assert!(a.scoring_uri.as_deref().unwrap().ends_with("/score/a"));
    let blue = &a.deployments["blue"];
    assert_eq!(blue.state, DeploymentState::Ready);
    assert_eq!(blue.settings.instance_count, Some(2));
    assert_eq!(
        blue.settings.model,
        Some(AssetRef::Registered {
            name: "model-1".into(),
            version: "1".into()
        })
    );
    assert_eq!(
        blue.settings.liveness_probe.as_ref().unwrap().period,
        Some(10)
    );
    assert_eq!(
        blue.settings
            .request_settings
            .as_ref()
            .unwrap()
            .request_timeout_ms,
        Some(5000)
    );
    assert_eq!(a.deployments["green"].state, DeploymentState::Provisioning);

    // Two endpoint pages + two deployment pages for a + one for b: nothing fetched one by one.
    let log = fake.log();
    assert_eq!(log.len(), 5, "{:?}", fake.lines());
    assert!(
        log.iter()
            .all(|s| s.api_version().as_deref() == Some("2025-12-01"))
    );
    assert!(log.iter().all(|s| s.header("authorization")
        == Some(&format!(
            "Bearer {TOKEN}|https://management.azure.com/.default"
        ))));
    fake.stop().await;
}

#[tokio::test(start_paused = true)]
async fn creating_an_endpoint_puts_key_auth_and_empty_traffic_then_follows_the_async_operation() {
    let fake = Fake::start().await;
    let e = eps("/scoring");
    fake.on(
        "PUT",
        &e,
        vec![
            Canned::json(
                201,
                endpoint_body("scoring", "Creating", json!({}), json!({})),
            )
            .header(
                "Azure-AsyncOperation",
                "{base}/ops/1?api-version=2025-12-01",
            )
            .header("Retry-After", "1"),
        ],
    );
    fake.on(
        "GET",
        "/ops/1",
        vec![
            Canned::json(200, op_status("InProgress")),
            Canned::json(200, op_status("Succeeded")),
        ],
    );
    fake.on(
        "GET",
        &e,
        vec![Canned::json(
            200,
            endpoint_body("scoring", "Succeeded", json!({}), json!({})),
        )],
    );

    let settings = EndpointSettings {
        description: Some("d".into()),
        ..Default::default()
    };
    // Paused time: the waits below are virtual, the assertion is on what the client chose.
    let started = tokio::time::Instant::now();
    backend(&fake)
        .execute(&step("scoring", Action::CreateEndpoint { settings }))
        .await
        .unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_millis(200),
        "Retry-After is capped: waited {:?}",
        started.elapsed()
    );

    assert_eq!(
        fake.lines(),
        vec![
            format!("PUT {e}"),
            "GET /ops/1".into(),
            "GET /ops/1".into(),
            format!("GET {e}")
        ]
    );
    let put = &fake.log()[0];
    assert_eq!(put.api_version().as_deref(), Some("2025-12-01"));
    assert_eq!(put.header("content-type"), Some("application/json"));
    assert_eq!(
        put.json(),
        json!({"location": "westus2", "properties": {"authMode": "Key", "traffic": {}, "mirrorTraffic": {}, "description": "d"}})
    );
    fake.stop().await;
}

#[tokio::test]
async fn updating_endpoint_settings_gets_modifies_and_puts_the_whole_endpoint() {
    let fake = Fake::start().await;
    let e = eps("/scoring");
    let live = endpoint_body(
        "scoring",
        "Succeeded",
        json!({"blue": 90, "green": 10}),
        json!({"green": 5}),
    );
    fake.on("GET", &e, vec![Canned::json(200, live)]);
    fake.on(
        "PUT",
        &e,
        vec![Canned::json(
            200,
            endpoint_body("scoring", "Succeeded", json!({}), json!({})),
        )],
    );

    let settings = EndpointSettings {
        auth_mode: Some(AuthMode::AmlToken),
        public_network_access: Some("disabled".into()),
        ..Default::default()
    };
    let changes = vec![FieldChange {
        field: "auth_mode".into(),
        from: Some("key".into()),
        to: "aml_token".into(),
    }];
    backend(&fake)
        .execute(&step(
            "scoring",
            Action::UpdateEndpoint { settings, changes },
        ))
        .await
        .unwrap();

    assert_eq!(fake.lines(), vec![format!("GET {e}"), format!("PUT {e}")]);
    let body = fake.log()[1].json();
    assert_eq!(body["properties"]["authMode"], "AMLToken");
    assert_eq!(body["properties"]["publicNetworkAccess"], "Disabled");
    assert_eq!(
        body["properties"]["description"], "scores",
        "undeclared settings are kept"
    );
    assert_eq!(
        body["properties"]["traffic"],
        json!({"blue": 90, "green": 10}),
        "R8: traffic kept"
    );
    assert_eq!(body["properties"]["mirrorTraffic"], json!({"green": 5}));
    assert_eq!(
        body["identity"],
        json!({"type": "SystemAssigned"}),
        "read-only identity ids dropped"
    );
    for read_only in ["id", "name", "type", "systemData"] {
        assert!(
            body.get(read_only).is_none(),
            "{read_only} must not be sent"
        );
    }
    for read_only in ["provisioningState", "scoringUri", "swaggerUri", "keys"] {
        assert!(
            body["properties"].get(read_only).is_none(),
            "{read_only} must not be sent"
        );
    }
    fake.stop().await;
}

#[tokio::test]
async fn a_tags_only_endpoint_update_is_a_patch_followed_through_its_location() {
    let fake = Fake::start().await;
    let e = eps("/scoring");
    fake.on(
        "PATCH",
        &e,
        vec![
            Canned::empty(202)
                .header("Location", "{base}/results/7")
                .header("Retry-After", "5"),
        ],
    );
    fake.on(
        "GET",
        "/results/7",
        vec![Canned::empty(202), Canned::empty(200)],
    );
    fake.on(
        "GET",
        &e,
        vec![Canned::json(
            200,
            endpoint_body("scoring", "Succeeded", json!({}), json!({})),
        )],
    );

    let tags = [("team".to_string(), "search".to_string())].into();
    let settings = EndpointSettings {
        tags: Some(tags),
        ..Default::default()
    };
    let changes = vec![FieldChange {
        field: "tags".into(),
        from: None,
        to: "team=search".into(),
    }];
    backend(&fake)
        .execute(&step(
            "scoring",
            Action::UpdateEndpoint { settings, changes },
        ))
        .await
        .unwrap();

    // The GET first: the PATCH sends the live rollout tags back with the declared ones.
    assert_eq!(
        fake.lines(),
        vec![
            format!("GET {e}"),
            format!("PATCH {e}"),
            "GET /results/7".into(),
            "GET /results/7".into(),
            format!("GET {e}")
        ]
    );
    assert_eq!(fake.log()[1].json(), json!({"tags": {"team": "search"}}));
    fake.stop().await;
}

fn green_settings() -> DeploymentSettings {
    DeploymentSettings {
        model: Some(AssetRef::parse("azureml:model-1:2")),
        environment: Some(AssetRef::Id {
            id: "azureml://registries/azureml/environments/sklearn/versions/1".into(),
        }),
        instance_type: Some("Standard_DS3_v2".into()),
        instance_count: Some(2),
        readiness_probe: Some(Probe {
            period: Some(5),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn creating_a_deployment_puts_a_managed_body_with_sku_capacity_and_waits_for_success() {
    let fake = Fake::start().await;
    let d = eps("/scoring/deployments/green");
    fake.on(
        "PUT",
        &d,
        vec![
            Canned::json(201, deployment_body("green", "Creating", 2))
                .header("Azure-AsyncOperation", "{base}/ops/green"),
        ],
    );
    fake.on(
        "GET",
        "/ops/green",
        vec![Canned::json(200, op_status("Succeeded"))],
    );
    fake.on(
        "GET",
        &d,
        vec![Canned::json(200, deployment_body("green", "Succeeded", 2))],
    );

    let outcome = backend(&fake)
        .execute(&step(
            "scoring",
            Action::CreateDeployment {
                deployment: "green".into(),
                settings: Box::new(green_settings()),
            },
        ))
        .await
        .unwrap();
    assert!(
        outcome.detail.starts_with("provisioned in"),
        "{}",
        outcome.detail
    );

    let body = fake.log()[0].json();
    assert_eq!(body["location"], "westus2");
    assert_eq!(body["sku"], json!({"name": "Default", "capacity": 2}));
    assert_eq!(body["properties"]["endpointComputeType"], "Managed");
    assert_eq!(
        body["properties"]["model"],
        format!("{WS}/models/model-1/versions/2")
    );
    assert_eq!(
        body["properties"]["environmentId"],
        "azureml://registries/azureml/environments/sklearn/versions/1"
    );
    assert_eq!(
        body["properties"]["readinessProbe"],
        json!({"period": "PT5S"})
    );
    assert_eq!(fake.lines().last().unwrap(), &format!("GET {d}"));
    fake.stop().await;
}

#[tokio::test]
async fn updating_a_deployment_keeps_create_only_fields_from_the_live_resource() {
    let fake = Fake::start().await;
    let d = eps("/scoring/deployments/blue");
    fake.on(
        "GET",
        &d,
        vec![Canned::json(200, deployment_body("blue", "Succeeded", 3))],
    );
    fake.on(
        "PUT",
        &d,
        vec![Canned::json(200, deployment_body("blue", "Succeeded", 3))],
    );

    let settings = DeploymentSettings {
        model: Some(AssetRef::parse("azureml:model-1:9")),
        ..Default::default()
    };
    backend(&fake)
        .execute(&step(
            "scoring",
            Action::UpdateDeployment {
                deployment: "blue".into(),
                settings: Box::new(settings),
                changes: vec![],
            },
        ))
        .await
        .unwrap();

    assert_eq!(fake.lines(), vec![format!("GET {d}"), format!("PUT {d}")]);
    let body = fake.log()[1].json();
    assert_eq!(
        body["properties"]["model"],
        format!("{WS}/models/model-1/versions/9")
    );
    assert_eq!(
        body["properties"]["instanceType"], "Standard_DS3_v2",
        "R13: create-only kept"
    );
    assert_eq!(
        body["properties"]["codeConfiguration"]["scoringScript"],
        "score.py"
    );
    assert_eq!(body["sku"]["capacity"], 3, "scaling is its own step");
    assert!(body["properties"].get("provisioningState").is_none());
    fake.stop().await;
}

#[tokio::test]
async fn scaling_patches_only_the_sku_capacity_and_waits_through_scaling() {
    let fake = Fake::start().await;
    let d = eps("/scoring/deployments/blue");
    fake.on(
        "PATCH",
        &d,
        vec![Canned::empty(202).header("Location", "{base}/results/s")],
    );
    fake.on(
        "GET",
        "/results/s",
        vec![Canned::empty(202), Canned::empty(200)],
    );
    fake.on(
        "GET",
        &d,
        vec![
            Canned::json(200, deployment_body("blue", "Scaling", 4)),
            Canned::json(200, deployment_body("blue", "Succeeded", 4)),
        ],
    );

    backend(&fake)
        .execute(&step(
            "scoring",
            Action::ScaleDeployment {
                deployment: "blue".into(),
                from: 2,
                to: 4,
            },
        ))
        .await
        .unwrap();

    assert_eq!(fake.log()[0].json(), json!({"sku": {"capacity": 4}}));
    assert_eq!(fake.count("GET", &d), 2, "{:?}", fake.lines());
    fake.stop().await;
}

#[tokio::test]
async fn wait_ready_polls_the_deployment_until_it_is_terminal() {
    let fake = Fake::start().await;
    let d = eps("/scoring/deployments/blue");
    fake.on(
        "GET",
        &d,
        vec![
            Canned::json(200, deployment_body("blue", "Creating", 1)),
            Canned::json(200, deployment_body("blue", "Updating", 1)),
            Canned::json(200, deployment_body("blue", "Succeeded", 1)),
        ],
    );
    backend(&fake)
        .execute(&step(
            "scoring",
            Action::WaitReady {
                deployment: "blue".into(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(fake.count("GET", &d), 3);

    fake.on(
        "GET",
        &d,
        vec![Canned::json(200, deployment_body("blue", "Failed", 1))],
    );
    let err = backend(&fake)
        .execute(&step(
            "scoring",
            Action::WaitReady {
                deployment: "blue".into(),
            },
        ))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("endpoint scoring: deployment blue"),
        "{err}"
    );
    fake.stop().await;
}

#[tokio::test]
async fn set_traffic_and_set_mirror_traffic_send_both_maps_exactly() {
    let fake = Fake::start().await;
    let e = eps("/scoring");
    fake.on(
        "GET",
        &e,
        vec![Canned::json(
            200,
            endpoint_body(
                "scoring",
                "Succeeded",
                json!({"blue": 100}),
                json!({"green": 10}),
            ),
        )],
    );
    fake.on(
        "PUT",
        &e,
        vec![Canned::json(
            200,
            endpoint_body("scoring", "Succeeded", json!({}), json!({})),
        )],
    );
    let b = backend(&fake);

    b.execute(&step(
        "scoring",
        Action::SetTraffic {
            traffic: weights(&[("blue", 90), ("green", 10)]),
        },
    ))
    .await
    .unwrap();
    let put = fake.log()[1].json();
    assert_eq!(
        put["properties"]["traffic"],
        json!({"blue": 90, "green": 10})
    );
    assert_eq!(
        put["properties"]["mirrorTraffic"],
        json!({"green": 10}),
        "mirror kept as it was"
    );

    b.execute(&step(
        "scoring",
        Action::SetMirrorTraffic {
            mirror_traffic: weights(&[]),
        },
    ))
    .await
    .unwrap();
    let put = fake.log()[3].json();
    assert_eq!(
        put["properties"]["traffic"],
        json!({"blue": 100}),
        "traffic kept as it was"
    );
    assert_eq!(put["properties"]["mirrorTraffic"], json!({}));
    assert_eq!(put["properties"]["authMode"], "Key");
    fake.stop().await;
}

#[tokio::test]
async fn deletes_follow_location_until_done_and_treat_missing_resources_as_deleted() {
    let fake = Fake::start().await;
    let d = eps("/scoring/deployments/blue");
    fake.on(
        "DELETE",
        &d,
        vec![Canned::empty(202).header("Location", "{base}/results/del")],
    );
    fake.on(
        "GET",
        "/results/del",
        vec![Canned::empty(202), Canned::empty(202), Canned::empty(204)],
    );
    let b = backend(&fake);
    b.execute(&step(
        "scoring",
        Action::DeleteDeployment {
            deployment: "blue".into(),
        },
    ))
    .await
    .unwrap();
    assert_eq!(fake.count("GET", "/results/del"), 3);

    let e = eps("/gone");
    fake.on("DELETE", &e, vec![Canned::empty(204)]);
    b.execute(&step("gone", Action::DeleteEndpoint))
        .await
        .unwrap();
    fake.on(
        "DELETE",
        &e,
        vec![Canned::error(404, "ResourceNotFound", "no such endpoint")],
    );
    b.execute(&step("gone", Action::DeleteEndpoint))
        .await
        .unwrap();
    fake.stop().await;
}
