//! Crash safety of staged rollouts (issue #12 "Proof", docs/rollouts.md "Crash safety"): the
//! real `flightdeck apply` is killed with SIGKILL at seeded random points of a 3-stage rollout
//! (by ARM request count in `/_sandbox/log`, or by time), restarted, and killed again, until it
//! exits on its own. Every run must end at the declared traffic (exit 0), or for a bad candidate
//! at the baseline, held (exit 3); and the sandbox's change history must show no moment routed to
//! a missing or unready deployment, no stage skipped, and every bake honoured
//! (`flightdeck_testkit::rollout_history`).
//!
//! Independent runs go concurrently, each on its own sandbox, so the whole test takes seconds.

use std::process::Stdio;
use std::time::Duration;

use flightdeck::sandbox::SandboxConfig;
use flightdeck_testkit::azureml_sandbox::*;
use flightdeck_testkit::rollout_history::{canary_stages, check_routing, check_stages, traffic_of};
use serde_json::json;

use super::azureml_rollout_crash_kit::{
    BAKE, EP, KillPoint, Outcome, POLICY, Seeded, begin, check_end, live, sandbox, until_landed,
};
use super::azureml_rollouts::{blue_live_then_declare_green, run};

/// Runs `flightdeck apply` once; kills it at `point` if it still runs then. `Some(code)` when it
/// exited on its own, `None` when it was killed.
async fn attempt(env: &Env, dir: &str, point: KillPoint, logs: &std::path::Path) -> Option<i32> {
    let start = env.log().await.len();
    let stderr = std::fs::File::create(logs).unwrap();
    let mut child = env
        .command(&["apply", dir])
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr))
        .spawn()
        .expect("flightdeck runs");
    tokio::select! {
        status = child.wait() => Some(status.unwrap().code().expect("exited")),
        _ = point.reached(env, start) => {
            // SIGKILL: no destructor, no signal handler runs.
            child.start_kill().unwrap();
            // Some(code): it finished between the trigger and the signal.
            child.wait().await.unwrap().code()
        }
    }
}

async fn crash_run(seed: u64, bad: bool) -> Outcome {
    let env = sandbox().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let d = dir.to_str().unwrap();
    blue_live_then_declare_green(&env, &dir, POLICY).await;
    let _load = begin(&env, bad).await;

    let mut rng = Seeded(seed);
    let mut kills = Vec::new();
    let mut attempts = 0;
    let (code, logs) = loop {
        attempts += 1;
        assert!(
            attempts <= 12,
            "seed {seed:#x}: no convergence after 12 attempts"
        );
        // Up to three kills a run, then one attempt left to finish.
        let point = if kills.len() >= 3 {
            KillPoint::After(Duration::from_secs(60))
        } else {
            KillPoint::seeded(&mut rng, 30, 2500)
        };
        let logs = tmp.path().join(format!("apply-{attempts}.stderr"));
        match attempt(&env, d, point, &logs).await {
            Some(code) => {
                if code != 0 && code != 3 {
                    let stderr = std::fs::read_to_string(&logs).unwrap_or_default();
                    panic!("seed {seed:#x}: apply exited {code} after kills {kills:?}:\n{stderr}");
                }
                break (code, logs);
            }
            None => kills.push(point),
        }
    };
    let stderr = std::fs::read_to_string(&logs).unwrap_or_default();
    let context = format!("seed {seed:#x} (bad: {bad}), kills {kills:?}, last apply:\n{stderr}");
    assert_eq!(code, if bad { 3 } else { 0 }, "{context}");
    let walk = check_end(&env, bad, d, &context).await;
    Outcome {
        seed,
        bad,
        kills,
        walk,
    }
}

fn traffic(pairs: &[(&str, i64)]) -> std::collections::BTreeMap<String, i64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_killed_at_thirty_random_points_of_staged_rollouts_always_converges_safely() {
    // Seeded runs, 6 at a time, one in four with a bad candidate (so kills land during rollbacks
    // too), up to 3 kills each. A kill point that comes after apply already finished does not
    // land, so more seeded runs are added until 30 kills landed (at most 36 runs).
    until_landed(0x5eed_0000, 30, 6, 36, crash_run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_killed_after_the_first_record_but_before_the_candidate_exists_resumes_the_rollout() {
    let env = Env::start_with(SandboxConfig {
        provisioning_delay: Duration::ZERO,
        ..Default::default()
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let d = dir.to_str().unwrap();
    // Ungated stages: no metrics needed.
    let policy = "    steps:
      - weight: 10
        bake: 1s
      - weight: 50
        bake: 1s
";
    blue_live_then_declare_green(&env, &dir, policy).await;
    env.clear_history().await;
    // The first write of the rollout is its record (a tag PATCH of the endpoint, written before
    // the plan creates green): hold it, and kill apply while it waits for it.
    env.hold(json!({"endpoint": EP, "times": 1})).await;
    let mut child = env
        .command(&["apply", d])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let held = env.wait_held(1).await;
    assert_eq!(held[0]["deployment"], serde_json::Value::Null, "{held:?}");
    child.start_kill().unwrap();
    assert_eq!(child.wait().await.unwrap().code(), None, "killed");
    env.release().await;
    assert!(!env.deployments(EP).await.contains_key("green"));

    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.code, 0, "the rollout goes on from its record: {out}");
    assert_eq!(live(&env).await, traffic(&[("green", 100)]), "{out}");
    let history = env.history().await;
    check_routing(&history).unwrap();
    let stages = canary_stages("blue", "green", &[(10, BAKE), (50, BAKE)]);
    let walk = check_stages(&history, EP, &traffic_of(&[("blue", 100)]), &stages).unwrap();
    assert_eq!(walk.reached, 3, "{out}");
}
