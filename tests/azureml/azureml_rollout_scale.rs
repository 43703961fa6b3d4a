//! `scale_with_traffic` on Azure ML, through the real binary against the sandbox: each stage
//! sets the candidate's and the baseline's `instance_count` (`sku.capacity`) from their weights,
//! scaling up before traffic moves onto a deployment and down only after it left. The flow goes
//! from blue 100 at 2 instances (flow file 2) to green 100 at 2 instances without blue (file 6).

use std::time::Duration;

use flightdeck::sandbox::SandboxConfig;
use flightdeck_testkit::azureml_sandbox::*;

const EP: &str = "my-endpoint";

/// Ungated stages (no metrics needed): the counts are the point.
const SCALED: &str = "rollout:
  default:
    steps:
      - weight: 10
        bake: 1s
      - weight: 60
        bake: 1s
    scale_with_traffic: true
";

async fn apply(env: &Env, dir: &str) -> (i32, String) {
    let out = env
        .command(&["apply", dir])
        .output()
        .await
        .expect("flightdeck runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().expect("exited"), text)
}

/// Index of the first line containing `needle`.
fn at(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line contains {needle:?}:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_scale_with_traffic_instance_counts_follow_each_stage_on_the_sandbox() {
    let env = Env::start_with(SandboxConfig {
        provisioning_delay: Duration::from_millis(20),
        ..Default::default()
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let d = dir.to_str().unwrap();
    env.write_environment(&dir, SCALED);
    std::fs::copy(flow_file(1), dir.join("my-endpoint.yml")).unwrap();
    let (code, out) = apply(&env, d).await;
    assert_eq!(code, 0, "blue lands: {out}");
    assert_eq!(env.deployments(EP).await["blue"].0, 2, "{out}");
    std::fs::copy(flow_file(5), dir.join("my-endpoint.yml")).unwrap();

    let (code, out) = apply(&env, d).await;
    assert_eq!(code, 0, "{out}");
    // Green is created at ceil(2 × 10 / 100) = 1 and takes 10 %; for 60 % it gets 2 before
    // the shift, and blue drops to 1 only after its share fell to 40.
    let created = at(
        &out,
        "my-endpoint/green create_deployment: create green at 0% traffic ...",
    );
    let first = at(&out, "): traffic blue 90 / green 10");
    let up = at(
        &out,
        "my-endpoint/green scale_deployment: scale green 1 → 2 ...",
    );
    let shift = at(&out, "): traffic blue 40 / green 60");
    let down = at(
        &out,
        "my-endpoint/blue scale_deployment: scale blue 2 → 1 ...",
    );
    let last = at(&out, "): traffic green 100");
    assert!(
        created < first && first < up && up < shift && shift < down && down < last,
        "{out}"
    );
    assert_eq!(out.matches("scale_deployment: scale").count(), 2, "{out}");
    assert_eq!(env.traffic(EP).await, [("green".to_string(), 100)].into());
    let deployments = env.deployments(EP).await;
    assert_eq!(deployments["green"].0, 2, "{deployments:?}");
    assert!(!deployments.contains_key("blue"), "{deployments:?}");
}
