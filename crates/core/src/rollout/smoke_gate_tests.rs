//! The `smoke` stage gate in the pure engine: after the bake the engine asks the driver for a
//! smoke run of the candidate (with the metrics read, in the same tick), and judges it like a
//! metric gate: a failure follows `on_failure`, with what failed in the reason.

use std::time::Duration;

use super::engine::{self, Decision, Input, Status};
use super::gates::{GateResult, SmokeRun};
use super::policy::{Comparison, Gate, OnFailure, RolloutPolicy, Stage, StageTarget, Threshold};
use super::record::{RolloutRecord, RolloutState};
use crate::metrics::{Reading, Readings, Signal, Window};
use crate::model::*;
use crate::smoke::TestSpec;

const EP: &str = "ep";

fn settings(model: &str) -> Box<DeploymentSettings> {
    Box::new(DeploymentSettings {
        model: Some(AssetRef::parse(model)),
        instance_type: Some("Standard_DS3_v2".into()),
        instance_count: Some(1),
        ..DeploymentSettings::default()
    })
}

/// Stages 10 and 50, each baking 60 s and gated by `smoke` and `error_rate < 2%`.
fn policy(on_failure: OnFailure) -> RolloutPolicy {
    let stage = |w| Stage {
        target: StageTarget::Weight(w),
        bake: Duration::from_secs(60),
        pause: false,
        gates: vec![Gate {
            signal: Signal::ErrorRate,
            comparison: Comparison::Below,
            threshold: Threshold::Absolute(0.02),
        }],
        smoke: true,
    };
    RolloutPolicy {
        steps: vec![stage(10), stage(50)],
        min_requests: 0,
        max_bake: None,
        on_no_data: OnFailure::Rollback,
        on_failure,
        deadline: None,
        keep_failed: true,
        scale_with_traffic: false,
    }
}

fn desired() -> Endpoint {
    let test = TestSpec {
        requests: vec![
            crate::smoke::TestRequest::new("tests/a.json", "{}"),
            crate::smoke::TestRequest::new("tests/b.json", "{}"),
        ],
        ..TestSpec::default()
    };
    let green = Deployment {
        name: "green".into(),
        settings: settings("azureml:m:2"),
        test: Some(test),
    };
    Endpoint {
        name: EP.into(),
        settings: EndpointSettings::default(),
        traffic: Some([("green".to_string(), 100)].into()),
        mirror_traffic: None,
        deployments: [("green".to_string(), green)].into(),
    }
}

/// Live at stage 2 (blue 50 / green 50), both ready.
fn live() -> LiveEndpoint {
    let deployment = |name: &str, model| LiveDeployment {
        name: name.into(),
        settings: settings(model),
        state: DeploymentState::Ready,
        phase: None,
    };
    LiveEndpoint {
        name: EP.into(),
        settings: EndpointSettings::default(),
        traffic: [("blue".to_string(), 50), ("green".to_string(), 50)].into(),
        mirror_traffic: Weights::new(),
        deployments: [
            ("blue".to_string(), deployment("blue", "azureml:m:1")),
            ("green".to_string(), deployment("green", "azureml:m:2")),
        ]
        .into(),
        scoring_uri: None,
        busy: None,
        problems: Vec::new(),
        rollout: None,
    }
}

fn record_at_stage_2(desired: &Endpoint) -> RolloutRecord {
    RolloutRecord {
        digest: engine::digest(desired),
        revision: None,
        candidate: "green".into(),
        stage: 1,
        since: "2026-12-01T10:00:00Z".parse().unwrap(),
        started: "2026-12-01T09:55:00Z".parse().unwrap(),
        state: RolloutState::Progressing,
        baseline: [("blue".to_string(), 100)].into(),
        shifting: false,
        approved: false,
        reason: None,
        scale: Default::default(),
    }
}

/// A clean error rate for both deployments.
fn healthy() -> Readings {
    let window = Window {
        start: "2026-12-01T10:00:00Z".parse().unwrap(),
        end: "2026-12-01T10:01:30Z".parse().unwrap(),
    };
    ["green", "blue"]
        .iter()
        .map(|d| {
            let reading = Reading {
                value: Some(0.0),
                query: String::new(),
                window,
            };
            (d.to_string(), [(Signal::ErrorRate, reading)].into())
        })
        .collect()
}

