//! A rollout record longer than one ARM tag value (256 characters [AML §2.5]; the limit itself is
//! from the ARM tag docs, see `rollout_tags.rs`), through the real binary against the sandbox:
//! three baseline deployments under `scale_with_traffic` (their names and instance counts are
//! all in the record) make the compact record about 400 bytes, so it is split over
//! `flightdeck.rollout`, `flightdeck.rollout.1`, …; the rollout pauses at stage 1, is resumed by
//! `flightdeck rollout resume` (a second record write) and finishes on the next apply.

use std::time::Duration;

use flightdeck::backend::azureml::{REASON_TAG, RECORD_TAG, take_rollout_record};
use flightdeck::sandbox::SandboxConfig;
use flightdeck_core::rollout::RolloutState;
use flightdeck_testkit::azureml_sandbox::*;
use flightdeck_testkit::rollout_history::{Stage, check_routing, check_stages, traffic_of};

use super::azureml_rollouts::run;

const EP: &str = "my-endpoint";
const BASELINE: [&str; 3] = [
    "blue-eastus-primary",
    "blue-eastus-secondary",
    "blue-westeurope-standby",
];

/// Stage 1 pauses for a person; stage 2 bakes 1 s; no gates (no metrics needed).
const POLICY: &str = "rollout:
  default:
    steps:
      - weight: 10
        bake: 1s
        pause: true
      - weight: 50
        bake: 1s
    scale_with_traffic: true
";

/// The `deployments:` entry of flow file `file` (blue at 2 instances, or green), renamed.
fn deployment(file: usize, from: &str, name: &str) -> String {
    let text = std::fs::read_to_string(flow_file(file)).unwrap();
    let at = text.find("  - name: ").expect("a deployments list");
    text[at..].replacen(&format!("name: {from}"), &format!("name: {name}"), 1)
}

/// The endpoint file: `traffic` as given, deployments named in it.
fn endpoint(traffic: &[(&str, u64)]) -> String {
    let mut out = format!("name: {EP}\ntype: online\nauth_mode: key\ntraffic:\n");
    for (name, w) in traffic {
        out.push_str(&format!("  {name}: {w}\n"));
    }
    out.push_str("\ndeployments:\n");
    for (name, _) in traffic {
        out.push_str(&if *name == "green" {
            deployment(5, "green", name)
        } else {
            deployment(1, "blue", name)
        });
        out.push('\n');
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_record_longer_than_one_tag_value_is_split_over_numbered_tags_and_resumes() {
    let env = Env::start_with(SandboxConfig {
        provisioning_delay: Duration::ZERO,
        ..Default::default()
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let d = dir.to_str().unwrap();
    env.write_environment(&dir, POLICY);
    let file = dir.join(format!("{EP}.yml"));
    let baseline: [(&str, u64); 3] = [(BASELINE[0], 40), (BASELINE[1], 30), (BASELINE[2], 30)];
    std::fs::write(&file, endpoint(&baseline)).unwrap();
    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.code, 0, "the baseline lands in one step: {out}");
    std::fs::write(&file, endpoint(&[("green", 100)])).unwrap();
    env.clear_history().await;

    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.code, 4, "paused after stage 1: {out}");
    let mut tags = env.endpoint_tags(EP).await;
    for (name, value) in &tags {
        assert!(value.len() <= 256, "tag {name} is {} bytes", value.len());
    }
    let pieces: Vec<&String> = tags.keys().filter(|k| k.starts_with(RECORD_TAG)).collect();
    assert!(
        pieces.len() >= 3 && tags.contains_key("flightdeck.rollout.1"),
        "the record is split: {tags:?}"
    );
    let record = take_rollout_record(&mut tags)
        .expect("the pieces join into a record")
        .expect("a record");
    assert!(tags.is_empty(), "only rollout tags: {tags:?}");
    assert_eq!(record.state, RolloutState::Paused, "{record:?}");
    assert_eq!(record.candidate, "green");
    assert_eq!(record.baseline.len(), 3, "{record:?}");
    assert_eq!(record.scale.len(), 3, "{record:?}");
    assert!(
        record.to_compact().len() > 256,
        "{}",
        record.to_compact().len()
    );

    let status = run(&env, &["rollout", "status", d]).await;
    assert_eq!(status.code, 4, "paused: {status}");
    let out = run(&env, &["rollout", "resume", d, EP]).await;
    assert_eq!(out.code, 0, "{out}");
    let mut tags = env.endpoint_tags(EP).await;
    let record = take_rollout_record(&mut tags).unwrap().unwrap();
    assert!(
        record.approved,
        "the approval is in the split record: {record:?}"
    );

    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.code, 0, "the rollout goes on from its record: {out}");
    assert_eq!(env.traffic(EP).await, [("green".to_string(), 100)].into());
    let deployments = env.deployments(EP).await;
    assert_eq!(
        deployments.keys().collect::<Vec<_>>(),
        vec!["green"],
        "{out}"
    );
    // The baselines are scaled down while they still take their smaller share: a scale of a
    // deployment that already served keeps it serving, so the history never routes to an
    // unready one.
    let history = env.history().await;
    check_routing(&history).unwrap_or_else(|e| panic!("{e}\n{out}"));
    // The baseline keeps the rest in its proportions 40/30/30 (exact at 10 and 50).
    let stage = |w: u64, a: u64, b: u64| Stage {
        traffic: traffic_of(&[
            (BASELINE[0], a),
            (BASELINE[1], b),
            (BASELINE[2], b),
            ("green", w),
        ]),
        bake: Duration::from_secs(1),
    };
    let last = Stage {
        traffic: traffic_of(&[("green", 100)]),
        bake: Duration::ZERO,
    };
    let walk = check_stages(
        &history,
        EP,
        &traffic_of(&baseline),
        &[stage(10, 36, 27), stage(50, 20, 15), last],
    )
    .unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(walk.reached, 3, "{out}");
    // The final record is whole, in exactly as many pieces as it needs: no stale piece of a
    // longer one is left behind.
    let mut tags = env.endpoint_tags(EP).await;
    let pieces = tags
        .keys()
        .filter(|k| *k != REASON_TAG && k.starts_with(RECORD_TAG))
        .count();
    let record = take_rollout_record(&mut tags).unwrap().unwrap();
    assert_eq!(record.state, RolloutState::Succeeded, "{record:?}");
    assert_eq!(
        pieces,
        record.to_compact().len().div_ceil(256),
        "{record:?}"
    );
}
