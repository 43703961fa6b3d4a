//! LRO lifecycle, concurrency, paging and api-version handling of the sandbox control plane
//! [AML §1, §3].

use flightdeck::sandbox::SandboxConfig;
use flightdeck_testkit::sandbox::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

// Paused time: a two-minute provisioning runs on the sandbox clock, and its operation's
// startTime and endTime are two minutes apart although almost no real time passes.
#[tokio::test(start_paused = true)]
async fn endpoint_put_starts_an_lro_that_reaches_succeeded() {
    let delay = std::time::Duration::from_secs(120);
    let env = Env::start_with(SandboxConfig {
        provisioning_delay: delay,
        ..Default::default()
    })
    .await;
    let r = env
        .put(&env.ep_url("e1"), &endpoint_body("Key", json!({})))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let op_url = r.headers()["azure-asyncoperation"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(r.headers().contains_key("x-ms-async-operation-timeout"));
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["properties"]["provisioningState"], "Creating");
    assert_eq!(body["properties"]["keys"], Value::Null);
    assert_eq!(body["properties"]["traffic"], json!({}));
    assert_eq!(body["name"], "e1");
    assert!(
        body["properties"]["scoringUri"]
            .as_str()
            .unwrap()
            .starts_with(&env.base)
    );

    let status: Value = env.get_json(&op_url).await;
    assert_eq!(status["status"], "InProgress");
    tokio::time::advance(delay - std::time::Duration::from_secs(1)).await;
    let status: Value = env.get_json(&op_url).await;
    assert_eq!(status["status"], "InProgress", "a second before it is due");
    tokio::time::advance(std::time::Duration::from_secs(1)).await;
    let status: Value = env.get_json(&op_url).await;
    assert_eq!(status["status"], "Succeeded");
    let time =
        |key: &str| chrono::DateTime::parse_from_rfc3339(status[key].as_str().unwrap()).unwrap();
    assert_eq!(
        time("endTime") - time("startTime"),
        chrono::Duration::seconds(120)
    );
    let ep = env.get_json(&env.ep_url("e1")).await;
    assert_eq!(ep["properties"]["provisioningState"], "Succeeded");
}

#[tokio::test]
async fn a_repeated_put_with_the_same_body_is_an_update_not_a_duplicate() {
    let env = Env::start().await;
    env.create_endpoint("e1", "Key").await;
    let r = env
        .put(&env.ep_url("e1"), &endpoint_body("Key", json!({})))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("azure-asyncoperation"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["properties"]["provisioningState"], "Updating");
    env.wait_terminal(&env.ep_url("e1")).await;
    let list = env.get_json(&env.eps_url()).await;
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_lro_marked_to_fail_ends_failed_with_an_error() {
    let env = Env::start().await;
    env.add_fault(json!({"match": {"method": "PUT", "path_contains": "/onlineEndpoints/bad"}, "lro_fail": true, "times": 1})).await;
    let r = env
        .put(&env.ep_url("bad"), &endpoint_body("Key", json!({})))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let op_url = r.headers()["azure-asyncoperation"]
        .to_str()
        .unwrap()
        .to_string();
    let ep = env.wait_terminal(&env.ep_url("bad")).await;
    assert_eq!(ep["properties"]["provisioningState"], "Failed");
    let status = env.get_json(&op_url).await;
    assert_eq!(status["status"], "Failed");
    assert_eq!(status["error"]["code"], "InternalServerError");
    assert!(
        status["error"]["message"]
            .as_str()
            .unwrap()
            .contains("lro_fail")
    );
}

#[tokio::test]
async fn a_deployment_with_fail_provisioning_fails_once_then_recovers() {
    let env = Env::start().await;
    env.create_endpoint("e1", "Key").await;
    env.add_fault(json!({"endpoint": "e1", "deployment": "blue", "fail_provisioning": true}))
        .await;
    let r = env
        .put(&env.dep_url("e1", "blue"), &deployment_body("m1", 1))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let op_url = r.headers()["azure-asyncoperation"]
        .to_str()
        .unwrap()
        .to_string();
    let dep = env.wait_terminal(&env.dep_url("e1", "blue")).await;
    assert_eq!(dep["properties"]["provisioningState"], "Failed");
    let status = env.get_json(&op_url).await;
    assert_eq!(status["error"]["code"], "ResourceNotReady");
    // The retry (same body) is an update and succeeds.
    let r = env
        .put(&env.dep_url("e1", "blue"), &deployment_body("m1", 1))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let dep = env.wait_terminal(&env.dep_url("e1", "blue")).await;
    assert_eq!(dep["properties"]["provisioningState"], "Succeeded");
}

#[tokio::test]
async fn patch_returns_202_and_location_answers_202_then_200() {
    let env = Env::start().await;
    env.create_endpoint("e1", "Key").await;
    env.hold(json!({"endpoint": "e1", "times": 1})).await;
    let r = env
        .patch(&env.ep_url("e1"), &json!({"tags": {"owner": "me"}}))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["retry-after"], "1");
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(env.get(&location).await.status(), StatusCode::ACCEPTED);
    assert_eq!(env.release().await.len(), 1);
    let ep = env.wait_terminal(&env.ep_url("e1")).await;
    assert_eq!(ep["tags"], json!({"owner": "me"}));
    let done = env.get(&location).await;
    assert_eq!(done.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_sku_only_change_goes_through_scaling() {
    let env = Env::start().await;
    env.create_endpoint("e1", "Key").await;
    env.create_deployment("e1", "blue", "m1").await;
    env.hold(json!({"endpoint": "e1", "deployment": "blue", "times": 1}))
        .await;
    let r = env
        .patch(&env.dep_url("e1", "blue"), &json!({"sku": {"capacity": 3}}))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let dep = env.get_json(&env.dep_url("e1", "blue")).await;
    assert_eq!(dep["properties"]["provisioningState"], "Scaling");
    assert_eq!(env.release().await.len(), 1);
    let dep = env.wait_terminal(&env.dep_url("e1", "blue")).await;
    assert_eq!(dep["sku"]["capacity"], 3);
    assert_eq!(dep["sku"]["name"], "Default");
    // A full PUT whose only change is the sku scales too.
    let r = env
        .put(&env.dep_url("e1", "blue"), &deployment_body("m1", 2))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["properties"]["provisioningState"], "Scaling");
    // A model change is an update.
    env.wait_terminal(&env.dep_url("e1", "blue")).await;
    let r = env
        .put(&env.dep_url("e1", "blue"), &deployment_body("m2", 2))
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["properties"]["provisioningState"], "Updating");
}

