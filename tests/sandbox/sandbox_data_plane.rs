//! The data plane [AML §5, R7, R16, R17]: credentials, deterministic traffic split,
//! header routing, readiness, mirroring.

use std::time::Duration;

use flightdeck::sandbox::SandboxConfig;
use flightdeck_testkit::sandbox::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const SAMPLE: &str = r#"{"data": [[1,2,3,4,5,6,7,8,9,10],[10,9,8,7,6,5,4,3,2,1]]}"#;

struct Scoring {
    url: String,
    key: String,
}

async fn scoring(env: &Env, ep: &str) -> Scoring {
    let body = env.get_json(&env.ep_url(ep)).await;
    let keys: Value = env
        .post(&format!("{}/listKeys", env.ep_url(ep)), None)
        .await
        .json()
        .await
        .unwrap();
    Scoring {
        url: body["properties"]["scoringUri"]
            .as_str()
            .unwrap()
            .to_string(),
        key: keys["primaryKey"].as_str().unwrap().to_string(),
    }
}

async fn invoke(env: &Env, s: &Scoring, deployment: Option<&str>) -> reqwest::Response {
    let mut req = env
        .http
        .post(&s.url)
        .bearer_auth(&s.key)
        .header("content-type", "application/json")
        .body(SAMPLE);
    if let Some(d) = deployment {
        req = req.header("azureml-model-deployment", d);
    }
    req.send().await.unwrap()
}

/// POSTs the sample request to `url` with `credential` as the bearer token.
async fn score_as(env: &Env, url: &str, credential: &str) -> reqwest::Response {
    env.http
        .post(url)
        .bearer_auth(credential)
        .body(SAMPLE)
        .send()
        .await
        .unwrap()
}

async fn blue_green(env: &Env, traffic: Value, mirror: Option<Value>) -> Scoring {
    env.create_endpoint("e1", "Key").await;
    env.create_deployment("e1", "blue", "azureml:model-1:1")
        .await;
    env.create_deployment("e1", "green", "azureml:model-2:1")
        .await;
    let (status, body) = env.set_traffic("e1", traffic, mirror).await;
    assert!(status.is_success(), "{body}");
    scoring(env, "e1").await
}

#[tokio::test]
async fn a_90_10_split_over_100_requests_is_exactly_90_10() {
    let env = Env::start().await;
    let s = blue_green(&env, json!({"blue": 90, "green": 10}), None).await;
    let mut counts = std::collections::BTreeMap::<String, u32>::new();
    for _ in 0..100 {
        let r = invoke(&env, &s, None).await;
        assert_eq!(r.status(), StatusCode::OK);
        let header = r.headers()["azureml-model-deployment"]
            .to_str()
            .unwrap()
            .to_string();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["deployment"], header);
        *counts.entry(header).or_default() += 1;
    }
    assert_eq!(counts["blue"], 90);
    assert_eq!(counts["green"], 10);
    let stats = env.sandbox_json("/_sandbox/stats").await;
    assert_eq!(
        stats["endpoints"]["e1"]["deployments"]["blue"]["served"],
        90
    );
    assert_eq!(stats["endpoints"]["e1"]["requests"], 100);
}

