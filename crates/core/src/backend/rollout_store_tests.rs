//! The memory and state-file backends keep rollout progress on the live endpoint.

use super::memory::MemoryBackend;
use super::state_file::StateFileBackend;
use super::{Backend, BackendError};
use crate::model::{DeploymentState, LiveDeployment, LiveEndpoint, LiveState, Weights};
use crate::plan::{Action, Step};
use crate::rollout::{RolloutRecord, RolloutState};

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

fn live() -> LiveState {
    let deployment = |name: &str| LiveDeployment {
        name: name.into(),
        settings: Box::default(),
        state: DeploymentState::Ready,
        phase: None,
    };
    let endpoint = LiveEndpoint {
        name: "scoring".into(),
        settings: Default::default(),
        traffic: [("blue".to_string(), 100)].into(),
        mirror_traffic: Weights::new(),
        deployments: [
            ("blue".to_string(), deployment("blue")),
            ("green".to_string(), deployment("green")),
        ]
        .into(),
        scoring_uri: None,
        busy: None,
        problems: Vec::new(),
        rollout: None,
    };
    LiveState {
        endpoints: [("scoring".to_string(), endpoint)].into(),
        taken: Vec::new(),
    }
}

fn shift() -> Step {
    Step::new(
        "scoring".into(),
        Action::SetTraffic {
            traffic: [("blue".to_string(), 90), ("green".to_string(), 10)].into(),
        },
        "flight green 10%".into(),
    )
}

fn assert_unknown_endpoint(err: BackendError) {
    let text = err.to_string();
    assert!(
        text.contains("endpoint missing") && text.contains("does not exist"),
        "{text}"
    );
}

#[tokio::test]
async fn the_memory_backend_reads_back_the_record_it_stored_and_forgets_it_on_none() {
    let backend = MemoryBackend::new(live());
    backend
        .write_rollout("scoring", Some(&record()))
        .await
        .unwrap();
    let read = backend.read_live().await.unwrap();
    assert_eq!(read.endpoints["scoring"].rollout, Some(record()));

    backend.execute(&shift()).await.unwrap();
    let read = backend.read_live().await.unwrap();
    assert_eq!(read.endpoints["scoring"].rollout, Some(record()));

    backend.write_rollout("scoring", None).await.unwrap();
    assert_eq!(
        backend.read_live().await.unwrap().endpoints["scoring"].rollout,
        None
    );
}

#[tokio::test]
async fn the_memory_backend_refuses_a_record_for_an_endpoint_that_does_not_exist() {
    let backend = MemoryBackend::new(live());
    let err = backend
        .write_rollout("missing", Some(&record()))
        .await
        .unwrap_err();
    assert_unknown_endpoint(err);
    assert_eq!(backend.snapshot(), live());
}

#[tokio::test]
async fn the_state_file_persists_the_record_across_backends_and_through_a_traffic_shift() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("state.json"),
        serde_json::to_vec(&live()).unwrap(),
    )
    .unwrap();
    let first = StateFileBackend::open(dir.path(), "state.json").unwrap();
    first
        .write_rollout("scoring", Some(&record()))
        .await
        .unwrap();
    first.execute(&shift()).await.unwrap();

    // A second process (a new backend on the same file) resumes from what the first stored.
    let second = StateFileBackend::open(dir.path(), "state.json").unwrap();
    let read = second.read_live().await.unwrap();
    assert_eq!(read.endpoints["scoring"].rollout, Some(record()));
    assert_eq!(read.endpoints["scoring"].traffic["green"], 10);

    second.write_rollout("scoring", None).await.unwrap();
    let text = std::fs::read_to_string(dir.path().join("state.json")).unwrap();
    assert!(!text.contains("rollout"), "{text}");
    let third = StateFileBackend::open(dir.path(), "state.json").unwrap();
    assert_eq!(
        third.read_live().await.unwrap().endpoints["scoring"].rollout,
        None
    );
}

#[tokio::test]
async fn the_state_file_refuses_a_record_for_an_endpoint_that_does_not_exist_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, serde_json::to_vec(&live()).unwrap()).unwrap();
    let before = std::fs::read(&path).unwrap();
    let backend = StateFileBackend::open(dir.path(), "state.json").unwrap();
    let err = backend
        .write_rollout("missing", Some(&record()))
        .await
        .unwrap_err();
    assert_unknown_endpoint(err);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}
