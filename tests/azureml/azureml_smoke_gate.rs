//! The `smoke` stage gate end to end: the real binary against the sandbox re-runs the
//! candidate's smoke requests (its `tests:` entry, header-pinned to it) after a stage's bake.
//! A candidate that passed its pre-traffic test and starts failing once it takes traffic
//! (a sandbox fault switched on after stage 1 shifted) is caught at stage 2 and rolled back.

use std::path::Path;
use std::time::Duration;

use flightdeck_testkit::azureml_sandbox::*;
use serde_json::json;

use super::azureml_rollouts::{
    EP, Load, line_of, progress, rollout_status_json, rollout_yaml, run, start, traffic,
};

/// Every request file of `smoke/` is sent, a wrong answer tried once more.
const TESTS: &str = "tests:\n  \"*\":\n    request_dir: smoke/\n    retries: 1\n";

/// Blue 100 live (flow file 1, applied and tested), then green 100 declared without blue.
pub(super) async fn blue_live_then_declare_green(env: &Env, dir: &Path, policy: &str) {
    env.write_environment(dir, &format!("{TESTS}{}", rollout_yaml(policy)));
    std::fs::create_dir_all(dir.join("smoke")).unwrap();
    let sample = std::fs::read_to_string(reference("model-1/sample-request.json")).unwrap();
    std::fs::write(dir.join("smoke/a.json"), &sample).unwrap();
    std::fs::write(dir.join("smoke/b.json"), r#"{"data": [[1, 2, 3]]}"#).unwrap();
    std::fs::copy(flow_file(0), dir.join("my-endpoint.yml")).unwrap();
    let out = run(env, &["apply", dir.to_str().unwrap()]).await;
    assert_eq!(out.code, 0, "blue lands: {out}");
    std::fs::copy(flow_file(5), dir.join("my-endpoint.yml")).unwrap();
}

/// Stage 1 ungated (2 s, time to switch the fault on), stage 2 gated by `smoke` alone: no
/// metrics are read.
const SMOKE_AT_TWO: &str = "    steps:
      - weight: 10
        bake: 2s
      - weight: 50
        bake: 1s
        gates: [smoke]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_that_starts_failing_after_stage_1_is_caught_by_the_smoke_gate_at_stage_2() {
    let env = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let d = dir.to_str().unwrap();
    blue_live_then_declare_green(&env, &dir, SMOKE_AT_TWO).await;

    // Green passes its pre-traffic test; once stage 1 holds (blue 90 / green 10), every answer
    // of green is a 500.
    let args = ["apply", d, "--output", "json"];
    let (out, ()) = tokio::join!(run(&env, &args), async {
        flightdeck_testkit::eventually(
            "stage 1 at blue 90 / green 10",
            Duration::from_secs(30),
            || async { env.traffic(EP).await == traffic(&[("blue", 90), ("green", 10)]) },
        )
        .await;
        env.fault(json!({"endpoint": EP, "deployment": "green", "error_rate": 1.0}))
            .await;
    });
    assert_eq!(out.code, 3, "held after the rollback: {out}");
    let s2 = line_of(&out, "stage 2/3: routing blue 50 / green 50");
    let back = line_of(
        &out,
        "rolling back to blue 100: gate failed at stage 2: smoke failed:",
    );
    assert!(s2 < back, "{out}");
    let lines = progress(&out.stderr);
    let verdict = lines[back + 1];
    assert!(
        verdict.starts_with(
            "  gate smoke: smoke failed: deployment green: smoke/a.json: got status 500"
        ) && verdict.contains("(tried 2 times)")
            && verdict.ends_with("[FAIL]"),
        "the failed smoke verdict names the file, the status and the tries:\n{out}"
    );
    assert_eq!(env.traffic(EP).await, traffic(&[("blue", 100)]), "{out}");
    assert!(
        env.deployments(EP).await.contains_key("green"),
        "kept for inspection"
    );
    // The apply report (the last round's): the rollout's verdict is the failed smoke run, as
    // data. (Green's pre-traffic test passed: it took stage 1.)
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("report JSON");
    let rollout = &report["rollouts"][0];
    let verdict = &rollout["verdicts"][0];
    assert_eq!(verdict["gate"], "smoke", "{report:#}");
    assert_eq!(verdict["result"], "fail", "{report:#}");
    assert_eq!(verdict["query"], "smoke/a.json, smoke/b.json", "{report:#}");
    assert!(
        verdict["detail"]
            .as_str()
            .is_some_and(|d| d.contains("smoke/a.json: got status 500")),
        "{report:#}"
    );

    let (code, doc) = rollout_status_json(&env, d).await;
    assert_eq!(code, 3, "{doc:#}");
    let reason = doc[0]["record"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with(
            "gate failed at stage 2: smoke failed: deployment green: smoke/a.json: got status 500"
        ),
        "{doc:#}"
    );
    let out = run(&env, &["rollout", "status", d]).await;
    assert_eq!(out.code, 3, "{out}");
    assert!(
        out.stdout.contains("gate failed at stage 2: smoke failed"),
        "{out}"
    );
}

/// `smoke` and an error-rate gate at every stage.
const SMOKE_EVERYWHERE: &str = "    steps:
      - weight: 10
        bake: 1s
        gates: [smoke, \"error_rate < 2%\"]
      - weight: 50
        bake: 1s
        gates: [smoke, \"error_rate < 2%\"]
    max_bake: 8s
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_candidate_passes_a_smoke_gate_at_every_stage_and_gets_the_declared_traffic() {
    let env = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let d = dir.to_str().unwrap();
    blue_live_then_declare_green(&env, &dir, SMOKE_EVERYWHERE).await;
    let _load = Load::start(&env, 50).await;

    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(env.traffic(EP).await, traffic(&[("green", 100)]), "{out}");
    let lines = progress(&out.stderr);
    let smoke_passes: Vec<&&str> = lines
        .iter()
        .filter(|l| {
            l.starts_with("  gate smoke: smoke passed: 2 requests, 200 from green")
                && l.ends_with("[pass]")
        })
        .collect();
    assert_eq!(
        smoke_passes.len(),
        2,
        "one passing smoke verdict per stage:\n{out}"
    );
    let s2 = line_of(&out, "stage 2/3: routing blue 50 / green 50");
    let s3 = line_of(&out, "stage 3/3: routing the declared green 100");
    for stage in [s2, s3] {
        assert!(
            lines[stage + 1].starts_with("  gate smoke: smoke passed"),
            "{out}"
        );
        assert!(
            lines[stage + 2].starts_with("  gate error_rate < 2%: error_rate 0% < 2%"),
            "{out}"
        );
    }
    assert!(!out.stderr.contains("[FAIL]"), "{out}");
}
