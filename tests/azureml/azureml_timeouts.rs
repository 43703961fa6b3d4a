//! A hung model server fails the Azure ML pre-traffic test with a message that names the
//! request, after `AzureMlConfig::test_request_timeout`, without retrying into a longer hang;
//! and the executor, not the backend, fails a step that outlives its budget; a request given up on
//! in flight does not hold the pacer.

use flightdeck_testkit::hung;

use std::sync::Arc;
use std::time::Duration;

use flightdeck::apply::{self, ApplyOptions, StepStatus};
use flightdeck::backend::azureml::AzureMlBackend;
use flightdeck::backend::{Backend, BackendError, ErrorKind};
use flightdeck::model::TestSpec;
use flightdeck::plan::{Action, Plan};
use flightdeck_testkit::arm_fake::*;
use hung::Hung;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_hung_scoring_endpoint_fails_the_test_naming_the_request_that_timed_out() {
    let fake = Fake::start().await;
    let server = Hung::start().await;
    let mut endpoint = endpoint_body("scoring", "Succeeded", json!({}), json!({}));
    endpoint["properties"]["scoringUri"] = json!(format!("{}/score", server.url));
    fake.on("GET", &eps("/scoring"), vec![Canned::json(200, endpoint)]);
    fake.on(
        "POST",
        &eps("/scoring/listKeys"),
        vec![Canned::json(
            200,
            json!({"primaryKey": "k1", "secondaryKey": "k2"}),
        )],
    );
    let mut config = config(&fake);
    config.test_request_timeout = Duration::from_millis(300);
    let backend = AzureMlBackend::new(&target(), config, Arc::new(StaticToken)).unwrap();
    let step = step(
        "scoring",
        Action::TestDeployment {
            deployment: "green".into(),
            test: TestSpec {
                requests: vec![flightdeck::model::TestRequest::new("sample.json", "{}")],
                expect_status: None,
                expect_body_contains: None,
                ..Default::default()
            },
        },
    );
    let err = backend.execute(&step).await.unwrap_err();
    assert!(matches!(err, BackendError::TimedOut { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "endpoint scoring: deployment green: test of deployment green timed out after 300ms \
             (pre-traffic request to {}/score)",
            server.url
        )
    );
    fake.stop().await;
}

#[tokio::test]
async fn the_executor_fails_a_step_that_outlives_the_backends_step_timeout() {
    let fake = Fake::start().await;
    let d = eps("/scoring/deployments/green");
    fake.on(
        "GET",
        &d,
        vec![Canned::json(200, deployment_body("green", "Creating", 1))],
    );
    let mut config = config(&fake);
    config.step_timeout = Duration::from_millis(300);
    let backend = AzureMlBackend::new(&target(), config, Arc::new(StaticToken)).unwrap();
    let wait = step(
        "scoring",
        Action::WaitReady {
            deployment: "green".into(),
        },
    );
    assert_eq!(backend.step_timeout(&wait), Duration::from_millis(300));
    let plan = Plan {
        steps: vec![
            wait,
            step(
                "scoring",
                Action::SetTraffic {
                    traffic: weights(&[("green", 100)]),
                },
            ),
        ],
        notes: vec![],
        pending: vec![],
        rollouts: vec![],
    };
    let report = apply::apply(
        &plan,
        &backend,
        &ApplyOptions::default(),
        &CancellationToken::new(),
    )
    .await;
    let StepStatus::Failed(error) = &report.results[0].outcome else {
        panic!("{:?}", report.results[0].outcome);
    };
    assert_eq!(
        error.message,
        "endpoint scoring: deployment green: timed out after 1s waiting for wait ready"
    );
    assert_eq!((error.kind, error.transient), (ErrorKind::Timeout, true));
    assert!(matches!(report.results[1].outcome, StepStatus::Skipped(_)));
    assert!(fake.count("GET", &d) >= 2, "it polled before giving up");
    assert_eq!(fake.count("PUT", &eps("/scoring")), 0);
    fake.stop().await;
}

// The pacer sends one write before it has seen any write answered and holds the rest until that
// answer (crates/azureml/src/pacer.rs). A first write whose caller gives up on it (a step timeout
// drops the request future) must not hold every later write: dropping it ends it for the pacer.
#[tokio::test]
async fn a_write_given_up_on_in_flight_does_not_hold_the_next_write() {
    let fake = Fake::start().await;
    fake.on(
        "DELETE",
        &eps("/slow"),
        vec![Canned::empty(204).delay(Duration::from_secs(2))],
    );
    fake.on("DELETE", &eps("/quick"), vec![Canned::empty(204)]);
    let backend = AzureMlBackend::new(&target(), config(&fake), Arc::new(StaticToken)).unwrap();
    let slow = step("slow", Action::DeleteEndpoint);
    let given_up = tokio::time::timeout(Duration::from_millis(200), backend.execute(&slow)).await;
    assert!(
        given_up.is_err(),
        "the slow delete is given up on: {given_up:?}"
    );
    let quick = step("quick", Action::DeleteEndpoint);
    let done = tokio::time::timeout(Duration::from_secs(5), backend.execute(&quick)).await;
    assert!(
        matches!(done, Ok(Ok(_))),
        "the next delete goes and is answered: {done:?}"
    );
    fake.stop().await;
}
