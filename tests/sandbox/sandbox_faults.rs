//! Fault injection and introspection (`/_sandbox/*`, docs/sandbox.md).

use std::time::Duration;

use tokio::time::Instant;

use flightdeck_testkit::sandbox::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn a_429_rule_answers_with_retry_after_for_its_times_then_stops() {
    let env = Env::start().await;
    env.add_fault(json!({"match": {"method": "PUT", "path_contains": "/onlineEndpoints/"}, "respond": {"status": 429, "retry_after": 3}, "times": 2})).await;
    for _ in 0..2 {
        let r = env
            .put(&env.ep_url("e1"), &endpoint_body("Key", json!({})))
            .await;
        assert_eq!(r.headers()["retry-after"], "3");
        let (status, code, _) = error_code(r).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests")
        );
    }
    assert_eq!(
        env.put(&env.ep_url("e1"), &endpoint_body("Key", json!({})))
            .await
            .status(),
        StatusCode::CREATED
    );
    let faults = env.sandbox_json("/_sandbox/faults").await;
    assert_eq!(faults["rules"], json!([]), "an exhausted rule is removed");
}

#[tokio::test]
async fn a_500_rule_with_a_custom_code_only_hits_matching_requests() {
    let env = Env::start().await;
    env.add_fault(json!({"match": {"method": "GET", "path_contains": "/deployments"}, "respond": {"status": 500, "code": "InternalServerError", "message": "boom"}})).await;
    env.create_endpoint("e1", "Key").await;
    for _ in 0..3 {
        let (status, code, msg) =
            error_code(env.get(&format!("{}/deployments", env.ep_url("e1"))).await).await;
        assert_eq!(
            (status, code.as_str(), msg.as_str()),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "boom"
            )
        );
    }
    let r = env
        .http
        .delete(format!("{}/_sandbox/faults", env.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        env.get(&format!("{}/deployments", env.ep_url("e1")))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_dropped_connection_gives_the_client_no_response_and_changes_nothing() {
    let env = Env::start().await;
    env.add_fault(json!({"match": {"method": "PUT"}, "drop_connection": true, "times": 1}))
        .await;
    let err = env
        .http
        .put(env.ep_url("e1"))
        .query(&[("api-version", API)])
        .bearer_auth(&env.token)
        .json(&endpoint_body("Key", json!({})))
        .send()
        .await
        .expect_err("the connection is closed without a response");
    assert!(!err.is_timeout());
    // The rule fired before the handler, so nothing was created; the log shows the drop.
    assert_eq!(
        env.get(&env.ep_url("e1")).await.status(),
        StatusCode::NOT_FOUND
    );
    let log = env.sandbox_json("/_sandbox/log").await;
    let put = log
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["method"] == "PUT")
        .unwrap();
    assert_eq!(put["status"], 0);
    assert_eq!(put["dropped"], true);
    // The next request works on a fresh connection.
    assert_eq!(
        env.put(&env.ep_url("e1"), &endpoint_body("Key", json!({})))
            .await
            .status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn a_drop_after_handling_loses_the_response_but_the_put_took_effect() {
    let env = Env::start().await;
    env.add_fault(json!({"match": {"method": "PUT"}, "drop_connection": true, "after_handling": true, "times": 1})).await;
    let sent = env
        .http
        .put(env.ep_url("e1"))
        .query(&[("api-version", API)])
        .bearer_auth(&env.token)
        .json(&endpoint_body("Key", json!({})))
        .send()
        .await;
    assert!(sent.is_err(), "the response is lost");
    let ep = env.wait_terminal(&env.ep_url("e1")).await;
    assert_eq!(ep["properties"]["provisioningState"], "Succeeded");
    let log = env.sandbox_json("/_sandbox/log").await;
    assert_eq!(log[0]["dropped"], true);
}

#[tokio::test]
async fn a_409_rule_emulates_a_conflicting_operation() {
    let env = Env::start().await;
    env.add_fault(json!({"match": {"path_contains": "/onlineEndpoints/e1"}, "respond": {"status": 409}, "times": 1})).await;
    let (status, code, _) = error_code(
        env.put(&env.ep_url("e1"), &endpoint_body("Key", json!({})))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "Conflict"));
}

// Paused time: the 30 s latency is slept on the sandbox clock, so eight answers take four
// minutes of tokio time and microseconds of real time.
#[tokio::test(start_paused = true)]
async fn error_rate_fails_every_nth_scoring_request_and_latency_delays_answers() {
    let env = Env::start().await;
    env.create_endpoint("e1", "Key").await;
    env.create_deployment("e1", "blue", "m").await;
    env.set_traffic("e1", json!({"blue": 100}), None).await;
    env.add_fault(
        json!({"endpoint": "e1", "deployment": "blue", "error_rate": 0.25, "latency_ms": 30_000}),
    )
    .await;
    let ep = env.get_json(&env.ep_url("e1")).await;
    let keys: Value = env
        .post(&format!("{}/listKeys", env.ep_url("e1")), None)
        .await
        .json()
        .await
        .unwrap();
    let url = ep["properties"]["scoringUri"].as_str().unwrap();
    let key = keys["primaryKey"].as_str().unwrap();
    let start = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = env
            .http
            .post(url)
            .bearer_auth(key)
            .body(r#"{"data": [[1]]}"#)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert!(start.elapsed() >= Duration::from_secs(8 * 30));
    assert_eq!(statuses, [200, 200, 200, 500, 200, 200, 200, 500]);
    let stats = env.sandbox_json("/_sandbox/stats").await;
    assert_eq!(stats["endpoints"]["e1"]["deployments"]["blue"]["failed"], 2);
}

#[tokio::test]
async fn invalid_fault_bodies_are_rejected() {
    let env = Env::start().await;
    let post = |body: Value| {
        env.http
            .post(format!("{}/_sandbox/faults", env.base))
            .json(&body)
            .send()
    };
    assert_eq!(
        post(json!({"match": {}, "respond": {"status": 200}}))
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(json!({"match": {}})).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(json!({"endpoint": "e", "deployment": "d", "error_rate": -1}))
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(json!(42)).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn the_log_records_control_plane_requests_in_order_without_secrets() {
    let env = Env::start().await;
    env.create_endpoint("e1", "Key").await;
    env.post(&format!("{}/listKeys", env.ep_url("e1")), None)
        .await;
    let _ = env
        .http
        .get(env.eps_url())
        .query(&[("api-version", API)])
        .send()
        .await
        .unwrap();
    let log = env.sandbox_json("/_sandbox/log").await;
    let entries = log.as_array().unwrap();
    assert_eq!(entries[0]["method"], "PUT");
    assert_eq!(entries[0]["status"], 201);
    assert!(
        entries[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("/onlineEndpoints/e1")
    );
    assert_eq!(entries[0]["query"], "api-version=2025-12-01");
    assert!(entries[0]["time"].as_str().unwrap().ends_with('Z'));
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    assert!(
        entries
            .iter()
            .all(|e| !e["path"].as_str().unwrap().contains("oauth2")),
        "token requests are not logged"
    );
    assert_eq!(entries.last().unwrap()["status"], 401);
    let text = log.to_string();
    assert!(!text.contains(&env.token));
    assert!(!text.contains(&env.sandbox.credentials().client_secret));
    let r = env
        .http
        .delete(format!("{}/_sandbox/log", env.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(env.sandbox_json("/_sandbox/log").await, json!([]));
}
