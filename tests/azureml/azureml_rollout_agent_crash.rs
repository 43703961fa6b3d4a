//! Crash safety of staged rollouts driven by the agent (issue #12 "Proof", docs/rollouts.md
//! "Crash safety"): the real `flightdeck agent` binary follows a local Git repository
//! (`GitRepo`) on a sandbox, runs a 3-stage rollout, and is killed with SIGKILL at seeded points
//! (once the sandbox has answered a seeded number of ARM requests since its start, in
//! `/_sandbox/log`), restarted, and killed again. A last agent runs until the endpoint's rollout
//! record says it is done. The sandbox's change history must show no moment routed to a missing or
//! unready deployment, no stage skipped and every bake honoured
//! (`flightdeck_testkit::rollout_history`); a good candidate ends at green 100 with blue deleted,
//! a bad one rolled back to blue 100 and held.

use std::process::Stdio;
use std::time::Duration;

use flightdeck::backend::azureml::RECORD_TAG;
use flightdeck::sandbox::{MetricsConfig, SandboxConfig};
use flightdeck_core::rollout::{RolloutRecord, RolloutState};
use flightdeck_testkit::azureml_sandbox::*;
use flightdeck_testkit::git::GitRepo;
use flightdeck_testkit::rollout_history::{canary_stages, check_routing, check_stages, traffic_of};
use futures::StreamExt;
use serde_json::json;

use super::azureml_rollout_crash::{POLICY, Seeded};
use super::azureml_rollouts::{Load, rollout_yaml, run};

const EP: &str = "my-endpoint";
const PATH: &str = "environments/prod";
const BAKE: Duration = Duration::from_secs(1);

/// The endpoint's rollout record, if any.
async fn record(env: &Env) -> Option<RolloutRecord> {
    let text = env.endpoint_tags(EP).await.remove(RECORD_TAG)?;
    Some(RolloutRecord::from_compact(&text, None).expect("the record tag parses"))
}

