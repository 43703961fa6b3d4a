//! The mirror stage end to end (issue #12 "a mirror stage"): the real binary against the
//! sandbox, with live load. The candidate is first only mirrored (blue keeps 100), its gates
//! judge its own metrics from the mirrored copies, then the mirror is dropped as it gets live
//! weight. A bad candidate is caught at the mirror stage having never answered a live request.

use serde_json::{Value, json};

use super::azureml_rollouts::{
    EP, Load, blue_live_then_declare_green, progress, rollout_status_json, run, start, traffic,
};
use flightdeck_testkit::azureml_sandbox::Env;

const MIRROR_THEN_CANARY: &str = "    mirror:
      percent: 50
      bake: 2s
      gates: [\"error_rate < 2%\", \"requests >= 1\"]
    steps:
      - weight: 50
        bake: 2s
        gates: [\"error_rate < 2%\"]
    max_bake: 8s
";

/// The sandbox's per-deployment counts of the endpoint (`/_sandbox/stats`).
pub(super) async fn stats(env: &Env, deployment: &str) -> Value {
    let doc: Value = reqwest::get(format!("{}/_sandbox/stats", env.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    doc["endpoints"][EP]["deployments"][deployment].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_stage_gates_on_mirrored_traffic_then_the_live_stages_run_to_the_declared_traffic()
{
    let env = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let d = dir.to_str().unwrap();
    blue_live_then_declare_green(&env, &dir, MIRROR_THEN_CANARY).await;
    let _load = Load::start(&env, 50).await;

    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.code, 0, "{out}");
    let lines = progress(&out.stderr);
    let mirror = lines
        .iter()
        .position(|l| l.contains("stage 1/3: routing blue 100, mirroring green 50"))
        .unwrap_or_else(|| panic!("a mirror stage: {out}"));
    let live = lines
        .iter()
        .position(|l| l.contains("stage 2/3: routing blue 50 / green 50"))
        .unwrap_or_else(|| panic!("a live stage: {out}"));
    assert!(mirror < live, "{out}");
    assert_eq!(env.traffic(EP).await, traffic(&[("green", 100)]), "{out}");
    let green = stats(&env, "green").await;
    assert!(green["mirrored"].as_u64().unwrap() > 0, "{green}");
    // The mirror was dropped with the first live weight: nothing is mirrored at the end.
    let endpoint = env
        .arm_get(&format!("/onlineEndpoints/{EP}"))
        .await
        .unwrap();
    let mirror = &endpoint["properties"]["mirrorTraffic"];
    assert!(
        mirror
            .as_object()
            .is_none_or(|m| m.values().all(|v| v == 0)),
        "{endpoint:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_candidate_is_caught_at_the_mirror_stage_with_no_live_request_ever_sent_to_it() {
    let env = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let d = dir.to_str().unwrap();
    blue_live_then_declare_green(&env, &dir, MIRROR_THEN_CANARY).await;
    env.fault(json!({"endpoint": EP, "deployment": "green", "error_rate": 1.0}))
        .await;
    let _load = Load::start(&env, 50).await;

    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.code, 3, "{out}");
    assert!(
        out.stderr
            .contains("gate failed at stage 1: error_rate 100% >= 2%"),
        "{out}"
    );
    assert_eq!(env.traffic(EP).await, traffic(&[("blue", 100)]), "{out}");
    let green = stats(&env, "green").await;
    assert!(green["mirrored"].as_u64().unwrap() > 0, "{green}");
    assert_eq!(green["served"], 0, "green answered a live request: {green}");
    let (code, doc) = rollout_status_json(&env, d).await;
    assert_eq!(code, 3, "{doc:#}");
    assert_eq!(doc[0]["record"]["state"], "failed", "{doc:#}");
    let endpoint = env
        .arm_get(&format!("/onlineEndpoints/{EP}"))
        .await
        .unwrap();
    let mirror = &endpoint["properties"]["mirrorTraffic"];
    assert!(
        mirror
            .as_object()
            .is_none_or(|m| m.values().all(|v| v == 0)),
        "the mirror is dropped by the rollback: {endpoint:#}"
    );
}
