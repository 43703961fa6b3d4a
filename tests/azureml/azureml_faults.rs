//! Faults against the scripted fake: failed operations, throttling, server errors, a lost PUT
//! response, conflicts while another operation runs (the step timeout: azureml_timeouts.rs).

use std::time::Duration;

use flightdeck::backend::{Backend, BackendError};
use flightdeck::model::{DeploymentSettings, EndpointSettings};
use flightdeck::plan::{Action, Step};
use flightdeck_testkit::arm_fake::*;
use serde_json::json;

fn create_green() -> Step {
    Step::new(
        "scoring".into(),
        Action::CreateDeployment {
            deployment: "green".into(),
            settings: Box::new(DeploymentSettings {
                instance_count: Some(1),
                ..Default::default()
            }),
        },
        "test".into(),
    )
}

fn set_traffic() -> Step {
    Step::new(
        "scoring".into(),
        Action::SetTraffic {
            traffic: weights(&[("blue", 100)]),
        },
        "test".into(),
    )
}

#[tokio::test]
async fn a_failed_operation_names_endpoint_deployment_and_the_arm_code() {
    let fake = Fake::start().await;
    let d = eps("/scoring/deployments/green");
    fake.on(
        "PUT",
        &d,
        vec![
            Canned::json(201, deployment_body("green", "Creating", 1))
                .header("Azure-AsyncOperation", "{base}/ops/f"),
        ],
    );
    fake.on(
        "GET",
        "/ops/f",
        vec![
            Canned::json(200, op_status("InProgress")),
            Canned::json(
                200,
                json!({"status": "Failed", "error": {"code": "OutOfQuota", "message": "not enough Standard_DS3_v2 quota"}}),
            ),
        ],
    );
    let err = backend(&fake).execute(&create_green()).await.unwrap_err();
    match &err {
        BackendError::Platform {
            subject,
            code,
            message,
            ..
        } => {
            assert_eq!(subject, "endpoint scoring: deployment green");
            assert_eq!(code, "OutOfQuota");
            assert!(
                message.contains("not enough Standard_DS3_v2 quota"),
                "{message}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "endpoint scoring: deployment green: OutOfQuota: operation Failed: not enough Standard_DS3_v2 quota"
    );
    fake.stop().await;
}

#[tokio::test]
async fn a_validation_error_is_reported_at_once_without_retries() {
    let fake = Fake::start().await;
    let e = eps("/scoring");
    fake.on(
        "GET",
        &e,
        vec![Canned::json(
            200,
            endpoint_body("scoring", "Succeeded", json!({}), json!({})),
        )],
    );
    fake.on(
        "PUT",
        &e,
        vec![Canned::error(
            400,
            "BadArgument",
            "Traffic values need to sum to 100",
        )],
    );
    let err = backend(&fake).execute(&set_traffic()).await.unwrap_err();
    assert!(
        matches!(&err, BackendError::Platform { code, subject, .. } if code == "BadArgument" && subject == "endpoint scoring"),
        "{err:?}"
    );
    assert!(err.to_string().contains("sum to 100"), "{err}");
    assert_eq!(fake.count("PUT", &e), 1);
    fake.stop().await;
}

/// Paused time: the client's waits are virtual, so the assertion is on the waits it chose, not on
/// how fast the machine is.
#[tokio::test(start_paused = true)]
async fn throttling_with_retry_after_is_waited_out_then_succeeds() {
    let fake = Fake::start().await;
    let e = eps("/scoring");
    fake.on(
        "GET",
        &e,
        vec![
            Canned::error(429, "TooManyRequests", "slow down").header("Retry-After", "1"),
            Canned::error(429, "TooManyRequests", "slow down").header("Retry-After", "1"),
            Canned::json(
                200,
                endpoint_body("scoring", "Succeeded", json!({}), json!({})),
            ),
        ],
    );
    fake.on(
        "PUT",
        &e,
        vec![Canned::json(
            200,
            endpoint_body("scoring", "Succeeded", json!({"blue": 100}), json!({})),
        )],
    );
    let started = tokio::time::Instant::now();
    backend(&fake).execute(&set_traffic()).await.unwrap();
    assert_eq!(fake.count("GET", &e), 3);
    assert_eq!(fake.count("PUT", &e), 1);
    // Retry-After 1 s is capped by max_poll_interval (20 ms in tests): two capped waits, not two
    // seconds.
    let waited = started.elapsed();
    assert!(waited < Duration::from_millis(100), "waited {waited:?}");
    fake.stop().await;
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let fake = Fake::start().await;
    let e = eps("/scoring");
    fake.on(
        "GET",
        &e,
        vec![Canned::json(
            200,
            endpoint_body("scoring", "Succeeded", json!({}), json!({})),
        )],
    );
    fake.on(
        "PUT",
        &e,
        vec![
            Canned::error(500, "InternalServerError", "oops"),
            Canned::empty(503),
            Canned::json(
                200,
                endpoint_body("scoring", "Succeeded", json!({"blue": 100}), json!({})),
            ),
        ],
    );
    backend(&fake).execute(&set_traffic()).await.unwrap();
    assert_eq!(fake.count("PUT", &e), 3);
    fake.stop().await;
}

#[tokio::test]
async fn server_errors_that_never_stop_give_up_after_max_attempts() {
    let fake = Fake::start().await;
    let e = eps("/scoring");
    fake.on("GET", &e, vec![Canned::error(502, "", "bad gateway")]);
    let err = backend(&fake).execute(&set_traffic()).await.unwrap_err();
    assert_eq!(fake.count("GET", &e), 5, "config allows 5 attempts");
    assert!(
        matches!(&err, BackendError::Platform { code, .. } if code == "http 502"),
        "{err:?}"
    );
    fake.stop().await;
}

#[tokio::test]
async fn a_lost_put_response_is_checked_with_a_get_and_never_sends_a_second_create() {
    let fake = Fake::start().await;
    let d = eps("/scoring/deployments/green");
    // The PUT lands (the fake "creates" it) but the connection dies before the answer.
    fake.on("PUT", &d, vec![Canned::drop()]);
    fake.on(
        "GET",
        &d,
        vec![
            Canned::json(200, deployment_body("green", "Creating", 1)),
            Canned::json(200, deployment_body("green", "Succeeded", 1)),
        ],
    );
    backend(&fake).execute(&create_green()).await.unwrap();
    assert_eq!(fake.count("PUT", &d), 1, "{:?}", fake.lines());
    assert_eq!(
        fake.lines(),
        vec![format!("PUT {d}"), format!("GET {d}"), format!("GET {d}")]
    );
    fake.stop().await;
}

#[tokio::test]
async fn a_lost_put_that_never_landed_is_sent_again() {
    let fake = Fake::start().await;
    let d = eps("/scoring/deployments/green");
    fake.on(
        "PUT",
        &d,
        vec![
            Canned::drop(),
            Canned::json(200, deployment_body("green", "Succeeded", 1)),
        ],
    );
    // The first GET (after the lost answer) finds nothing: the create never happened.
    fake.on(
        "GET",
        &d,
        vec![Canned::error(
            404,
            "ResourceNotFound",
            "no deployment green",
        )],
    );
    backend(&fake).execute(&create_green()).await.unwrap();
    assert_eq!(fake.count("PUT", &d), 2, "{:?}", fake.lines());
    fake.stop().await;
}

#[tokio::test]
async fn a_conflict_while_another_operation_runs_is_retried() {
    let fake = Fake::start().await;
    let e = eps("/scoring");
    fake.on(
        "GET",
        &e,
        vec![Canned::json(
            200,
            endpoint_body("scoring", "Succeeded", json!({}), json!({})),
        )],
    );
    fake.on(
        "PUT",
        &e,
        vec![
            Canned::error(
                409,
                "Conflict",
                "another operation in progress on endpoint scoring",
            ),
            Canned::json(
                200,
                endpoint_body("scoring", "Succeeded", json!({"blue": 100}), json!({})),
            ),
        ],
    );
    backend(&fake).execute(&set_traffic()).await.unwrap();
    assert_eq!(fake.count("PUT", &e), 2);
    fake.stop().await;
}

#[tokio::test]
async fn a_name_conflict_is_not_retried() {
    let fake = Fake::start().await;
    let e = eps("/scoring");
    fake.on(
        "PUT",
        &e,
        vec![Canned::error(
            409,
            "Conflict",
            "Endpoint name needs to be unique within a region",
        )],
    );
    let step = Step::new(
        "scoring".into(),
        Action::CreateEndpoint {
            settings: EndpointSettings::default(),
        },
        "test".into(),
    );
    let err = backend(&fake).execute(&step).await.unwrap_err();
    assert!(err.to_string().contains("unique within a region"), "{err}");
    assert_eq!(fake.count("PUT", &e), 1);
    fake.stop().await;
}

#[tokio::test]
async fn links_pointing_away_from_arm_are_not_followed_with_the_token() {
    let fake = Fake::start().await;
    fake.on(
        "GET",
        &eps(""),
        vec![Canned::json(
            200,
            json!({"value": [], "nextLink": "https://evil.example.com/steal?api-version=2025-12-01"}),
        )],
    );
    let err = backend(&fake).read_live().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("points away from the ARM endpoint"),
        "{err}"
    );
    fake.stop().await;
}

#[tokio::test]
async fn unsafe_names_never_reach_the_wire() {
    let fake = Fake::start().await;
    let step = Step::new("../../other".into(), Action::DeleteEndpoint, "test".into());
    let err = backend(&fake).execute(&step).await.unwrap_err();
    assert!(err.to_string().contains("must match"), "{err}");
    assert!(fake.log().is_empty());
    fake.stop().await;
}

#[tokio::test]
async fn the_scripted_fake_fails_a_test_whose_expected_call_never_came() {
    let fake = Fake::start().await;
    let e = eps("/scoring");
    fake.on(
        "GET",
        &e,
        vec![Canned::json(
            200,
            endpoint_body("scoring", "Succeeded", json!({}), json!({})),
        )],
    );
    fake.allow("DELETE", &e, vec![Canned::empty(204)]);
    // Only the expected GET is unmet; the allowed DELETE may stay uncalled.
    assert_eq!(fake.unmet(), vec![format!("GET {e}")]);
    let failure = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fake.verify()))
        .expect_err("verify fails while an expected call is missing");
    let message = failure
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("expected calls that never came") && message.contains(&format!("GET {e}")),
        "{message}"
    );

    // Once the call comes, the fake is satisfied (and dropping it checks again).
    let url = format!("{}{}", fake.url().as_str().trim_end_matches('/'), e);
    let status = reqwest::get(url).await.unwrap().status();
    assert_eq!(status, 200);
    assert!(fake.unmet().is_empty());
    fake.verify();
    fake.stop().await;
}