fn decide_after_bake(
    policy: &RolloutPolicy,
    readings: Option<&Readings>,
    smoke: Option<&SmokeRun>,
) -> Decision {
    let desired = desired();
    let live = live();
    let record = record_at_stage_2(&desired);
    engine::decide(&Input {
        policy,
        desired: &desired,
        live: &live,
        record: Some(&record),
        revision: None,
        now: record.since + chrono::Duration::seconds(90),
        readings,
        smoke,
    })
}

#[test]
fn after_the_bake_the_engine_asks_for_the_metrics_and_the_smoke_run_of_the_candidate_at_once() {
    let decision = decide_after_bake(&policy(OnFailure::Rollback), None, None);
    assert_eq!(decision.status, Status::Evaluating { stage: 1 });
    assert!(decision.read.is_some(), "the error_rate gate needs a read");
    let smoke = decision.smoke.expect("the smoke gate needs a run");
    assert_eq!(
        (smoke.endpoint.as_str(), smoke.deployment.as_str()),
        (EP, "green")
    );
}

#[test]
fn a_failing_smoke_run_at_stage_2_rolls_back_and_the_reason_names_the_file() {
    let failed: SmokeRun = Err(
        "deployment green: tests/b.json: got status 500, expected a 2xx status: boom (tried 2 times)"
            .into(),
    );
    let decision = decide_after_bake(
        &policy(OnFailure::Rollback),
        Some(&healthy()),
        Some(&failed),
    );
    let Status::RollingBack { reason } = &decision.status else {
        panic!("expected a rollback, got {:?}", decision.status)
    };
    assert_eq!(
        reason,
        "gate failed at stage 2: smoke failed: deployment green: tests/b.json: got status 500, \
         expected a 2xx status: boom (tried 2 times)"
    );
    let before = decision.record_before.expect("failed is recorded first");
    assert_eq!(before.state, RolloutState::Failed);
    assert_eq!(
        decision.endpoint.expect("back to the baseline").traffic,
        Some([("blue".to_string(), 100)].into())
    );
    let [verdict] = decision.verdicts.as_slice() else {
        panic!("{:?}", decision.verdicts)
    };
    assert_eq!(
        (verdict.gate.as_str(), verdict.result),
        ("smoke", GateResult::Fail)
    );
    assert_eq!(verdict.query, "tests/a.json, tests/b.json");
    assert_eq!(verdict.signal_name(), "smoke");
}

#[test]
fn a_failing_smoke_run_under_on_failure_pause_holds_the_stage_for_a_person() {
    let failed: SmokeRun = Err("tests/a.json: JSON path $.label: found 0, expected 1".into());
    let decision = decide_after_bake(&policy(OnFailure::Pause), Some(&healthy()), Some(&failed));
    let Status::Paused { stage: 1, reason } = &decision.status else {
        panic!("expected a pause, got {:?}", decision.status)
    };
    assert!(
        reason.contains("smoke failed: tests/a.json: JSON path $.label"),
        "{reason}"
    );
    assert_eq!(
        decision.endpoint.expect("kept at the stage").traffic,
        Some([("blue".to_string(), 50), ("green".to_string(), 50)].into())
    );
}

#[test]
fn a_passing_smoke_run_goes_on_and_is_listed_with_the_metric_verdicts() {
    let passed: SmokeRun = Ok("2 requests, 200 from green".into());
    let decision = decide_after_bake(
        &policy(OnFailure::Rollback),
        Some(&healthy()),
        Some(&passed),
    );
    assert_eq!(decision.status, Status::Completing);
    let shown: Vec<(String, GateResult)> = decision
        .verdicts
        .iter()
        .map(|v| (v.describe(), v.result))
        .collect();
    assert_eq!(
        shown,
        [
            (
                "smoke passed: 2 requests, 200 from green".to_string(),
                GateResult::Pass
            ),
            ("error_rate 0% < 2%".to_string(), GateResult::Pass),
        ]
    );
}
