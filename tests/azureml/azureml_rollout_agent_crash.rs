//! Crash safety of staged rollouts driven by the agent (issue #12 "Proof", docs/rollouts.md
//! "Crash safety"): the real `flightdeck agent` binary follows a local Git repository
//! (`GitRepo`) on a sandbox, runs a 3-stage rollout, and is killed with SIGKILL at seeded points
//! over the rollout's duration (by ARM request count in `/_sandbox/log`, or by time since its
//! start), restarted, and killed again; seeded runs are added until 30 kills landed while a
//! rollout was not over. A last agent runs until the endpoint's rollout record says it is done.
//! The sandbox's change history must show no moment routed to a missing or unready deployment,
//! no stage skipped and every bake honoured (`flightdeck_testkit::rollout_history`); a good
//! candidate ends at green 100 with blue deleted, a bad one rolled back to blue 100 and held.
//! The setup and the checks are shared with the apply crash test (azureml_rollout_crash_kit.rs).

use std::process::Stdio;
use std::time::Duration;

use flightdeck::backend::azureml::take_rollout_record;
use flightdeck_core::rollout::{RolloutRecord, RolloutState};
use flightdeck_testkit::azureml_sandbox::*;
use flightdeck_testkit::git::GitRepo;

use super::azureml_rollout_crash_kit::{
    EP, KillPoint, Outcome, POLICY, Seeded, begin, check_end, live, sandbox, until_landed,
};
use super::azureml_rollouts::{rollout_yaml, run};

const PATH: &str = "environments/prod";

/// The endpoint's rollout record, if any (joined from its tags).
async fn record(env: &Env) -> Option<RolloutRecord> {
    let mut tags = env.endpoint_tags(EP).await;
    take_rollout_record(&mut tags).expect("the record tags parse")
}

/// The rollout is over: a bad candidate's record says failed and traffic is back at blue 100
/// (the record is written before traffic returns); a good one's says succeeded and blue is
/// deleted.
async fn over(env: &Env, bad: bool) -> bool {
    let want = if bad {
        RolloutState::Failed
    } else {
        RolloutState::Succeeded
    };
    record(env).await.is_some_and(|r| r.state == want)
        && if bad {
            live(env).await == [("blue".to_string(), 100)].into()
        } else {
            !env.deployments(EP).await.contains_key("blue")
        }
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

async fn crash_run(seed: u64, bad: bool) -> Outcome {
    let env = sandbox().await;
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
    let d = d.to_str().unwrap();
    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.code, 0, "blue lands: {out}");
    repo.write(
        &format!("{PATH}/{EP}.yml"),
        &std::fs::read_to_string(flow_file(5)).unwrap(),
    );
    repo.commit("green 100, in stages");
    let _load = begin(&env, bad).await;

    let mut rng = Seeded(seed);
    let mut kills = Vec::new();
    // Up to three agents killed at seeded points. The new commit is there before the first agent
    // starts, so from its first ARM request on an agent works on the rollout: a kill landed when
    // the rollout is still not over after it. Once it is over, no kill can land.
    for attempt in 0..3 {
        // Counted from the agent's first ARM request (its first reconcile), not from its start:
        // the process start and the Git fetch before it are not part of the rollout.
        let point = KillPoint::seeded(&mut rng, 40, 2500);
        let start = env.log().await.len();
        let logs = tmp.path().join(format!("agent-{attempt}.stderr"));
        let mut child = agent(&env, &repo, &cache, &logs);
        let trigger = async {
            while env.log().await.len() == start {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            point.reached(&env, start + 1).await;
        };
        tokio::select! {
            status = child.wait() => {
                let stderr = std::fs::read_to_string(&logs).unwrap_or_default();
                panic!("seed {seed:#x}: the agent exited on its own ({status:?}):\n{stderr}");
            }
            // An agent with no ARM request left to make waits out its poll; the bound keeps the
            // test short.
            _ = tokio::time::timeout(Duration::from_secs(5), trigger) => {}
        }
        // SIGKILL: no destructor, no signal handler runs.
        child.start_kill().unwrap();
        assert_eq!(child.wait().await.unwrap().code(), None, "killed");
        if over(&env, bad).await {
            break;
        }
        kills.push(point);
    }

    // The last agent runs until the rollout is over.
    let logs = tmp.path().join("agent-last.stderr");
    let mut last = agent(&env, &repo, &cache, &logs);
    // Polled (not slept on); 120 s is only the failure bound, with the agent's stderr shown. It
    // is generous on purpose: with the whole azureml binary running beside 12 runs on 2 shared
    // cores, one reconcile was seen to take 16 s while the rollout went on correctly.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let done = loop {
        let over = over(&env, bad).await;
        if over || std::time::Instant::now() > deadline {
            break over;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    last.start_kill().unwrap();
    last.wait().await.unwrap();
    let stderr = std::fs::read_to_string(&logs).unwrap_or_default();
    let context = format!("seed {seed:#x} (bad: {bad}), kills {kills:?}, last agent:\n{stderr}");
    assert!(done, "no convergence within 120 s: {context}");
    let walk = check_end(&env, bad, d, &context).await;
    Outcome {
        seed,
        bad,
        kills,
        walk,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_killed_at_thirty_seeded_points_of_staged_rollouts_always_converges_safely() {
    // Seeded runs, 12 at a time (a run mostly waits: agent starts, bakes, polls), one in four
    // with a bad candidate, up to 3 kills each, added until 30 kills landed (at most 36 runs).
    until_landed(0xa9e7_0000, 30, 12, 36, crash_run).await;
}
