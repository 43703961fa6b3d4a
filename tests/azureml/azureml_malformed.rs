//! A 2xx ARM answer whose body is not the object the contract gives it [AML §2.1, §3] is
//! a named, located backend error: never a panic, never a silent "done", never an endless poll.
//! Driven through the real backend against the scripted fake.

use flightdeck::backend::{Backend, BackendError};
use flightdeck::model::DeploymentSettings;
use flightdeck::plan::Action;
use flightdeck_testkit::arm_fake::*;
use serde_json::json;

/// `200` with a raw body, as a misbehaving proxy or gateway would send it.
fn raw(body: &str) -> Canned {
    Canned {
        body: body.to_string(),
        ..Canned::json(200, json!(null))
    }
}

/// The three bad bodies: HTML, an array, an object missing the required fields.
fn bad_bodies() -> Vec<(&'static str, Canned, &'static str)> {
    vec![
        ("html", raw("<html><body>gateway</body></html>"), "not JSON"),
        ("array", Canned::json(200, json!([])), "got an array"),
        ("empty object", Canned::json(200, json!({})), "is missing"),
    ]
}

fn malformed(err: &BackendError) -> (&str, &str) {
    match err {
        BackendError::Malformed {
            subject, message, ..
        } => (subject, message),
        other => panic!("expected a malformed-body error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_deployment_get_that_is_not_a_deployment_object_fails_the_update_naming_the_deployment() {
    for (label, body, detail) in bad_bodies() {
        let fake = Fake::start().await;
        let d = eps("/scoring/deployments/green");
        fake.on("GET", &d, vec![body]);
        let step = step(
            "scoring",
            Action::UpdateDeployment {
                deployment: "green".into(),
                settings: Box::new(DeploymentSettings {
                    instance_count: Some(1),
                    ..Default::default()
                }),
                changes: vec![],
            },
        );
        let err = backend(&fake).execute(&step).await.unwrap_err();
        let (subject, message) = malformed(&err);
        assert_eq!(subject, "endpoint scoring: deployment green", "{label}");
        assert!(
            message.starts_with("ARM answered 200 with a body that is not a deployment object: "),
            "{label}: {message}"
        );
        assert!(message.contains(detail), "{label}: {message}");
        assert!(
            err.to_string()
                .starts_with("endpoint scoring: deployment green: ARM answered 200"),
            "{err}"
        );
        assert_eq!(fake.writes().len(), 0, "{label}: nothing was written");
        fake.stop().await;
    }
}

#[tokio::test]
async fn an_endpoint_get_that_is_not_an_endpoint_object_fails_the_traffic_step_before_any_put() {
    for (label, body, detail) in bad_bodies() {
        let fake = Fake::start().await;
        let e = eps("/scoring");
        fake.on("GET", &e, vec![body]);
        let step = step(
            "scoring",
            Action::SetTraffic {
                traffic: weights(&[("blue", 100)]),
            },
        );
        let err = backend(&fake).execute(&step).await.unwrap_err();
        let (subject, message) = malformed(&err);
        assert_eq!(subject, "endpoint scoring", "{label}");
        assert!(
            message.starts_with("ARM answered 200 with a body that is not an endpoint object: "),
            "{label}: {message}"
        );
        assert!(message.contains(detail), "{label}: {message}");
        assert_eq!(fake.count("PUT", &e), 0, "{label}");
        fake.stop().await;
    }
}

#[tokio::test]
async fn an_operation_status_that_is_not_a_status_object_fails_the_create_instead_of_polling_forever()
 {
    for (label, body, detail) in bad_bodies() {
        let fake = Fake::start().await;
        let d = eps("/scoring/deployments/green");
        fake.on(
            "PUT",
            &d,
            vec![
                Canned::json(201, deployment_body("green", "Creating", 1))
                    .header("Azure-AsyncOperation", "{base}/ops/1"),
            ],
        );
        fake.on("GET", "/ops/1", vec![body]);
        let step = step(
            "scoring",
            Action::CreateDeployment {
                deployment: "green".into(),
                settings: Box::new(DeploymentSettings::default()),
            },
        );
        let err = backend(&fake).execute(&step).await.unwrap_err();
        let (subject, message) = malformed(&err);
        assert_eq!(subject, "endpoint scoring: deployment green", "{label}");
        assert!(
            message.starts_with(
                "ARM answered 200 with a body that is not an operation status object: "
            ),
            "{label}: {message}"
        );
        assert!(message.contains(detail), "{label}: {message}");
        assert_eq!(
            fake.count("GET", "/ops/1"),
            1,
            "{label}: polled once, not forever"
        );
        fake.stop().await;
    }
}

#[tokio::test]
async fn a_wait_on_a_deployment_whose_get_is_an_empty_array_is_not_taken_as_ready() {
    let fake = Fake::start().await;
    let d = eps("/scoring/deployments/green");
    fake.on("GET", &d, vec![Canned::json(200, json!([]))]);
    let step = step(
        "scoring",
        Action::WaitReady {
            deployment: "green".into(),
        },
    );
    let err = backend(&fake).execute(&step).await.unwrap_err();
    let (subject, message) = malformed(&err);
    assert_eq!(subject, "endpoint scoring: deployment green");
    assert!(message.contains("not a deployment object"), "{message}");
    fake.stop().await;
}

#[tokio::test]
async fn an_endpoint_list_that_is_an_array_is_an_error_not_an_empty_workspace() {
    let fake = Fake::start().await;
    fake.on("GET", &eps(""), vec![Canned::json(200, json!([]))]);
    let err = backend(&fake).read_live().await.unwrap_err();
    let (subject, message) = malformed(&err);
    assert_eq!(subject, "workspace ws");
    assert!(message.contains("not a list page object"), "{message}");
    fake.stop().await;
}

#[tokio::test]
async fn a_listed_deployment_without_properties_names_its_endpoint() {
    let fake = Fake::start().await;
    fake.on(
        "GET",
        &eps(""),
        vec![Canned::json(
            200,
            json!({"value": [endpoint_body("scoring", "Succeeded", json!({}), json!({}))]}),
        )],
    );
    fake.on(
        "GET",
        &eps("/scoring/deployments"),
        vec![Canned::json(200, json!({"value": [{"name": "green"}]}))],
    );
    let err = backend(&fake).read_live().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "endpoint scoring: ARM answered 200 with a body that is not a deployment object in the \
         list: required field `properties` is missing"
    );
    fake.stop().await;
}
