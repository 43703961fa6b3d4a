//! A deployment keeps serving its previous version while an update or scale is in progress,
//! as a real rolling update does, and after an update fails; it switches once the new version
//! is provisioned. Real HTTP against an in-process sandbox whose operations take 600 ms.

use std::time::Duration;

use flightdeck::sandbox::SandboxConfig;
use flightdeck_testkit::sandbox::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Long enough that the requests sent right after a PUT land while it is in progress.
const OPERATION: Duration = Duration::from_millis(600);

async fn start() -> Env {
    let env = Env::start_with(SandboxConfig {
        provisioning_delay: OPERATION,
        ..Default::default()
    })
    .await;
    env.create_endpoint("e1", "Key").await;
    env.create_deployment("e1", "blue", "model-v1").await;
    let (status, _) = env.set_traffic("e1", json!({"blue": 100}), None).await;
    assert_eq!(status, StatusCode::OK);
    env
}

/// Scores once through the traffic split and once with the deployment header; both must be
/// answered by blue. Returns the model that answered.
async fn served_model(env: &Env) -> String {
    let ep = env.get_json(&env.ep_url("e1")).await;
    let url = ep["properties"]["scoringUri"].as_str().unwrap().to_string();
    let keys: Value = env
        .post(&format!("{}/listKeys", env.ep_url("e1")), None)
        .await
        .json()
        .await
        .unwrap();
    let key = keys["primaryKey"].as_str().unwrap();
    let mut models = Vec::new();
    for header in [None, Some("blue")] {
        let mut req = env
            .http
            .post(&url)
            .bearer_auth(key)
            .body(r#"{"data": [[1, 2]]}"#);
        if let Some(d) = header {
            req = req.header("azureml-model-deployment", d);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "header {header:?}");
        assert_eq!(r.headers()["azureml-model-deployment"], "blue");
        let body: Value = r.json().await.unwrap();
        models.push(body["model"].as_str().unwrap().to_string());
    }
    assert_eq!(models[0], models[1]);
    models.remove(0)
}

async fn state_of_blue(env: &Env) -> String {
    let body = env.get_json(&env.dep_url("e1", "blue")).await;
    body["properties"]["provisioningState"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The requests above must have been sent while the operation ran, or they prove nothing.
async fn assert_still(env: &Env, state: &str) {
    assert_eq!(
        state_of_blue(env).await,
        state,
        "the {OPERATION:?} operation ended before the requests were sent"
    );
}

#[tokio::test]
async fn an_updating_deployment_serves_its_previous_model_until_the_update_succeeds() {
    let env = start().await;
    let r = env
        .put(&env.dep_url("e1", "blue"), &deployment_body("model-v2", 1))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(served_model(&env).await, "model-v1");
    assert_still(&env, "Updating").await;

    let done = env.wait_terminal(&env.dep_url("e1", "blue")).await;
    assert_eq!(done["properties"]["provisioningState"], "Succeeded");
    assert_eq!(served_model(&env).await, "model-v2");
}

#[tokio::test]
async fn a_failed_update_keeps_the_previous_model_serving_and_the_next_update_replaces_it() {
    let env = start().await;
    env.add_fault(json!({"endpoint": "e1", "deployment": "blue", "fail_provisioning": true}))
        .await;
    env.put(
        &env.dep_url("e1", "blue"),
        &deployment_body("model-broken", 1),
    )
    .await;
    let failed = env.wait_terminal(&env.dep_url("e1", "blue")).await;
    assert_eq!(failed["properties"]["provisioningState"], "Failed");
    assert_eq!(served_model(&env).await, "model-v1");

    env.put(&env.dep_url("e1", "blue"), &deployment_body("model-v3", 1))
        .await;
    assert_eq!(served_model(&env).await, "model-v1");
    assert_still(&env, "Updating").await;
    env.wait_terminal(&env.dep_url("e1", "blue")).await;
    assert_eq!(served_model(&env).await, "model-v3");
}

#[tokio::test]
async fn a_scaling_deployment_keeps_serving() {
    let env = start().await;
    let r = env
        .patch(&env.dep_url("e1", "blue"), &json!({"sku": {"capacity": 3}}))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(served_model(&env).await, "model-v1");
    assert_still(&env, "Scaling").await;
}
