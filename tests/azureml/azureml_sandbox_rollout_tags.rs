//! Rollout progress stored in endpoint tags (`flightdeck.rollout`, `flightdeck.rollout.reason`)
//! through the real Azure ML client against the in-process sandbox: written by a tags PATCH
//! [AML §2.5, R15], read back as `LiveEndpoint::rollout`, hidden from the planner, kept by every
//! other endpoint write, removed by `None`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use flightdeck::backend::Backend;
use flightdeck::backend::azureml::{REASON_TAG, RECORD_TAG};
use flightdeck_core::rollout::{RolloutRecord, RolloutState};
use flightdeck_testkit::azureml_sandbox::*;
use flightdeck_testkit::eventually::eventually;
use serde_json::json;

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

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Reference flow file `i` with `extra` endpoint lines (tags, description) after `auth_mode`.
fn write_flow(dir: &Path, i: usize, extra: &str) {
    let text = std::fs::read_to_string(flow_file(i)).unwrap();
    let text = text.replacen("auth_mode: key\n", &format!("auth_mode: key\n{extra}"), 1);
    assert!(text.contains(extra), "flow file {i} has auth_mode: key");
    std::fs::write(dir.join("my-endpoint.yml"), text).unwrap();
}

fn writes(log: &[serde_json::Value]) -> Vec<(String, String)> {
    log.iter()
        .map(method_path)
        .filter(|(m, _)| m != "GET")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_progress_lives_in_two_endpoint_tags_that_traffic_and_tag_changes_keep() {
    let env = Env::start(Duration::from_millis(20)).await;
    let dir = tempfile::tempdir().unwrap();
    env.write_environment(dir.path(), "");
    write_flow(dir.path(), 2, "tags:\n  team: search\n");
    let desired = load(dir.path());
    let backend = env.backend(&desired);
    let (_, report) = reconcile(&desired, &backend, 4).await;
    assert!(report.succeeded(), "{report:#?}");

    env.clear_log().await;
    backend
        .write_rollout("my-endpoint", Some(&record()))
        .await
        .unwrap();
    let log = env.log().await;
    let w = writes(&log);
    assert_eq!(w.len(), 1, "{log:#?}");
    assert_eq!(w[0].0, "PATCH");
    assert!(w[0].1.ends_with("/onlineEndpoints/my-endpoint"), "{w:?}");
    let stored = env.endpoint_tags("my-endpoint").await;
    assert_eq!(
        stored,
        tags(&[
            ("team", "search"),
            (RECORD_TAG, &record().to_compact()),
            (REASON_TAG, "gate error_rate failed at stage 2 (7.1% > 2%)"),
        ])
    );

    let live = backend.read_live().await.unwrap();
    let endpoint = &live.endpoints["my-endpoint"];
    assert_eq!(endpoint.rollout, Some(record()));
    assert_eq!(endpoint.settings.tags, Some(tags(&[("team", "search")])));
    assert_converged(&desired, &backend, "declared tags with a stored record").await;

    // A traffic shift (endpoint PUT) keeps the record.
    write_flow(dir.path(), 3, "tags:\n  team: search\n");
    let desired = load(dir.path());
    let (p, report) = reconcile(&desired, &backend, 4).await;
    assert!(!p.is_empty() && report.succeeded(), "{report:#?}");
    assert_eq!(env.traffic("my-endpoint").await["green"], 10);
    assert_eq!(
        backend.read_live().await.unwrap().endpoints["my-endpoint"].rollout,
        Some(record())
    );

    // A tags-only change (endpoint PATCH) keeps it.
    write_flow(dir.path(), 3, "tags:\n  team: ranking\n");
    let desired = load(dir.path());
    env.clear_log().await;
    let (_, report) = reconcile(&desired, &backend, 4).await;
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(writes(&env.log().await)[0].0, "PATCH");
    assert_eq!(env.endpoint_tags("my-endpoint").await.len(), 3);
    let live = backend.read_live().await.unwrap();
    assert_eq!(live.endpoints["my-endpoint"].rollout, Some(record()));
    assert_converged(&desired, &backend, "after a tags PATCH").await;

    // A settings change with tags (endpoint GET + overlay + PUT) keeps it.
    write_flow(
        dir.path(),
        3,
        "tags:\n  team: search\ndescription: scoring\n",
    );
    let desired = load(dir.path());
    env.clear_log().await;
    let (_, report) = reconcile(&desired, &backend, 4).await;
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(writes(&env.log().await)[0].0, "PUT");
    let live = backend.read_live().await.unwrap();
    assert_eq!(live.endpoints["my-endpoint"].rollout, Some(record()));
    assert_eq!(
        live.endpoints["my-endpoint"].settings.tags,
        Some(tags(&[("team", "search")]))
    );
    assert_converged(&desired, &backend, "after an endpoint PUT").await;

    // None removes both tags and only them.
    backend.write_rollout("my-endpoint", None).await.unwrap();
    assert_eq!(
        env.endpoint_tags("my-endpoint").await,
        tags(&[("team", "search")])
    );
    assert_eq!(
        backend.read_live().await.unwrap().endpoints["my-endpoint"].rollout,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_record_never_shows_as_a_change_when_no_tags_are_declared() {
    let env = Env::start(Duration::from_millis(20)).await;
    let dir = tempfile::tempdir().unwrap();
    env.write_environment(dir.path(), "");
    std::fs::write(
        dir.path().join("my-endpoint.yml"),
        "name: my-endpoint\nauth_mode: key\n",
    )
    .unwrap();
    let desired = load(dir.path());
    let backend = env.backend(&desired);
    let (_, report) = reconcile(&desired, &backend, 4).await;
    assert!(report.succeeded(), "{report:#?}");

    let mut long = record();
    long.reason = Some("x".repeat(1000));
    backend
        .write_rollout("my-endpoint", Some(&long))
        .await
        .unwrap();
    let stored = env.endpoint_tags("my-endpoint").await;
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        vec![RECORD_TAG, REASON_TAG]
    );
    assert!(
        stored[REASON_TAG].len() <= 256,
        "{}",
        stored[REASON_TAG].len()
    );
    let read = backend.read_live().await.unwrap().endpoints["my-endpoint"].clone();
    assert_eq!(read.settings.tags.unwrap_or_default(), BTreeMap::new());
    let reason = read.rollout.unwrap().reason.unwrap();
    assert!(
        reason.starts_with("xxx") && reason.ends_with('…'),
        "{reason}"
    );
    assert_converged(&desired, &backend, "undeclared tags with a stored record").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_rollout_tag_reads_as_no_record_and_never_fails_the_read() {
    let env = Env::start(Duration::from_millis(20)).await;
    let dir = tempfile::tempdir().unwrap();
    env.write_environment(dir.path(), "");
    std::fs::write(
        dir.path().join("my-endpoint.yml"),
        "name: my-endpoint\nauth_mode: key\ntags:\n  team: search\n",
    )
    .unwrap();
    let desired = load(dir.path());
    let backend = env.backend(&desired);
    let (_, report) = reconcile(&desired, &backend, 4).await;
    assert!(report.succeeded(), "{report:#?}");

    let status = env
        .arm_patch(
            "/onlineEndpoints/my-endpoint",
            &json!({"tags": {"team": "search", RECORD_TAG: "{not a record"}}),
        )
        .await;
    assert!((200..300).contains(&status), "{status}");
    eventually(
        "the hand-written tag lands",
        Duration::from_secs(10),
        || async {
            env.endpoint_tags("my-endpoint")
                .await
                .contains_key(RECORD_TAG)
        },
    )
    .await;
    let live = backend.read_live().await.unwrap();
    assert_eq!(live.endpoints["my-endpoint"].rollout, None);
    assert_eq!(
        live.endpoints["my-endpoint"].settings.tags,
        Some(tags(&[("team", "search")]))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storing_a_record_for_an_endpoint_that_does_not_exist_fails_and_writes_nothing() {
    let env = Env::start(Duration::from_millis(20)).await;
    let dir = tempfile::tempdir().unwrap();
    env.write_environment(dir.path(), "");
    let desired = load(dir.path());
    let backend = env.backend(&desired);
    let err = backend
        .write_rollout("missing", Some(&record()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("endpoint missing: "), "{err}");
    assert!(err.contains("404"), "{err}");
    assert!(writes(&env.log().await).is_empty());
}
