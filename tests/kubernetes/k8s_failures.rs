//! Failure paths of the Kubernetes backend against the fake API server: rollouts that never
//! finish, field-manager conflicts, objects flightdeck does not own, failing test gates.

use flightdeck_testkit::fake_kube;

use std::time::Duration;

use fake_kube::fixtures::*;
use fake_kube::{FakeKube, Script};
use flightdeck::backend::kubernetes::objects::deployment_object;
use flightdeck::backend::kubernetes::{KubernetesBackend, KubernetesOptions};
use flightdeck::backend::{Backend, BackendError};
use flightdeck::model::{DeploymentState, Router};
use serde_json::json;

async fn blue_at_100(fake: &FakeKube, backend: &KubernetesBackend) {
    fake.respond("scoring-blue", 200, "{}");
    for s in [
        create_endpoint(),
        create("blue", settings("credit:1", 1)),
        traffic(&[("blue", 100)]),
    ] {
        backend.execute(&s).await.unwrap();
    }
}

async fn never_ready_version_fails_before_any_router_write(router: Router) {
    let fake = FakeKube::start().await;
    let backend = backend(&fake, &target(router));
    blue_at_100(&fake, &backend).await;
    fake.script("scoring-green", Script::DeadlineExceeded);
    fake.clear_log();

    let err = backend
        .execute(&create("green", settings("credit:2", 1)))
        .await
        .unwrap_err();
    match &err {
        BackendError::Platform {
            code,
            message,
            subject,
            ..
        } => {
            assert_eq!(code, "ProgressDeadlineExceeded");
            assert_eq!(
                message,
                "deployment scoring-green exceeded its progress deadline"
            );
            assert_eq!(subject, "scoring/green");
        }
        other => panic!("unexpected error {other}"),
    }
    let router_writes: Vec<_> = fake
        .write_requests()
        .into_iter()
        .filter(|w| {
            ["virtualservices", "destinationrules", "httproutes"].contains(&w.kind.as_str())
        })
        .collect();
    assert!(
        router_writes.is_empty(),
        "router written: {router_writes:?}"
    );
    let live = backend.read_live().await.unwrap();
    assert_eq!(
        live.endpoints[EP].deployments["green"].state,
        DeploymentState::Failed {
            message: "deployment scoring-green exceeded its progress deadline".into()
        }
    );
    assert_eq!(live.endpoints[EP].traffic, weights(&[("blue", 100)]));
}

#[tokio::test]
async fn a_version_that_never_becomes_ready_fails_its_create_step_on_istio() {
    never_ready_version_fails_before_any_router_write(Router::Istio).await;
}

#[tokio::test]
async fn a_version_that_never_becomes_ready_fails_its_create_step_on_gateway_api() {
    never_ready_version_fails_before_any_router_write(Router::GatewayApi).await;
}

#[tokio::test]
async fn a_rollout_that_stops_partway_times_out_with_the_kubectl_reason() {
    let fake = FakeKube::start().await;
    let opts = KubernetesOptions {
        rollout_timeout: Duration::from_millis(200),
        ..options()
    };
    let backend = KubernetesBackend::new(&target(Router::Istio), fake.client(), opts);
    fake.script(
        "scoring-blue",
        Script::Partial {
            replicas: 2,
            updated: 2,
            available: 1,
        },
    );
    backend.execute(&create_endpoint()).await.unwrap();
    let err = backend
        .execute(&create("blue", settings("credit:1", 2)))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "scoring/blue: timed out after 0s waiting for rollout of deployment scoring-blue \
         (1 of 2 updated replicas are available)"
    );
    let live = backend.read_live().await.unwrap();
    assert_eq!(
        live.endpoints[EP].deployments["blue"].state,
        DeploymentState::Provisioning
    );
}

#[tokio::test]
async fn a_conflict_with_another_field_manager_is_reported_with_its_name() {
    let fake = FakeKube::start().await;
    let backend = backend(&fake, &target(Router::Istio));
    // helm applied a copy of flightdeck's manifest (labels included) with 3 replicas.
    let copied = deployment_object(EP, "blue", NS, &settings("credit:1", 3));
    fake.seed_apply(
        "deployments",
        NS,
        serde_json::to_value(&copied).unwrap(),
        "helm",
    );

    let err = backend
        .execute(&create("blue", settings("credit:1", 1)))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "scoring/blue: Conflict: apply Deployment scoring-blue: conflict with \"helm\" on .spec.replicas"
    );
    assert_eq!(
        fake.object("deployments", NS, "scoring-blue").unwrap()["spec"]["replicas"],
        3
    );
}

