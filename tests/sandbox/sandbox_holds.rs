//! Operation holds (`/_sandbox/operations`, docs/sandbox.md): a held operation stays in its
//! non-terminal state, its LRO answering InProgress, until the test releases it.

use std::time::Duration;

use flightdeck::sandbox::SandboxConfig;
use flightdeck_testkit::sandbox::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn start(delay: Duration) -> Env {
    Env::start_with(SandboxConfig {
        provisioning_delay: delay,
        ..SandboxConfig::default()
    })
    .await
}

fn state(body: &Value) -> &str {
    body["properties"]["provisioningState"].as_str().unwrap()
}

// Paused time: ten minutes pass on the sandbox clock, far beyond the 2 s provisioning delay
// (and within the ARM token's lifetime).
#[tokio::test(start_paused = true)]
async fn a_held_operation_stays_in_progress_until_released_then_ends_as_it_would_have() {
    let env = start(Duration::from_secs(2)).await;
    env.hold(json!({"endpoint": "e1"})).await;
    let r = env
        .put(&env.ep_url("e1"), &endpoint_body("Key", json!({})))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let status_url = r.headers()["azure-asyncoperation"]
        .to_str()
        .unwrap()
        .to_string();

    tokio::time::advance(Duration::from_secs(600)).await;
    assert_eq!(state(&env.get_json(&env.ep_url("e1")).await), "Creating");
    assert_eq!(env.get_json(&status_url).await["status"], "InProgress");
    let (status, code, _) = error_code(
        env.put(&env.ep_url("e1"), &endpoint_body("Key", json!({})))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "Conflict"));
    let held = env.held().await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(
        (
            &held[0]["endpoint"],
            &held[0]["deployment"],
            &held[0]["kind"]
        ),
        (&json!("e1"), &Value::Null, &json!("Create"))
    );

    let released = env.release().await;
    assert_eq!(released.len(), 1, "{released:?}");
    assert_eq!(released[0]["id"], held[0]["id"]);
    // Its delay is long over: it ends at once, as it would have without the hold.
    assert_eq!(state(&env.get_json(&env.ep_url("e1")).await), "Succeeded");
    assert_eq!(env.get_json(&status_url).await["status"], "Succeeded");
    let listing = env.sandbox_json("/_sandbox/operations").await;
    assert_eq!(listing, json!({"holds": [], "held": []}));
}

#[tokio::test(start_paused = true)]
async fn a_deployment_hold_with_times_catches_only_the_next_operation_of_that_deployment() {
    let env = start(Duration::from_millis(50)).await;
    env.hold(json!({"endpoint": "e1", "deployment": "blue", "times": 1}))
        .await;
    // The endpoint's own operation is not the deployment's: it runs as usual.
    env.create_endpoint("e1", "Key").await;
    let r = env
        .put(&env.dep_url("e1", "blue"), &deployment_body("m1", 1))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    tokio::time::advance(Duration::from_secs(600)).await;
    assert_eq!(
        state(&env.get_json(&env.dep_url("e1", "blue")).await),
        "Creating"
    );
    let listing = env.sandbox_json("/_sandbox/operations").await;
    assert_eq!(listing["holds"], json!([]), "a used-up hold is removed");
    assert_eq!(listing["held"][0]["deployment"], "blue");

    assert_eq!(env.release().await.len(), 1);
    let body = env.wait_terminal(&env.dep_url("e1", "blue")).await;
    assert_eq!(state(&body), "Succeeded");
    // The hold caught one operation: the next update of blue is not held.
    let r = env
        .put(&env.dep_url("e1", "blue"), &deployment_body("m2", 1))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body = env.wait_terminal(&env.dep_url("e1", "blue")).await;
    assert_eq!(state(&body), "Succeeded");
    assert!(env.held().await.is_empty());
}

#[tokio::test]
async fn a_bad_hold_is_refused_with_400_and_changes_nothing() {
    let env = start(Duration::from_millis(10)).await;
    for (body, needle) in [
        (json!({"times": 0}), "times must be at least 1"),
        (
            json!({"endpoint": "e1", "typo": true}),
            "unknown field `typo`",
        ),
        (json!({"endpoint": ""}), "must not be empty"),
    ] {
        let r = env
            .http
            .post(format!("{}/_sandbox/operations/hold", env.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let err: Value = r.json().await.unwrap();
        assert!(
            err["error"].as_str().unwrap().contains(needle),
            "{body}: {err}"
        );
    }
    let listing = env.sandbox_json("/_sandbox/operations").await;
    assert_eq!(listing, json!({"holds": [], "held": []}));
    // Nothing is held: an operation runs as usual, and a release has nothing to release.
    env.create_endpoint("e1", "Key").await;
    assert_eq!(env.release().await, Vec::<Value>::new());
}
