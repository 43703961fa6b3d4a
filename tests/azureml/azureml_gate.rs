//! The pre-traffic test gate against the scripted fake [AML §5]: credential per auth
//! mode, the deployment header, retries while warming up, and failures that never show the key.

use flightdeck::backend::{Backend, BackendError};
use flightdeck::model::TestSpec;
use flightdeck::plan::{Action, Step};
use flightdeck_testkit::arm_fake::*;
use serde_json::json;

fn test_spec(expect_body_contains: Option<&str>) -> TestSpec {
    TestSpec {
        requests: vec![flightdeck::model::TestRequest::new(
            "sample-request.json",
            r#"{"data": [[1,2,3]]}"#,
        )],
        expect_status: None,
        expect_body_contains: expect_body_contains.map(str::to_string),
        ..Default::default()
    }
}

/// The gate step for deployment green of endpoint `scoring`.
fn test_green(expect_body_contains: Option<&str>) -> Step {
    step(
        "scoring",
        Action::TestDeployment {
            deployment: "green".into(),
            test: test_spec(expect_body_contains),
        },
    )
}

/// The scoring requests the fake received, in order.
fn scoring_requests(fake: &Fake) -> Vec<Seen> {
    fake.log()
        .into_iter()
        .filter(|s| s.path == "/score/scoring")
        .collect()
}

#[tokio::test]
async fn the_test_gate_posts_to_the_scoring_uri_with_the_endpoint_key_and_deployment_header() {
    let fake = Fake::start().await;
    let e = eps("/scoring");
    fake.on(
        "GET",
        &e,
        vec![Canned::json(
            200,
            endpoint_body("scoring", "Succeeded", json!({"blue": 100}), json!({})),
        )],
    );
    fake.on(
        "POST",
        &eps("/scoring/listKeys"),
        vec![Canned::json(
            200,
            json!({"primaryKey": "endpoint-key-1", "secondaryKey": "k2"}),
        )],
    );
    fake.on(
        "POST",
        "/score/scoring",
        vec![
            Canned::error(503, "NotReady", "warming up"),
            Canned::json(200, json!({"deployment": "green", "predictions": [6]})),
        ],
    );

    let outcome = backend(&fake)
        .execute(&test_green(Some("predictions")))
        .await
        .unwrap();
    assert!(
        outcome.detail.starts_with("200 from green"),
        "{}",
        outcome.detail
    );

    let score = scoring_requests(&fake);
    assert_eq!(score.len(), 2, "a warming-up 503 is retried");
    assert_eq!(
        score[1].header("authorization"),
        Some("Bearer endpoint-key-1")
    );
    assert_eq!(score[1].header("azureml-model-deployment"), Some("green"));
    assert_eq!(score[1].header("content-type"), Some("application/json"));
    assert_eq!(score[1].body, r#"{"data": [[1,2,3]]}"#);
    fake.stop().await;
}

#[tokio::test]
async fn the_test_gate_uses_the_aml_token_for_aml_token_endpoints() {
    let fake = Fake::start().await;
    let mut body = endpoint_body("scoring", "Succeeded", json!({}), json!({}));
    body["properties"]["authMode"] = json!("AMLToken");
    fake.on("GET", &eps("/scoring"), vec![Canned::json(200, body)]);
    fake.on(
        "POST",
        &eps("/scoring/token"),
        vec![Canned::json(200, json!({"accessToken": "aml-tok", "tokenType": "Bearer", "expiryTimeUtc": 0, "refreshAfterTimeUtc": 0}))],
    );
    fake.on(
        "POST",
        "/score/scoring",
        vec![Canned::json(200, json!({"ok": true}))],
    );
    backend(&fake).execute(&test_green(None)).await.unwrap();
    let score = scoring_requests(&fake)[0].clone();
    assert_eq!(score.header("authorization"), Some("Bearer aml-tok"));
    fake.stop().await;
}

#[tokio::test]
async fn a_failing_test_stops_with_status_and_excerpt_but_never_the_key() {
    let fake = Fake::start().await;
    fake.on(
        "GET",
        &eps("/scoring"),
        vec![Canned::json(
            200,
            endpoint_body("scoring", "Succeeded", json!({}), json!({})),
        )],
    );
    fake.on(
        "POST",
        &eps("/scoring/listKeys"),
        vec![Canned::json(200, json!({"primaryKey": "sekrit-key"}))],
    );
    fake.on(
        "POST",
        "/score/scoring",
        vec![Canned::json(
            424,
            json!({"error": "model crashed, key was sekrit-key"}),
        )],
    );
    let b = backend(&fake);
    let test = test_green(None);

    let err = b.execute(&test).await.unwrap_err();
    let BackendError::TestFailed { subject, message } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(subject, "endpoint scoring: deployment green");
    assert!(
        message.contains("424") && message.contains("model crashed"),
        "{message}"
    );
    assert!(!format!("{err} {err:?}").contains("sekrit-key"));
    assert_eq!(
        fake.count("POST", "/score/scoring"),
        1,
        "a 424 is not retried"
    );

    fake.on(
        "POST",
        "/score/scoring",
        vec![Canned::json(200, json!({"predictions": []}))],
    );
    let wants_body = test_green(Some("deployment"));
    let err = b.execute(&wants_body).await.unwrap_err();
    assert!(
        matches!(&err, BackendError::TestFailed { message, .. } if message.contains("does not contain")),
        "{err}"
    );
    fake.stop().await;
}

#[tokio::test]
async fn the_test_gate_uses_an_entra_token_for_the_ml_scope_on_aad_token_endpoints() {
    let fake = Fake::start().await;
    let mut body = endpoint_body("scoring", "Succeeded", json!({}), json!({}));
    body["properties"]["authMode"] = json!("AADToken");
    fake.on("GET", &eps("/scoring"), vec![Canned::json(200, body)]);
    fake.on(
        "POST",
        "/score/scoring",
        vec![Canned::json(200, json!({"ok": true}))],
    );
    backend(&fake).execute(&test_green(None)).await.unwrap();
    let score = scoring_requests(&fake)[0].clone();
    let expected = format!("Bearer {TOKEN}|https://ml.azure.com/.default");
    assert_eq!(score.header("authorization"), Some(expected.as_str()));
    assert_eq!(
        fake.writes().len(),
        1,
        "no listKeys or token call: {:?}",
        fake.lines()
    );
    fake.stop().await;
}