#[tokio::test]
async fn drift_on_an_object_flightdeck_owns_is_corrected_by_forcing() {
    let fake = FakeKube::start().await;
    let backend = backend(&fake, &target(Router::Istio));
    blue_at_100(&fake, &backend).await;
    // `kubectl scale` by hand: an Update by another manager on .spec.replicas.
    let client = reqwest::Client::new();
    let res = client
        .patch(format!(
            "{}/apis/apps/v1/namespaces/{NS}/deployments/scoring-blue?fieldManager=kubectl",
            fake.url
        ))
        .header("content-type", "application/merge-patch+json")
        .body(json!({"spec": {"replicas": 5}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    backend.execute(&scale("blue", 5, 2)).await.unwrap();
    assert_eq!(
        fake.object("deployments", NS, "scoring-blue").unwrap()["spec"]["replicas"],
        2
    );
    let apply = fake
        .write_requests()
        .into_iter()
        .rev()
        .find(|w| w.method == "PATCH")
        .unwrap();
    assert!(apply.query.contains("force=true"), "{}", apply.query);
}

#[tokio::test]
async fn objects_without_the_managed_by_label_are_never_touched() {
    let fake = FakeKube::start().await;
    let backend = backend(&fake, &target(Router::Istio));
    let foreign_svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "scoring-blue", "labels": {"team": "other"}},
        "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}});
    fake.seed("services", NS, foreign_svc, "kubectl");
    let mut foreign_dep =
        serde_json::to_value(deployment_object("other", "v1", NS, &settings("x:1", 1))).unwrap();
    foreign_dep["metadata"]["labels"] = json!({"app": "other"});
    fake.seed("deployments", NS, foreign_dep, "kubectl");

    backend.execute(&create_endpoint()).await.unwrap();
    let err = backend
        .execute(&create("blue", settings("credit:1", 1)))
        .await
        .unwrap_err();
    match &err {
        BackendError::Platform { code, message, .. } => {
            assert_eq!(code, "NotManaged");
            assert!(
                message.contains("Service scoring-blue exists without the label"),
                "{message}"
            );
        }
        other => panic!("unexpected error {other}"),
    }
    let touched = fake
        .write_requests()
        .into_iter()
        .filter(|w| w.kind == "services" && w.name.as_deref() == Some("scoring-blue"))
        .count();
    assert_eq!(touched, 0, "the foreign service was written");
    assert_eq!(
        fake.object("services", NS, "scoring-blue").unwrap()["metadata"]["labels"]["team"],
        "other"
    );

    // Not read into live state either, and DeleteEndpoint leaves them in place.
    let live = backend.read_live().await.unwrap();
    assert!(!live.endpoints.contains_key("other"));
    backend
        .execute(&step(flightdeck::plan::Action::DeleteEndpoint))
        .await
        .unwrap();
    assert!(fake.object("services", NS, "scoring-blue").is_some());
    assert!(fake.object("deployments", NS, "other-v1").is_some());
    assert!(
        fake.object("services", NS, "scoring").is_none(),
        "our umbrella service is deleted"
    );
    let gets: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.name.is_some())
        .collect();
    assert!(gets.iter().all(|g| g.name.as_deref() != Some("other-v1")));
}

#[tokio::test]
async fn the_test_gate_goes_through_the_service_proxy_and_fails_on_500() {
    let fake = FakeKube::start().await;
    let backend = backend(&fake, &target(Router::GatewayApi));
    blue_at_100(&fake, &backend).await;
    backend
        .execute(&create("green", settings("credit:2", 1)))
        .await
        .unwrap();

    fake.respond("scoring-green", 200, r#"{"score": 0.7}"#);
    let ok = backend.execute(&test_gate("green")).await.unwrap();
    assert_eq!(ok.detail, "200 from green");

    fake.respond("scoring-green", 500, "model crashed");
    let err = backend.execute(&test_gate("green")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "scoring/green: test failed: POST /api/v1/namespaces/ml/services/scoring-green:8080/proxy/score: \
         got status 500, expected a 2xx status: model crashed"
    );
    let proxied = fake.proxied();
    assert_eq!(proxied.len(), 2);
    assert_eq!(proxied[1].2, json!({"data": [[1, 2]]}));
}

#[tokio::test]
async fn the_test_gate_uses_test_base_url_when_set() {
    let fake = FakeKube::start().await;
    let app = axum::Router::new().route(
        "/scoring-blue/score",
        axum::routing::post(|body: String| async move {
            if body.contains("data") {
                (axum::http::StatusCode::OK, "ok")
            } else {
                (axum::http::StatusCode::BAD_REQUEST, "no data")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut t = target(Router::Istio);
    t.test_base_url = Some(base);
    let backend = backend(&fake, &t);
    blue_at_100(&fake, &backend).await;
    assert_eq!(
        backend.execute(&test_gate("blue")).await.unwrap().detail,
        "200 from blue"
    );
    assert!(fake.proxied().is_empty(), "the API server proxy was used");
    server.abort();
}

#[tokio::test]
async fn deleting_a_deployment_that_still_takes_traffic_is_refused() {
    let fake = FakeKube::start().await;
    let backend = backend(&fake, &target(Router::Istio));
    blue_at_100(&fake, &backend).await;
    fake.clear_log();
    let err = backend.execute(&delete("blue")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "scoring/blue: NotDrained: deployment blue still takes 100% of the traffic; drain it first"
    );
    assert!(fake.write_requests().is_empty());
}

#[tokio::test]
async fn traffic_that_does_not_sum_to_100_is_refused_before_any_write() {
    let fake = FakeKube::start().await;
    let backend = backend(&fake, &target(Router::GatewayApi));
    blue_at_100(&fake, &backend).await;
    fake.clear_log();
    let err = backend
        .execute(&traffic(&[("blue", 60)]))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "scoring: InvalidTraffic: traffic sums to 60, expected 100"
    );
    assert!(fake.write_requests().is_empty());
}
