//! Rollout progress stored as annotations (`flightdeck.io/rollout`,
//! `flightdeck.io/rollout-reason`) on the endpoint's VirtualService or HTTPRoute, under the
//! field manager `flightdeck-rollout`, against the fake API server on both routers: read back
//! by `read_live`, kept by every router write (weights, pins) under the `flightdeck` manager,
//! removed by `None`.

use flightdeck_testkit::fake_kube;

use fake_kube::FakeKube;
use fake_kube::fixtures::*;
use flightdeck::backend::Backend;
use flightdeck::backend::kubernetes::progress::{REASON_ANNOTATION, RECORD_ANNOTATION};
use flightdeck::model::Router;
use flightdeck::plan::Step;
use flightdeck_core::rollout::{RolloutRecord, RolloutState};
use serde_json::{Value, json};

fn record() -> RolloutRecord {
    RolloutRecord {
        digest: "3f2a9c0d1e2f".into(),
        revision: Some("1a2b3c4d".into()),
        candidate: "green".into(),
        stage: 1,
        since: "2026-12-01T10:00:00Z".parse().unwrap(),
        started: "2026-12-01T09:50:00Z".parse().unwrap(),
        state: RolloutState::Paused,
        baseline: [("blue".to_string(), 100)].into(),
        shifting: false,
        approved: false,
        reason: Some("gate error_rate failed at stage 2 (7.1% > 2%)".into()),
        scale: Default::default(),
    }
}

fn router_plural(router: Router) -> &'static str {
    match router {
        Router::Istio => "virtualservices",
        Router::GatewayApi => "httproutes",
    }
}

async fn run(backend: &impl Backend, steps: &[Step]) {
    for s in steps {
        backend
            .execute(s)
            .await
            .unwrap_or_else(|e| panic!("{} failed: {e}", s.reason));
    }
}

fn annotations(fake: &FakeKube, router: Router) -> Value {
    let obj = fake
        .object(router_plural(router), NS, EP)
        .expect("router exists");
    obj.pointer("/metadata/annotations")
        .cloned()
        .unwrap_or(json!({}))
}

async fn record_survives_router_writes_and_none_removes_it(router: Router) {
    let fake = FakeKube::start().await;
    let target = target(router);
    let backend = backend(&fake, &target);
    run(
        &backend,
        &[
            create_endpoint(),
            create("blue", settings("img:1", 1)),
            traffic(&[("blue", 100)]),
        ],
    )
    .await;

    fake.clear_log();
    backend.write_rollout(EP, Some(&record())).await.unwrap();
    let writes = fake.write_requests();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert_eq!(
        annotations(&fake, router),
        json!({RECORD_ANNOTATION: record().to_compact(),
               REASON_ANNOTATION: "gate error_rate failed at stage 2 (7.1% > 2%)"})
    );
    let live = backend.read_live().await.unwrap();
    assert_eq!(live.endpoints[EP].rollout, Some(record()));

    // A new version (the router is re-rendered with its pin rule) and a weight shift, both
    // applied by the `flightdeck` manager without the annotations, keep them.
    run(
        &backend,
        &[
            create("green", settings("img:2", 1)),
            traffic(&[("blue", 90), ("green", 10)]),
        ],
    )
    .await;
    let live = backend.read_live().await.unwrap();
    assert_eq!(
        live.endpoints[EP].traffic,
        weights(&[("blue", 90), ("green", 10)])
    );
    assert_eq!(live.endpoints[EP].rollout, Some(record()));
    assert!(live.endpoints[EP].problems.is_empty(), "{live:#?}");

    // A newer record replaces the old one; a record without a reason drops the reason.
    let mut next = record();
    next.stage = 2;
    next.state = RolloutState::Progressing;
    next.reason = None;
    backend.write_rollout(EP, Some(&next)).await.unwrap();
    assert_eq!(
        annotations(&fake, router),
        json!({RECORD_ANNOTATION: next.to_compact()})
    );
    assert_eq!(
        backend.read_live().await.unwrap().endpoints[EP].rollout,
        Some(next)
    );

    backend.write_rollout(EP, None).await.unwrap();
    let left = annotations(&fake, router);
    assert!(left.get(RECORD_ANNOTATION).is_none(), "{left}");
    assert!(left.get(REASON_ANNOTATION).is_none(), "{left}");
    let live = backend.read_live().await.unwrap();
    assert_eq!(live.endpoints[EP].rollout, None);
    assert_eq!(
        live.endpoints[EP].traffic,
        weights(&[("blue", 90), ("green", 10)])
    );
    assert!(fake.invalid().is_empty(), "{:?}", fake.invalid());
    // The mechanism that keeps them: their own field manager.
    assert!(
        writes[0].query.contains("fieldManager=flightdeck-rollout"),
        "{writes:#?}"
    );
}

#[tokio::test]
async fn on_istio_the_record_lives_on_the_virtual_service_through_weight_changes() {
    record_survives_router_writes_and_none_removes_it(Router::Istio).await;
}

#[tokio::test]
async fn on_gateway_api_the_record_lives_on_the_http_route_through_weight_changes() {
    record_survives_router_writes_and_none_removes_it(Router::GatewayApi).await;
}

async fn malformed_annotation_reads_as_no_record(router: Router) {
    let fake = FakeKube::start().await;
    let target = target(router);
    let backend = backend(&fake, &target);
    run(
        &backend,
        &[
            create_endpoint(),
            create("blue", settings("img:1", 1)),
            traffic(&[("blue", 100)]),
        ],
    )
    .await;
    fake.patch(
        router_plural(router),
        NS,
        EP,
        json!({"metadata": {"annotations": {RECORD_ANNOTATION: "{not a record"}}}),
        "kubectl-annotate",
    );
    let live = backend
        .read_live()
        .await
        .expect("a bad annotation never fails the read");
    assert_eq!(live.endpoints[EP].rollout, None);
    assert_eq!(live.endpoints[EP].traffic, weights(&[("blue", 100)]));

    // flightdeck's manager takes the annotation over (forced) on its next write.
    backend.write_rollout(EP, Some(&record())).await.unwrap();
    assert_eq!(
        backend.read_live().await.unwrap().endpoints[EP].rollout,
        Some(record())
    );
}

#[tokio::test]
async fn a_malformed_rollout_annotation_reads_as_no_record_on_both_routers() {
    malformed_annotation_reads_as_no_record(Router::Istio).await;
    malformed_annotation_reads_as_no_record(Router::GatewayApi).await;
}

#[tokio::test]
async fn storing_a_record_without_a_routing_object_fails_and_creates_nothing() {
    for router in [Router::Istio, Router::GatewayApi] {
        let fake = FakeKube::start().await;
        let target = target(router);
        let backend = backend(&fake, &target);
        let err = backend
            .write_rollout("missing", Some(&record()))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("endpoint missing: NotFound: "), "{err}");
        assert!(err.contains("does not exist"), "{err}");
        assert!(fake.write_requests().is_empty());
        assert!(fake.names(router_plural(router), NS).is_empty());
    }
}
