//! One test per service-side rule the sandbox enforces [AML §4.2 R1–R6, R8–R15],
//! driven over HTTP.

use flightdeck_testkit::sandbox::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn endpoint_with(env: &Env, deps: &[&str]) {
    env.create_endpoint("e1", "Key").await;
    for d in deps {
        env.create_deployment("e1", d, "m").await;
    }
}

async fn assert_bad(env: &Env, traffic: Value, mirror: Option<Value>, needle: &str) {
    let (status, body) = env.set_traffic("e1", traffic, mirror).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "BadArgument");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
}

#[tokio::test]
async fn r1_traffic_must_sum_to_100_unless_all_zero() {
    let env = Env::start().await;
    endpoint_with(&env, &["blue", "green"]).await;
    assert_bad(&env, json!({"blue": 90}), None, "sum to 100").await;
    assert_bad(&env, json!({"blue": 60, "green": 60}), None, "sum to 100").await;
    assert_bad(&env, json!({"blue": 1.5}), None, "integer").await;
    assert!(
        env.set_traffic("e1", json!({"blue": 0, "green": 0}), None)
            .await
            .0
            .is_success()
    );
    assert!(
        env.set_traffic("e1", json!({"blue": 90, "green": 10}), None)
            .await
            .0
            .is_success()
    );
}

