//! A hung Kubernetes API server or model server fails the step with a message that says what
//! timed out, instead of holding the step forever: every API call has connect/read/write
//! timeouts (`KubernetesOptions::api_timeout`), every test request its own timeout.

use flightdeck_testkit::fake_kube;
use flightdeck_testkit::hung;

use std::time::Duration;

use fake_kube::FakeKube;
use fake_kube::fixtures::*;
use flightdeck::backend::kubernetes::{KubernetesBackend, KubernetesOptions, client_with_timeouts};
use flightdeck::backend::{Backend, BackendError};
use flightdeck::model::Router;
use hung::Hung;

fn quick() -> KubernetesOptions {
    KubernetesOptions {
        api_timeout: Duration::from_millis(300),
        test_request_timeout: Duration::from_millis(300),
        ..options()
    }
}

#[tokio::test]
async fn a_hung_api_server_fails_the_step_naming_the_call_that_timed_out() {
    let server = Hung::start().await;
    let mut config = kube::Config::new(server.url.parse().unwrap());
    config.default_retry = false;
    let client = client_with_timeouts(config, &quick()).unwrap();
    let backend = KubernetesBackend::new(&target(Router::Istio), client, quick());

    let err = backend.execute(&create_endpoint()).await.unwrap_err();
    match &err {
        BackendError::TimedOut { subject, message } => {
            assert_eq!(subject, "scoring");
            assert!(message.starts_with("kubernetes API call "), "{message}");
            assert!(message.ends_with(" timed out after 300ms"), "{message}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }

    let err = backend.read_live().await.unwrap_err().to_string();
    assert!(err.contains("kubernetes API call list"), "{err}");
    assert!(err.ends_with("timed out after 300ms"), "{err}");
}

#[tokio::test]
async fn a_hung_model_server_fails_the_test_step_naming_the_request() {
    let fake = FakeKube::start().await;
    let server = Hung::start().await;
    let mut target = target(Router::Istio);
    target.test_base_url = Some(server.url.clone());
    let backend = KubernetesBackend::new(&target, fake.client(), quick());

    let err = backend.execute(&test_gate("green")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "scoring/green: test of deployment green timed out after 300ms (pre-traffic request \
             to {}/scoring-green/score)",
            server.url
        )
    );
    assert!(matches!(err, BackendError::TimedOut { .. }), "{err:?}");
}
