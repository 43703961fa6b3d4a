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

use flightdeck::sandbox::{MetricsConfig, SandboxConfig};
use flightdeck_testkit::azureml_sandbox::*;
use flightdeck_testkit::rollout_history::{
    Walk, canary_stages, check_routing, check_stages, traffic_of,
};
use futures::StreamExt;
use serde_json::json;

use super::azureml_rollouts::{Load, blue_live_then_declare_green, run};

const EP: &str = "my-endpoint";
const BAKE: Duration = Duration::from_secs(1);

/// Three stages: green 10 and 50 for a 1 s bake each, gated on the error rate, then green 100.
pub(super) const POLICY: &str = "    steps:
      - weight: 10
        bake: 1s
        gates: [\"error_rate < 2%\"]
      - weight: 50
        bake: 1s
        gates: [\"error_rate < 2%\"]
    max_bake: 6s
";

/// SplitMix64: a seeded, reproducible stream of kill points.
pub(super) struct Seeded(pub(super) u64);

impl Seeded {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub(super) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// Where to kill one attempt.
#[derive(Clone, Copy, Debug)]
enum KillPoint {
    /// Once the sandbox has answered this many more ARM requests.
    Requests(usize),
    /// This long after the start.
    After(Duration),
}

/// What one run did.
#[derive(Debug)]
struct Outcome {
    seed: u64,
    bad: bool,
    /// Kill points that landed (the process was still running and was killed).
    kills: Vec<KillPoint>,
    walk: Walk,
}

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
    let trigger = async {
        match point {
            KillPoint::After(d) => tokio::time::sleep(d).await,
            KillPoint::Requests(n) => loop {
                if env.log().await.len() >= start + n {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            },
        }
    };
    tokio::select! {
        status = child.wait() => Some(status.unwrap().code().expect("exited")),
        _ = trigger => {
            // SIGKILL: no destructor, no signal handler runs.
            child.start_kill().unwrap();
            // Some(code): it finished between the trigger and the signal.
            child.wait().await.unwrap().code()
        }
    }
}

async fn crash_run(seed: u64, bad: bool) -> Outcome {
    let env = Env::start_with(SandboxConfig {
        provisioning_delay: Duration::ZERO,
        metrics: MetricsConfig {
            grain: Duration::from_secs(1),
            lag: Duration::ZERO,
            ..MetricsConfig::default()
        },
        ..Default::default()
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let d = dir.to_str().unwrap();
    blue_live_then_declare_green(&env, &dir, POLICY).await;
    if bad {
        // Every second answer of green is a 500: the stage 1 gate fails, traffic rolls back.
        env.fault(json!({"endpoint": EP, "deployment": "green", "error_rate": 0.5}))
            .await;
    }
    env.clear_history().await;
    let _load = Load::start(&env, 40).await;

    let mut rng = Seeded(seed);
    let mut kills = Vec::new();
    let mut attempts = 0;
    let code = loop {
        attempts += 1;
        assert!(
            attempts <= 12,
            "seed {seed}: no convergence after 12 attempts"
        );
        // Up to three kills a run, then one attempt left to finish.
        let point = if kills.len() >= 3 {
            KillPoint::After(Duration::from_secs(60))
        } else if rng.next().is_multiple_of(2) {
            KillPoint::Requests(rng.between(1, 30) as usize)
        } else {
            KillPoint::After(Duration::from_millis(rng.between(50, 2500)))
        };
        let logs = tmp.path().join(format!("apply-{attempts}.stderr"));
        match attempt(&env, d, point, &logs).await {
            Some(code) => {
                if code != 0 && code != 3 {
                    let stderr = std::fs::read_to_string(&logs).unwrap_or_default();
                    panic!("seed {seed}: apply exited {code} after kills {kills:?}:\n{stderr}");
                }
                break (code, logs);
            }
            None => kills.push(point),
        }
    };
    let (code, logs) = code;
    let stderr = std::fs::read_to_string(&logs).unwrap_or_default();
    let context = format!("seed {seed} (bad: {bad}), kills {kills:?}, last apply:\n{stderr}");

    let history = env.history().await;
    if let Err(e) = check_routing(&history) {
        panic!("{e}\n{context}");
    }
    let baseline = traffic_of(&[("blue", 100)]);
    let stages = canary_stages("blue", "green", &[(10, BAKE), (50, BAKE)]);
    let walk =
        check_stages(&history, EP, &baseline, &stages).unwrap_or_else(|e| panic!("{e}\n{context}"));
    let live: std::collections::BTreeMap<String, i64> = env
        .traffic(EP)
        .await
        .into_iter()
        .filter(|(_, w)| *w > 0)
        .collect();
    if bad {
        assert_eq!(code, 3, "held after the rollback: {context}");
        assert!(walk.rolled_back, "{walk:?} {context}");
        assert_eq!(live, traffic(&[("blue", 100)]), "{context}");
        let out = run(&env, &["plan", d]).await;
        assert_eq!(out.code, 3, "held: {out}");
    } else {
        assert_eq!(code, 0, "{context}");
        assert_eq!(walk.reached, 3, "{walk:?} {context}");
        assert!(!walk.rolled_back, "{context}");
        assert_eq!(live, traffic(&[("green", 100)]), "{context}");
        assert!(!env.deployments(EP).await.contains_key("blue"), "{context}");
        let out = run(&env, &["plan", d]).await;
        assert_eq!(out.code, 0, "converged: {out}");
    }
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
    let landed = |o: &[Outcome]| o.iter().map(|o| o.kills.len()).sum::<usize>();
    let bad_killed = |o: &[Outcome]| o.iter().any(|o| o.bad && !o.kills.is_empty());
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut next = 0u64;
    while next < 36 && (landed(&outcomes) < 30 || !bad_killed(&outcomes)) {
        let batch: Vec<(u64, bool)> = (next..next + 6)
            .map(|i| (0x5eed_0000 + i, i % 4 == 3))
            .collect();
        next += 6;
        let done: Vec<Outcome> = futures::stream::iter(batch)
            .map(|(seed, bad)| crash_run(seed, bad))
            .buffer_unordered(6)
            .collect()
            .await;
        outcomes.extend(done);
    }
    for o in &outcomes {
        eprintln!(
            "seed {:#x} bad={} kills={:?} reached stage {} rolled back {}",
            o.seed, o.bad, o.kills, o.walk.reached, o.walk.rolled_back
        );
    }
    let kills = landed(&outcomes);
    assert!(
        kills >= 30,
        "at least 30 kills landed while apply ran, got {kills}: {outcomes:#?}"
    );
    assert!(
        bad_killed(&outcomes),
        "a bad-candidate run was killed: {outcomes:#?}"
    );
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
    let live: std::collections::BTreeMap<String, i64> = env
        .traffic(EP)
        .await
        .into_iter()
        .filter(|(_, w)| *w > 0)
        .collect();
    assert_eq!(live, traffic(&[("green", 100)]), "{out}");
    let history = env.history().await;
    check_routing(&history).unwrap();
    let stages = canary_stages("blue", "green", &[(10, BAKE), (50, BAKE)]);
    let walk = check_stages(&history, EP, &traffic_of(&[("blue", 100)]), &stages).unwrap();
    assert_eq!(walk.reached, 3, "{out}");
}