#[tokio::test]
async fn r2_traffic_keys_must_be_existing_succeeded_deployments() {
    let env = Env::start().await;
    endpoint_with(&env, &["blue"]).await;
    assert_bad(&env, json!({"ghost": 100}), None, "does not exist").await;
    env.add_fault(json!({"endpoint": "e1", "deployment": "red", "fail_provisioning": true}))
        .await;
    env.put(&env.dep_url("e1", "red"), &deployment_body("m", 1))
        .await;
    env.wait_terminal(&env.dep_url("e1", "red")).await;
    assert_bad(&env, json!({"red": 100}), None, "Failed").await;
    // The example body's traffic on create names a deployment that cannot exist yet.
    let r = env
        .put(
            &env.ep_url("e2"),
            &endpoint_body("Key", json!({"blue": 100})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn r3_mirror_traffic_sums_to_at_most_50() {
    let env = Env::start().await;
    endpoint_with(&env, &["blue", "green"]).await;
    assert_bad(
        &env,
        json!({"blue": 100, "green": 0}),
        Some(json!({"green": 51})),
        "at most 50",
    )
    .await;
    assert!(
        env.set_traffic(
            "e1",
            json!({"blue": 100, "green": 0}),
            Some(json!({"green": 50}))
        )
        .await
        .0
        .is_success()
    );
}

#[tokio::test]
async fn r4_mirror_traffic_targets_one_deployment() {
    let env = Env::start().await;
    endpoint_with(&env, &["blue", "green", "red"]).await;
    assert_bad(
        &env,
        json!({"blue": 100}),
        Some(json!({"green": 10, "red": 10})),
        "only one",
    )
    .await;
}

#[tokio::test]
async fn r5_a_deployment_cannot_get_live_and_mirrored_traffic() {
    let env = Env::start().await;
    endpoint_with(&env, &["blue", "green"]).await;
    assert_bad(
        &env,
        json!({"blue": 90, "green": 10}),
        Some(json!({"green": 10})),
        "both live and mirrored",
    )
    .await;
}

#[tokio::test]
async fn r6_kubernetes_endpoints_cannot_mirror() {
    let env = Env::start().await;
    let mut body = endpoint_body("Key", json!({}));
    body["properties"]["compute"] = json!("/subscriptions/x/computes/aks");
    assert_eq!(
        env.put(&env.ep_url("k1"), &body).await.status(),
        StatusCode::CREATED
    );
    env.wait_terminal(&env.ep_url("k1")).await;
    let mut dep = deployment_body("m", 1);
    dep["properties"]["endpointComputeType"] = json!("Kubernetes");
    assert_eq!(
        env.put(&env.dep_url("k1", "blue"), &dep).await.status(),
        StatusCode::CREATED
    );
    env.wait_terminal(&env.dep_url("k1", "blue")).await;
    assert_eq!(
        env.put(&env.dep_url("k1", "green"), &dep).await.status(),
        StatusCode::CREATED
    );
    env.wait_terminal(&env.dep_url("k1", "green")).await;
    body["properties"]["traffic"] = json!({"blue": 100});
    body["properties"]["mirrorTraffic"] = json!({"green": 10});
    let (status, code, msg) = error_code(env.put(&env.ep_url("k1"), &body).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "BadArgument")
    );
    assert!(msg.contains("kubernetes"));
}

#[tokio::test]
async fn r8_put_is_a_full_replace() {
    let env = Env::start().await;
    endpoint_with(&env, &["blue", "green"]).await;
    assert!(
        env.set_traffic(
            "e1",
            json!({"blue": 100, "green": 0}),
            Some(json!({"green": 20}))
        )
        .await
        .0
        .is_success()
    );
    // A PUT without traffic/mirrorTraffic/description clears them.
    let r = env
        .put(
            &env.ep_url("e1"),
            &json!({"location": "westus2", "properties": {"authMode": "Key"}}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let ep = env.wait_terminal(&env.ep_url("e1")).await;
    assert_eq!(ep["properties"]["traffic"], json!({}));
    assert!(ep["properties"].get("mirrorTraffic").is_none());
    assert!(ep["properties"].get("description").is_none());
    assert_eq!(ep["tags"], json!({}));
}

#[tokio::test]
async fn r9_a_deployment_with_traffic_cannot_be_deleted() {
    let env = Env::start().await;
    endpoint_with(&env, &["blue"]).await;
    env.set_traffic("e1", json!({"blue": 100}), None).await;
    let (status, code, msg) = error_code(env.delete(&env.dep_url("e1", "blue")).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "BadArgument")
    );
    assert!(msg.contains("traffic"));
    env.set_traffic("e1", json!({"blue": 0}), None).await;
    assert_eq!(
        env.delete(&env.dep_url("e1", "blue")).await.status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn r10_deleting_an_endpoint_deletes_its_deployments() {
    let env = Env::start_slow().await;
    endpoint_with(&env, &["blue"]).await;
    env.set_traffic("e1", json!({"blue": 100}), None).await;
    assert_eq!(
        env.delete(&env.ep_url("e1")).await.status(),
        StatusCode::ACCEPTED
    );
    let dep = env.get_json(&env.dep_url("e1", "blue")).await;
    assert_eq!(dep["properties"]["provisioningState"], "Deleting");
    env.wait_gone(&env.ep_url("e1")).await;
    assert_eq!(
        env.get(&env.dep_url("e1", "blue")).await.status(),
        StatusCode::NOT_FOUND
    );
    // The name is free again.
    env.create_endpoint("e1", "Key").await;
    let deps = env
        .get_json(&format!("{}/deployments", env.ep_url("e1")))
        .await;
    assert_eq!(deps["value"], json!([]));
}

#[tokio::test]
async fn r11_a_deployment_needs_an_existing_endpoint() {
    let env = Env::start().await;
    let (status, code, _) = error_code(
        env.put(&env.dep_url("nope", "blue"), &deployment_body("m", 1))
            .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "ResourceNotFound")
    );
}

#[tokio::test]
async fn r12_endpoint_names_are_unique_per_region_across_workspaces() {
    let env = Env::start().await;
    env.create_endpoint("shared-name", "Key").await;
    let other = format!(
        "{}{}/onlineEndpoints/shared-name",
        env.base,
        env.ws_path("other-ws")
    );
    let (status, code, msg) =
        error_code(env.put(&other, &endpoint_body("Key", json!({}))).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "Conflict"));
    assert!(msg.contains("unique within a region"));
    let upper = env.ep_url("SHARED-NAME");
    assert_eq!(
        env.put(&upper, &endpoint_body("Key", json!({})))
            .await
            .status(),
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn r13_create_only_fields_cannot_change() {
    let env = Env::start().await;
    endpoint_with(&env, &["blue"]).await;
    let mut body = deployment_body("m", 1);
    body["properties"]["instanceType"] = json!("Standard_F8s_v2");
    let (status, _, msg) = error_code(env.put(&env.dep_url("e1", "blue"), &body).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("instanceType"));
    let mut body = deployment_body("m", 1);
    body["properties"]["codeConfiguration"]["scoringScript"] = json!("other.py");
    let (status, _, msg) = error_code(env.put(&env.dep_url("e1", "blue"), &body).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("codeConfiguration"));
    let mut body = endpoint_body("Key", json!({}));
    body["location"] = json!("eastus");
    assert_eq!(
        env.put(&env.ep_url("e1"), &body).await.status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn r14_deployment_compute_type_must_match_the_endpoint() {
    let env = Env::start().await;
    env.create_endpoint("e1", "Key").await;
    let mut body = deployment_body("m", 1);
    body["properties"]["endpointComputeType"] = json!("Kubernetes");
    assert_eq!(
        env.put(&env.dep_url("e1", "blue"), &body).await.status(),
        StatusCode::BAD_REQUEST
    );
    body["properties"]["endpointComputeType"] = json!("AzureMLCompute");
    assert_eq!(
        env.put(&env.dep_url("e1", "blue"), &body).await.status(),
        StatusCode::BAD_REQUEST
    );
    let mut bad_location = deployment_body("m", 1);
    bad_location["location"] = json!("northeurope");
    assert_eq!(
        env.put(&env.dep_url("e1", "blue"), &bad_location)
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn r15_patch_bodies_accept_only_their_fields() {
    let env = Env::start().await;
    endpoint_with(&env, &["blue"]).await;
    let r = env
        .patch(
            &env.ep_url("e1"),
            &json!({"properties": {"traffic": {"blue": 100}}}),
        )
        .await;
    let (status, code, _) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "BadArgument")
    );
    let r = env
        .patch(
            &env.dep_url("e1", "blue"),
            &json!({"properties": {"model": "m2"}}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = env
        .patch(
            &env.dep_url("e1", "blue"),
            &json!({"tags": {"a": "b"}, "sku": {"capacity": 2}}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn invalid_bodies_get_clear_400s() {
    let env = Env::start().await;
    let r = env
        .http
        .put(env.ep_url("e1"))
        .query(&[("api-version", API)])
        .bearer_auth(&env.token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, _, msg) = error_code(r).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("not valid JSON"));
    let (status, _, msg) = error_code(
        env.put(&env.ep_url("-bad-name"), &endpoint_body("Key", json!({})))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("invalid endpoint name"));
    let mut body = endpoint_body("Key", json!({}));
    body["properties"]["authMode"] = json!("Password");
    assert_eq!(
        env.put(&env.ep_url("e1"), &body).await.status(),
        StatusCode::BAD_REQUEST
    );
}
