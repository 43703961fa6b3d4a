//! The `smoke` gate inside the mirror stage, end to end (issue #12; docs/rollouts.md, "The mirror
//! stage" and the `smoke` gate): the real binary against the sandbox, with live load. The
//! candidate is only mirrored (blue keeps 100 % of live traffic) while its smoke requests are
//! sent straight to it after the mirror bake. A healthy candidate passes there and the rollout
//! runs to the declared traffic; one that starts answering 500 once the mirror holds (a sandbox
//! fault switched on then: its pre-traffic test passed) fails its smoke gate in the mirror stage
//! and is rolled back: the mirror is removed and, in the sandbox's change history, live traffic
//! never gave it any weight.

use std::time::Duration;

use flightdeck_testkit::rollout_history::{canary_stages, check_routing, check_stages, traffic_of};
use serde_json::{Value, json};

use super::azureml_mirror::stats;
use super::azureml_rollouts::{EP, Load, line_of, progress, run, start, traffic};
use super::azureml_smoke_gate::blue_live_then_declare_green;

/// A mirror stage gated by `smoke` (and the mirrored copies' error rate), then one live stage.
const MIRROR_SMOKE: &str = "    mirror:
      percent: 50
      bake: 2s
      gates: [smoke, \"error_rate < 2%\"]
    steps:
      - weight: 50
        bake: 1s
        gates: [smoke]
    max_bake: 8s
";

/// Every mirror map the endpoint had, in order (without zeros, repeats dropped).
fn mirrors(history: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for e in history["entries"].as_array().expect("entries") {
        if e["endpoint"] != EP || e["mirror"].is_null() {
            continue;
        }
        let m: serde_json::Map<String, Value> = e["mirror"]
            .as_object()
            .expect("a mirror map")
            .iter()
            .filter(|(_, w)| w.as_u64() != Some(0))
            .map(|(k, w)| (k.clone(), w.clone()))
            .collect();
        let m = Value::Object(m);
        if out.last() != Some(&m) {
            out.push(m);
        }
    }
    out
}

/// The endpoint's live `mirrorTraffic` has no positive weight.
async fn no_mirror(env: &flightdeck_testkit::azureml_sandbox::Env) -> bool {
    let endpoint = env
        .arm_get(&format!("/onlineEndpoints/{EP}"))
        .await
        .unwrap();
    endpoint["properties"]["mirrorTraffic"]
        .as_object()
        .is_none_or(|m| m.values().all(|v| v == 0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smoke_gate_in_the_mirror_stage_passes_for_a_healthy_candidate_and_the_rollout_completes()
{
    let env = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let d = dir.to_str().unwrap();
    blue_live_then_declare_green(&env, &dir, MIRROR_SMOKE).await;
    env.clear_history().await;
    let _load = Load::start(&env, 50).await;

    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.code, 0, "{out}");
    let lines = progress(&out.stderr);
    let mirror = line_of(&out, "stage 1/3: routing blue 100, mirroring green 50");
    let live = line_of(&out, "stage 2/3: routing blue 50 / green 50");
    // The verdicts of the stage just left follow the line of the next stage: the mirror
    // stage's smoke (and error-rate) verdicts come with stage 2's shift.
    let passed = |l: &str| {
        l.starts_with("  gate smoke: smoke passed: 2 requests, 200 from green")
            && l.ends_with("[pass]")
    };
    assert!(
        mirror < live && passed(lines[live + 1]),
        "the smoke gate passed at the end of the mirror stage:\n{out}"
    );
    assert_eq!(
        lines.iter().filter(|l| passed(l)).count(),
        2,
        "one smoke verdict for the mirror stage, one for stage 2:\n{out}"
    );
    assert_eq!(env.traffic(EP).await, traffic(&[("green", 100)]), "{out}");
    assert!(no_mirror(&env).await, "the mirror is dropped: {out}");

    let history = env.history().await;
    check_routing(&history).unwrap_or_else(|e| panic!("{e}\n{out}"));
    // The mirror stage moves no live weight: the traffic walk is blue 100, 50/50, green 100.
    let stages = canary_stages("blue", "green", &[(50, Duration::from_secs(1))]);
    let walk = check_stages(&history, EP, &traffic_of(&[("blue", 100)]), &stages)
        .unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(walk.reached, 2, "{out}");
    let seen = mirrors(&history);
    assert!(
        seen.contains(&json!({"green": 50})) && seen.last() == Some(&json!({})),
        "mirrored, then the mirror dropped: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smoke_gate_failing_in_the_mirror_stage_rolls_back_with_no_live_weight_ever_on_the_candidate()
 {
    let env = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let d = dir.to_str().unwrap();
    blue_live_then_declare_green(&env, &dir, MIRROR_SMOKE).await;
    env.clear_history().await;
    let _load = Load::start(&env, 50).await;

    // Green passes its pre-traffic test; once it is mirrored, every answer of green is a 500.
    let args = ["apply", d];
    let (out, ()) = tokio::join!(run(&env, &args), async {
        flightdeck_testkit::eventually("green mirrored", Duration::from_secs(30), || async {
            !no_mirror(&env).await
        })
        .await;
        env.fault(json!({"endpoint": EP, "deployment": "green", "error_rate": 1.0}))
            .await;
    });
    assert_eq!(out.code, 3, "held after the rollback: {out}");
    let mirror = line_of(&out, "stage 1/3: routing blue 100, mirroring green 50");
    let back = line_of(
        &out,
        "rolling back to blue 100: gate failed at stage 1: smoke failed: deployment green:",
    );
    assert!(mirror < back, "{out}");
    let lines = progress(&out.stderr);
    assert!(
        lines[back + 1].starts_with(
            "  gate smoke: smoke failed: deployment green: smoke/a.json: got status 500"
        ) && lines[back + 1].ends_with("[FAIL]"),
        "the smoke verdict is the failed one:\n{out}"
    );
    assert!(
        !out.stderr.contains("stage 2/3"),
        "no live stage was reached: {out}"
    );
    assert_eq!(env.traffic(EP).await, traffic(&[("blue", 100)]), "{out}");
    assert!(
        no_mirror(&env).await,
        "the rollback removed the mirror: {out}"
    );
    // Green got mirrored copies; what it served is only its pre-traffic test and the smoke
    // requests, sent straight to it (live traffic never routed to it: the history below).
    let green = stats(&env, "green").await;
    assert!(green["mirrored"].as_u64().unwrap() > 0, "{green}");

    let history = env.history().await;
    check_routing(&history).unwrap_or_else(|e| panic!("{e}\n{out}"));
    for e in history["entries"].as_array().unwrap() {
        let w = e["traffic"]["green"].as_u64().unwrap_or(0);
        assert_eq!(w, 0, "live traffic gave green weight: {e}\n{out}");
    }
    let seen = mirrors(&history);
    assert!(
        seen.contains(&json!({"green": 50})) && seen.last() == Some(&json!({})),
        "mirrored, then the mirror removed: {seen:?}"
    );
}