#[tokio::test]
async fn delete_returns_202_then_the_resource_is_gone_and_a_second_delete_is_204() {
    let env = Env::start_slow().await;
    env.create_endpoint("e1", "Key").await;
    let r = env.delete(&env.ep_url("e1")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let ep = env.get_json(&env.ep_url("e1")).await;
    assert_eq!(ep["properties"]["provisioningState"], "Deleting");
    env.wait_gone(&env.ep_url("e1")).await;
    assert_eq!(env.get(&location).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        env.delete(&env.ep_url("e1")).await.status(),
        StatusCode::NO_CONTENT
    );
    let (status, code, _) = error_code(env.get(&env.ep_url("e1")).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "ResourceNotFound")
    );
}

#[tokio::test]
async fn mutations_during_an_operation_get_409_conflict() {
    let env = Env::start().await;
    // Held in progress: the mutations below land during the create, whatever the load.
    env.hold(json!({"endpoint": "e1"})).await;
    let r = env
        .put(&env.ep_url("e1"), &endpoint_body("Key", json!({})))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (status, code, _) = error_code(
        env.put(&env.ep_url("e1"), &endpoint_body("Key", json!({})))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "Conflict"));
    let (status, _, _) = error_code(
        env.put(&env.dep_url("e1", "blue"), &deployment_body("m", 1))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _, _) = error_code(env.delete(&env.ep_url("e1")).await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Reads are fine.
    assert_eq!(env.get(&env.ep_url("e1")).await.status(), StatusCode::OK);
    assert_eq!(
        env.held().await.len(),
        1,
        "the create was still in progress"
    );
    // Once it ends, the endpoint takes writes again.
    assert_eq!(env.release().await.len(), 1);
    env.wait_terminal(&env.ep_url("e1")).await;
    let r = env
        .put(&env.ep_url("e1"), &endpoint_body("Key", json!({})))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn lists_page_with_absolute_next_links_carrying_api_version() {
    let env = Env::start_with(SandboxConfig {
        page_size: 2,
        provisioning_delay: std::time::Duration::ZERO,
        ..Default::default()
    })
    .await;
    for i in 0..5 {
        let r = env
            .put(
                &env.ep_url(&format!("ep{i}")),
                &endpoint_body("Key", json!({})),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let mut url = env.eps_url();
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        let page = env.get_json(&url).await;
        pages += 1;
        names.extend(
            page["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_string()),
        );
        match page.get("nextLink").and_then(Value::as_str) {
            Some(next) => {
                assert!(next.starts_with(&env.base));
                assert!(next.contains("api-version=2025-12-01"));
                assert!(next.contains("$skipToken="));
                url = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["ep0", "ep1", "ep2", "ep3", "ep4"]);
    let page = env
        .get_json(&format!("{}?api-version={API}&count=4", env.eps_url()))
        .await;
    assert_eq!(page["value"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn deployment_lists_honour_top() {
    let env = Env::start_with(SandboxConfig {
        provisioning_delay: std::time::Duration::ZERO,
        ..Default::default()
    })
    .await;
    env.create_endpoint("e1", "Key").await;
    for d in ["a", "b", "c"] {
        env.create_deployment("e1", d, "m").await;
    }
    let url = format!("{}/deployments?api-version={API}&$top=2", env.ep_url("e1"));
    let page = env.get_json(&url).await;
    assert_eq!(page["value"].as_array().unwrap().len(), 2);
    let next = env.get_json(page["nextLink"].as_str().unwrap()).await;
    assert_eq!(next["value"][0]["name"], "c");
    assert!(next.get("nextLink").is_none());
}

#[tokio::test]
async fn unknown_or_missing_api_versions_are_rejected() {
    let env = Env::start().await;
    let (status, code, _) = error_code(
        env.get(&format!("{}?api-version=2019-01-01", env.eps_url()))
            .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "InvalidApiVersionParameter")
    );
    let r = env
        .http
        .get(env.eps_url())
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "MissingApiVersionParameter")
    );
    // An older stable version is served.
    assert_eq!(
        env.get(&format!("{}?api-version=2024-04-01", env.eps_url()))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn keys_tokens_logs_and_skus_are_served() {
    let env = Env::start().await;
    env.create_endpoint("e1", "Key").await;
    env.create_deployment("e1", "blue", "m1").await;
    let keys: Value = env
        .post(&format!("{}/listKeys", env.ep_url("e1")), None)
        .await
        .json()
        .await
        .unwrap();
    let old_primary = keys["primaryKey"].as_str().unwrap().to_string();
    assert!(keys["secondaryKey"].as_str().unwrap().len() > 20);

    let r = env
        .post(
            &format!("{}/regenerateKeys", env.ep_url("e1")),
            Some(&json!({"keyType": "Primary"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(env.wait_location(&location).await.status(), StatusCode::OK);
    let keys: Value = env
        .post(&format!("{}/listKeys", env.ep_url("e1")), None)
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(keys["primaryKey"], old_primary);

    let (status, _, _) =
        error_code(env.post(&format!("{}/token", env.ep_url("e1")), None).await).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "Key endpoints have no AML token"
    );

    let logs: Value = env
        .post(
            &format!("{}/getLogs", env.dep_url("e1", "blue")),
            Some(&json!({"tail": 2})),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(logs["content"].as_str().unwrap().lines().count(), 2);
    let skus = env
        .get_json(&format!("{}/skus", env.dep_url("e1", "blue")))
        .await;
    assert!(skus["value"][0]["capacity"]["maximum"].as_i64().unwrap() >= 1);
}

#[tokio::test]
async fn the_documented_safe_rollout_sequence_runs_end_to_end() {
    let env = Env::start().await;
    env.create_endpoint("e1", "Key").await;
    env.create_deployment("e1", "blue", "m1").await;
    assert!(
        env.set_traffic("e1", json!({"blue": 100}), None)
            .await
            .0
            .is_success()
    );
    let r = env
        .patch(&env.dep_url("e1", "blue"), &json!({"sku": {"capacity": 2}}))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    env.wait_terminal(&env.dep_url("e1", "blue")).await;
    env.create_deployment("e1", "green", "m2").await;
    assert!(
        env.set_traffic(
            "e1",
            json!({"blue": 100, "green": 0}),
            Some(json!({"green": 10}))
        )
        .await
        .0
        .is_success()
    );
    assert!(
        env.set_traffic(
            "e1",
            json!({"blue": 100, "green": 0}),
            Some(json!({"green": 0}))
        )
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
    assert!(
        env.set_traffic("e1", json!({"blue": 0, "green": 100}), None)
            .await
            .0
            .is_success()
    );
    assert_eq!(
        env.delete(&env.dep_url("e1", "blue")).await.status(),
        StatusCode::ACCEPTED
    );
    env.wait_gone(&env.dep_url("e1", "blue")).await;
    let ep = env.get_json(&env.ep_url("e1")).await;
    assert_eq!(ep["properties"]["traffic"], json!({"green": 100}));
}

#[tokio::test]
async fn four_hundred_endpoints_list_completely_across_pages() {
    let env = Env::start_with(SandboxConfig {
        provisioning_delay: std::time::Duration::ZERO,
        ..Default::default()
    })
    .await;
    let body = endpoint_body("Key", json!({}));
    let puts = (0..400).map(|i| {
        let url = env.ep_url(&format!("ep{i:04}"));
        let body = body.clone();
        let env = &env;
        async move { env.put(&url, &body).await.status() }
    });
    let statuses = futures::future::join_all(puts).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::CREATED));
    let mut url = env.eps_url();
    let (mut count, mut pages) = (0, 0);
    loop {
        let page = env.get_json(&url).await;
        pages += 1;
        count += page["value"].as_array().unwrap().len();
        match page.get("nextLink").and_then(Value::as_str) {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    assert_eq!((count, pages), (400, 8));
}

#[tokio::test]
async fn a_failed_delete_leaves_the_deployment_in_failed_state() {
    let env = Env::start().await;
    env.create_endpoint("e1", "Key").await;
    env.create_deployment("e1", "blue", "m").await;
    env.add_fault(json!({"match": {"method": "DELETE"}, "lro_fail": true, "times": 1}))
        .await;
    let r = env.delete(&env.dep_url("e1", "blue")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let dep = env.wait_terminal(&env.dep_url("e1", "blue")).await;
    assert_eq!(dep["properties"]["provisioningState"], "Failed");
    let (status, code, _) = error_code(env.get(&location).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "InternalServerError")
    );
    // A retried delete succeeds.
    assert_eq!(
        env.delete(&env.dep_url("e1", "blue")).await.status(),
        StatusCode::ACCEPTED
    );
    env.wait_gone(&env.dep_url("e1", "blue")).await;
}
