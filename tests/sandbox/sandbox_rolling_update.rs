//! A deployment keeps serving its previous version while an update or scale is in progress,
//! as a real rolling update does, and after an update fails; it switches once the new version
//! is provisioned. Real HTTP against an in-process sandbox; the operation under test is held
//! in progress (`/_sandbox/operations/hold`) while the requests are sent, so they land during it
//! whatever the machine's load, and released to let it end.

use flightdeck_testkit::sandbox::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn start() -> Env {
    let env = Env::start().await;
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

/// Holds the next operation of blue in progress, until [`Env::release`].
async fn hold_blue(env: &Env) {
    env.hold(json!({"endpoint": "e1", "deployment": "blue", "times": 1}))
        .await;
}

/// The requests above must have been sent while the operation ran, or they prove nothing: it
/// is still in `state`, held.
async fn assert_still(env: &Env, state: &str) {
    assert_eq!(state_of_blue(env).await, state);
    let held = env.held().await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["deployment"], "blue");
}

#[tokio::test]
async fn an_updating_deployment_serves_its_previous_model_until_the_update_succeeds() {
    let env = start().await;
    hold_blue(&env).await;
    let r = env
        .put(&env.dep_url("e1", "blue"), &deployment_body("model-v2", 1))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(served_model(&env).await, "model-v1");
    assert_still(&env, "Updating").await;

    assert_eq!(env.release().await.len(), 1);
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

    hold_blue(&env).await;
    env.put(&env.dep_url("e1", "blue"), &deployment_body("model-v3", 1))
        .await;
    assert_eq!(served_model(&env).await, "model-v1");
    assert_still(&env, "Updating").await;
    assert_eq!(env.release().await.len(), 1);
    env.wait_terminal(&env.dep_url("e1", "blue")).await;
    assert_eq!(served_model(&env).await, "model-v3");
}

#[tokio::test]
async fn a_scaling_deployment_keeps_serving() {
    let env = start().await;
    hold_blue(&env).await;
    let r = env
        .patch(&env.dep_url("e1", "blue"), &json!({"sku": {"capacity": 3}}))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(served_model(&env).await, "model-v1");
    assert_still(&env, "Scaling").await;

    assert_eq!(env.release().await.len(), 1);
    let done = env.wait_terminal(&env.dep_url("e1", "blue")).await;
    assert_eq!(done["sku"]["capacity"], 3);
    assert_eq!(served_model(&env).await, "model-v1");
}