/// The real agent binary following `repo`, polling every 300 ms; killed when dropped.
fn agent(
    env: &Env,
    repo: &GitRepo,
    cache: &std::path::Path,
    stderr: &std::path::Path,
) -> tokio::process::Child {
    let stderr = std::fs::File::create(stderr).unwrap();
    env.command(&[
        "agent",
        "--repo",
        repo.dir.path().to_str().unwrap(),
        "--path",
        PATH,
        "--listen",
        "127.0.0.1:0",
        "--interval",
        "300ms",
        "--cache-dir",
        cache.to_str().unwrap(),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::from(stderr))
    .spawn()
    .expect("flightdeck agent runs")
}

/// What one run did: the kill points (ARM requests after each start) that landed.
#[derive(Debug)]
struct Outcome {
    seed: u64,
    bad: bool,
    kills: Vec<usize>,
    reached: usize,
    rolled_back: bool,
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
    let cache = tmp.path().join("cache");
    let repo = GitRepo::new();
    repo.write(
        &format!("{PATH}/environment.yaml"),
        &env.environment_yaml(&rollout_yaml(POLICY)),
    );
    repo.write(
        &format!("{PATH}/{EP}.yml"),
        &std::fs::read_to_string(flow_file(0)).unwrap(),
    );
    repo.commit("blue");
    // Blue lands first (no baseline to protect: one step), applied from the repo's work tree.
    let d = repo.dir.path().join(PATH);
    let out = run(&env, &["apply", d.to_str().unwrap()]).await;
    assert_eq!(out.code, 0, "blue lands: {out}");
    if bad {
        // Every second answer of green is a 500: the stage 1 gate fails, traffic rolls back.
        env.fault(json!({"endpoint": EP, "deployment": "green", "error_rate": 0.5}))
            .await;
    }
    repo.write(
        &format!("{PATH}/{EP}.yml"),
        &std::fs::read_to_string(flow_file(5)).unwrap(),
    );
    repo.commit("green 100, in stages");
    env.clear_history().await;
    let _load = Load::start(&env, 40).await;

    let mut rng = Seeded(seed);
    let mut kills = Vec::new();
    // Three agents killed at seeded points, each after 1–40 more ARM requests.
    for attempt in 0..3 {
        let n = rng.between(1, 40) as usize;
        let start = env.log().await.len();
        let logs = tmp.path().join(format!("agent-{attempt}.stderr"));
        let mut child = agent(&env, &repo, &cache, &logs);
        let reached = async {
            while env.log().await.len() < start + n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::select! {
            status = child.wait() => {
                let stderr = std::fs::read_to_string(&logs).unwrap_or_default();
                panic!("seed {seed:#x}: the agent exited on its own ({status:?}):\n{stderr}");
            }
            // A run that finished before the kill point just waits out its poll interval; the
            // bound keeps the test short, and the kill still lands on a running agent.
            _ = tokio::time::timeout(Duration::from_secs(8), reached) => {}
        }
        // SIGKILL: no destructor, no signal handler runs.
        child.start_kill().unwrap();
        assert_eq!(child.wait().await.unwrap().code(), None, "killed");
        kills.push(n);
    }

    // The last agent runs until the rollout is over.
    let logs = tmp.path().join("agent-last.stderr");
    let mut last = agent(&env, &repo, &cache, &logs);
    let want = if bad {
        RolloutState::Failed
    } else {
        RolloutState::Succeeded
    };
    // Polled (not slept on); 30 s is only the failure bound, with the agent's stderr shown.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let done = loop {
        let over = record(&env).await.is_some_and(|r| r.state == want)
            && (bad || !env.deployments(EP).await.contains_key("blue"));
        if over || std::time::Instant::now() > deadline {
            break over;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    last.start_kill().unwrap();
    last.wait().await.unwrap();
    let stderr = std::fs::read_to_string(&logs).unwrap_or_default();
    let context = format!("seed {seed:#x} (bad: {bad}), kills {kills:?}, last agent:\n{stderr}");
    assert!(done, "no convergence within 30 s: {context}");

    let history = env.history().await;
    if let Err(e) = check_routing(&history) {
        panic!("{e}\n{context}");
    }
    let stages = canary_stages("blue", "green", &[(10, BAKE), (50, BAKE)]);
    let walk = check_stages(&history, EP, &traffic_of(&[("blue", 100)]), &stages)
        .unwrap_or_else(|e| panic!("{e}\n{context}"));
    let live: std::collections::BTreeMap<String, i64> = env
        .traffic(EP)
        .await
        .into_iter()
        .filter(|(_, w)| *w > 0)
        .collect();
    let expected = if bad { "blue" } else { "green" };
    assert_eq!(live, [(expected.to_string(), 100)].into(), "{context}");
    assert_eq!(walk.rolled_back, bad, "{walk:?} {context}");
    if !bad {
        assert_eq!(walk.reached, 3, "{walk:?} {context}");
    }
    let out = run(&env, &["plan", d.to_str().unwrap()]).await;
    assert_eq!(out.code, if bad { 3 } else { 0 }, "{out}\n{context}");
    Outcome {
        seed,
        bad,
        kills,
        reached: walk.reached,
        rolled_back: walk.rolled_back,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_killed_at_seeded_points_of_staged_rollouts_always_converges_safely() {
    // 6 runs (2 with a bad candidate, so kills land during rollbacks too), 3 kills each.
    let runs: Vec<(u64, bool)> = (0..6u64).map(|i| (0xa9e7_0000 + i, i % 3 == 2)).collect();
    let outcomes: Vec<Outcome> = futures::stream::iter(runs)
        .map(|(seed, bad)| crash_run(seed, bad))
        .buffer_unordered(3)
        .collect()
        .await;
    for o in &outcomes {
        eprintln!(
            "seed {:#x} bad={} kills={:?} reached stage {} rolled back {}",
            o.seed, o.bad, o.kills, o.reached, o.rolled_back
        );
    }
    assert_eq!(outcomes.iter().map(|o| o.kills.len()).sum::<usize>(), 18);
}