#[tokio::test]
async fn the_answer_is_a_deterministic_function_of_model_and_input() {
    let env = Env::start().await;
    let s = blue_green(&env, json!({"blue": 100, "green": 0}), None).await;
    let a: Value = invoke(&env, &s, Some("blue")).await.json().await.unwrap();
    let b: Value = invoke(&env, &s, Some("blue")).await.json().await.unwrap();
    let g: Value = invoke(&env, &s, Some("green")).await.json().await.unwrap();
    assert_eq!(a, b);
    assert_eq!(a["model"], "azureml:model-1:1");
    assert_eq!(a["endpoint"], "e1");
    let preds = a["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 2);
    assert_eq!(preds[0], preds[1], "both sample rows sum to 55");
    assert_eq!(g["model"], "azureml:model-2:1");
}

#[tokio::test]
async fn the_deployment_header_reaches_a_deployment_at_zero_percent() {
    let env = Env::start().await;
    let s = blue_green(&env, json!({"blue": 100, "green": 0}), None).await;
    let r = invoke(&env, &s, Some("green")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["azureml-model-deployment"], "green");
    let r = invoke(&env, &s, Some("purple")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn no_positive_weight_and_no_header_is_404() {
    let env = Env::start().await;
    let s = blue_green(&env, json!({"blue": 0, "green": 0}), None).await;
    let r = invoke(&env, &s, None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("positive weight")
    );
}

#[tokio::test]
async fn mirrored_requests_are_counted_and_header_requests_are_not_mirrored() {
    let env = Env::start().await;
    let s = blue_green(
        &env,
        json!({"blue": 100, "green": 0}),
        Some(json!({"green": 20})),
    )
    .await;
    for _ in 0..50 {
        let r = invoke(&env, &s, None).await;
        assert_eq!(
            r.headers()["azureml-model-deployment"],
            "blue",
            "mirrored answers are discarded"
        );
    }
    for _ in 0..10 {
        invoke(&env, &s, Some("blue")).await;
    }
    let stats = env.sandbox_json("/_sandbox/stats").await;
    let deps = &stats["endpoints"]["e1"]["deployments"];
    assert_eq!(deps["green"]["mirrored"], 10);
    assert_eq!(deps["green"]["served"], 0);
    assert_eq!(deps["blue"]["served"], 60);
}

// Paused time: the five-minute startup passes on the sandbox clock when the test advances it.
#[tokio::test(start_paused = true)]
async fn a_deployment_answers_503_until_its_startup_delay_passes() {
    let env = Env::start_with(SandboxConfig {
        startup_delay: Duration::from_secs(300),
        ..Default::default()
    })
    .await;
    env.create_endpoint("e1", "Key").await;
    env.create_deployment("e1", "blue", "m").await;
    let s = scoring(&env, "e1").await;
    assert_eq!(
        invoke(&env, &s, Some("blue")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    tokio::time::advance(Duration::from_secs(299)).await;
    assert_eq!(
        invoke(&env, &s, Some("blue")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "still starting a second before the delay ends"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        invoke(&env, &s, Some("blue")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_deployment_being_created_or_never_ready_answers_503() {
    let env = Env::start().await;
    env.create_endpoint("e1", "Key").await;
    env.hold(json!({"endpoint": "e1", "deployment": "blue", "times": 1}))
        .await;
    env.put(&env.dep_url("e1", "blue"), &deployment_body("m", 1))
        .await;
    let s = scoring(&env, "e1").await;
    assert_eq!(
        invoke(&env, &s, Some("blue")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(env.release().await.len(), 1, "blue was still being created");
    env.wait_terminal(&env.dep_url("e1", "blue")).await;
    assert_eq!(
        invoke(&env, &s, Some("blue")).await.status(),
        StatusCode::OK
    );
    env.add_fault(json!({"endpoint": "e1", "deployment": "blue", "never_ready": true}))
        .await;
    assert_eq!(
        invoke(&env, &s, Some("blue")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let stats = env.sandbox_json("/_sandbox/stats").await;
    assert_eq!(
        stats["endpoints"]["e1"]["deployments"]["blue"]["unavailable"],
        2
    );
}

#[tokio::test]
async fn wrong_or_missing_keys_get_401_and_the_secondary_key_works() {
    let env = Env::start().await;
    let s = blue_green(&env, json!({"blue": 100, "green": 0}), None).await;
    let r = env.http.post(&s.url).body(SAMPLE).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = score_as(&env, &s.url, "nope").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = score_as(&env, &s.url, &env.token).await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "an ARM token is not an endpoint key"
    );
    let keys: Value = env
        .post(&format!("{}/listKeys", env.ep_url("e1")), None)
        .await
        .json()
        .await
        .unwrap();
    let r = score_as(&env, &s.url, keys["secondaryKey"].as_str().unwrap()).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn aml_token_endpoints_accept_tokens_from_the_token_route() {
    let env = Env::start().await;
    env.create_endpoint("e1", "AMLToken").await;
    env.create_deployment("e1", "blue", "m").await;
    env.set_traffic("e1", json!({"blue": 100}), None).await;
    let s = scoring(&env, "e1").await;
    assert_eq!(
        invoke(&env, &s, None).await.status(),
        StatusCode::UNAUTHORIZED,
        "keys do not work in AMLToken mode"
    );
    let tok: Value = env
        .post(&format!("{}/token", env.ep_url("e1")), None)
        .await
        .json()
        .await
        .unwrap();
    assert!(tok["expiryTimeUtc"].as_i64().unwrap() > tok["refreshAfterTimeUtc"].as_i64().unwrap());
    let r = score_as(&env, &s.url, tok["accessToken"].as_str().unwrap()).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn aad_token_endpoints_accept_ml_audience_tokens_only() {
    let env = Env::start().await;
    env.create_endpoint("e1", "AADToken").await;
    env.create_deployment("e1", "blue", "m").await;
    env.set_traffic("e1", json!({"blue": 100}), None).await;
    let s = scoring(&env, "e1").await;
    let ml = fetch_token(&env.sandbox, &env.http, "https://ml.azure.com/.default").await;
    let r = score_as(&env, &s.url, &ml).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = score_as(&env, &s.url, &env.token).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn invalid_json_gets_400_from_the_model() {
    let env = Env::start().await;
    let s = blue_green(&env, json!({"blue": 100, "green": 0}), None).await;
    let r = env
        .http
        .post(&s.url)
        .bearer_auth(&s.key)
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()["azureml-model-deployment"], "blue");
}

#[tokio::test]
async fn unknown_endpoints_are_404() {
    let env = Env::start().await;
    let url = format!("{}/inference/{SUB}/rg/ws/ghost/score", env.base);
    let r = score_as(&env, &url, "x").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
