//! A staged rollout survives an agent restart: the first agent shifts stage 1 and records it in
//! the endpoint's `flightdeck.rollout` tag, then stops mid-bake; a new agent reads the record,
//! bakes on from where the first left off and finishes. Its traffic writes (the endpoint PUTs in
//! the sandbox journal) are exactly stage 2 and the declared traffic: no shift back to the
//! baseline, no second shift of stage 1.

use std::time::Duration;

use flightdeck::backend::azureml::RECORD_TAG;
use flightdeck_core::rollout::{RolloutRecord, RolloutState};
use flightdeck_testkit::*;
use serde_json::{Value, json};

/// Two stages with short bakes and no gates (no metrics needed). Stage 1 bakes long enough for
/// the test to stop the first agent before it is over, even on a loaded machine.
const ROLLOUT: &str = "rollout:
  default:
    steps:
      - weight: 20
        bake: 4s
      - weight: 60
        bake: 1s
";

/// The rollout record stored on the endpoint, if any.
async fn record(arm: &Arm) -> Option<RolloutRecord> {
    let endpoint = arm.endpoint("my-endpoint").await?;
    let text = endpoint["tags"][RECORD_TAG].as_str()?.to_string();
    Some(RolloutRecord::from_compact(&text, None).expect("the record tag parses"))
}

/// Traffic writes after `after`: the Azure ML client PUTs the whole endpoint to set traffic,
/// while rollout records are tag PATCHes [AML §2.5, R15].
async fn traffic_puts(arm: &Arm, after: u64) -> usize {
    arm.writes_after(after)
        .await
        .iter()
        .filter(|e| e["method"] == "PUT")
        .filter(|e| {
            e["path"]
                .as_str()
                .unwrap_or("")
                .ends_with("/onlineEndpoints/my-endpoint")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_agent_resumes_a_staged_rollout_at_the_recorded_stage_and_finishes_it() {
    let sandbox = start_sandbox().await;
    let arm = Arm::new(&sandbox).await;
    let repo = GitRepo::with_sandbox_environment();
    repo.write(
        "environments/sandbox/environment.yaml",
        &format!("{ENVIRONMENT}{ROLLOUT}"),
    );
    repo.commit("a rollout policy");
    let t = Duration::from_secs(30);
    let interval = Duration::from_millis(300);

    let first = start_agent(agent_config(repo.dir.path(), &sandbox, interval, None)).await;
    // A first deployment has no baseline to protect: blue takes 100% in one step.
    eventually("blue takes all traffic", t, || async {
        arm.traffic("my-endpoint").await == Some(json!({"blue": 100}))
    })
    .await;

    repo.write(
        "environments/sandbox/my-endpoint.yml",
        &endpoint_yaml(&[("blue", 1), ("green", 2)], &[("blue", 0), ("green", 100)]),
    );
    let commit = repo.commit("green takes all traffic, in stages");
    eventually("stage 1 is recorded after its shift", t, || async {
        record(&arm)
            .await
            .is_some_and(|r| r.stage == 0 && !r.shifting && r.state == RolloutState::Progressing)
    })
    .await;
    // The agent reports the rollout it runs: in /status and as metrics.
    eventually("/status shows stage 1 of 3", t, || async {
        let status = status(&first.base).await;
        let rollouts = &status["environments"]["environments/sandbox"]["rollouts"];
        rollouts[0]["endpoint"] == "my-endpoint" && rollouts[0]["stage"] == 1
    })
    .await;
    let text = metrics(&first.base).await;
    assert!(
        text.contains(
            "flightdeck_rollout_stage{env=\"environments/sandbox\",endpoint=\"my-endpoint\"} 1\n"
        ),
        "{text}"
    );
    first.stop().await;

    let stage1 = record(&arm).await.unwrap();
    assert_eq!(stage1.candidate, "green");
    let revision = stage1.revision.clone().unwrap_or_default();
    assert!(
        !revision.is_empty() && commit.starts_with(&revision),
        "record serves {revision:?}, commit {commit}"
    );
    assert_eq!(stage1.baseline, [("blue".to_string(), 100)].into());
    let stopped_at: Value = arm.traffic("my-endpoint").await.unwrap();
    assert_eq!(stopped_at, json!({"blue": 80, "green": 20}));
    let mark = arm.last_seq().await;

    let second = start_agent(agent_config(repo.dir.path(), &sandbox, interval, None)).await;
    // Watch every traffic split the endpoint shows while the second agent works.
    let seen = std::sync::Mutex::new(vec![stopped_at]);
    eventually(
        "the rollout finishes at the declared traffic",
        t,
        || async {
            let now = arm.traffic("my-endpoint").await.unwrap();
            {
                let mut seen = seen.lock().unwrap();
                if seen.last() != Some(&now) {
                    seen.push(now);
                }
            }
            record(&arm)
                .await
                .is_some_and(|r| r.state == RolloutState::Succeeded)
        },
    )
    .await;
    second.stop().await;

    assert_eq!(
        arm.traffic("my-endpoint").await,
        Some(json!({"blue": 0, "green": 100}))
    );
    let seen = seen.into_inner().unwrap();
    let done = record(&arm).await.unwrap();
    assert_eq!(done.started, stage1.started, "the same rollout, resumed");
    assert!(
        seen.iter().all(|t| t["green"].as_u64().unwrap_or(0) >= 20),
        "traffic went back towards the baseline: {seen:?}"
    );
    assert_eq!(
        traffic_puts(&arm, mark).await,
        2,
        "the second agent writes stage 2 and the declared traffic, nothing else: {:?}",
        arm.writes_after(mark).await
    );
}
