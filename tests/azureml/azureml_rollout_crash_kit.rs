//! What the two crash tests of staged rollouts share (azureml_rollout_crash.rs kills
//! `flightdeck apply`, azureml_rollout_agent_crash.rs the agent): the sandbox, the 3-stage
//! policy, the seeded kill points, the start of the rollout under load (with a bad candidate or
//! not), the checks of the end state and the sandbox's change history
//! (`flightdeck_testkit::rollout_history`), and the driver that adds seeded runs until enough
//! kills landed.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use flightdeck::sandbox::{MetricsConfig, SandboxConfig};
use flightdeck_testkit::azureml_sandbox::*;
use flightdeck_testkit::rollout_history::{
    Walk, canary_stages, check_routing, check_stages, traffic_of,
};
use futures::StreamExt;
use serde_json::json;

use super::azureml_rollouts::{Load, run};

pub(super) const EP: &str = "my-endpoint";
pub(super) const BAKE: Duration = Duration::from_secs(1);

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

/// Where to kill one process.
#[derive(Clone, Copy, Debug)]
pub(super) enum KillPoint {
    /// Once the sandbox has answered this many more ARM requests since its start.
    Requests(usize),
    /// This long after its start.
    After(Duration),
}

impl KillPoint {
    /// A seeded point over a rollout's duration: half by ARM request count (1–`requests`),
    /// half by time (50 ms–`millis`).
    pub(super) fn seeded(rng: &mut Seeded, requests: u64, millis: u64) -> KillPoint {
        if rng.next().is_multiple_of(2) {
            KillPoint::Requests(rng.between(1, requests) as usize)
        } else {
            KillPoint::After(Duration::from_millis(rng.between(50, millis)))
        }
    }

    /// Returns once the point is reached; `start` is the ARM log length when the process started.
    pub(super) async fn reached(self, env: &Env, start: usize) {
        match self {
            KillPoint::After(d) => tokio::time::sleep(d).await,
            KillPoint::Requests(n) => {
                while env.log().await.len() < start + n {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
}

/// The sandbox of one crash run: deployments ready at once, metrics published per second
/// without lag (so 1 s bakes have data).
pub(super) async fn sandbox() -> Env {
    Env::start_with(SandboxConfig {
        provisioning_delay: Duration::ZERO,
        metrics: MetricsConfig {
            grain: Duration::from_secs(1),
            lag: Duration::ZERO,
            ..MetricsConfig::default()
        },
        ..Default::default()
    })
    .await
}

/// Blue is live and green declared: makes a bad green fail (every answer a 500, so the stage 1
/// gate fails and traffic rolls back, however few requests a loaded machine gets through to it
/// in a bake: at 50 %, a window holding one lucky request passed), starts the history afresh and
/// the scoring load.
pub(super) async fn begin(env: &Env, bad: bool) -> Load {
    if bad {
        env.fault(json!({"endpoint": EP, "deployment": "green", "error_rate": 1.0}))
            .await;
    }
    env.clear_history().await;
    Load::start(env, 40).await
}

/// The endpoint's live weights above 0.
pub(super) async fn live(env: &Env) -> BTreeMap<String, i64> {
    env.traffic(EP)
        .await
        .into_iter()
        .filter(|(_, w)| *w > 0)
        .collect()
}

/// The end state and the history of a run whose rollout is over: a good candidate at green 100
/// through all 3 stages with blue deleted and `plan` in sync (exit 0); a bad one rolled back to
/// blue 100 and held (`plan` exit 3). At no moment did traffic or mirror point at a missing or
/// unready deployment, no stage was skipped and each held for its bake.
pub(super) async fn check_end(env: &Env, bad: bool, dir: &str, context: &str) -> Walk {
    let history = env.history().await;
    if let Err(e) = check_routing(&history) {
        panic!("{e}\n{context}");
    }
    let stages = canary_stages("blue", "green", &[(10, BAKE), (50, BAKE)]);
    let walk = check_stages(&history, EP, &traffic_of(&[("blue", 100)]), &stages)
        .unwrap_or_else(|e| panic!("{e}\n{context}"));
    let expected = if bad { "blue" } else { "green" };
    assert_eq!(
        live(env).await,
        [(expected.to_string(), 100)].into(),
        "{context}"
    );
    assert_eq!(walk.rolled_back, bad, "{walk:?} {context}");
    if !bad {
        assert_eq!(walk.reached, 3, "{walk:?} {context}");
        assert!(!env.deployments(EP).await.contains_key("blue"), "{context}");
    }
    let out = run(env, &["plan", dir]).await;
    assert_eq!(out.code, if bad { 3 } else { 0 }, "{out}\n{context}");
    walk
}

/// What one run did.
#[derive(Debug)]
pub(super) struct Outcome {
    pub(super) seed: u64,
    pub(super) bad: bool,
    /// Kill points that landed (the process was killed while the rollout was not over).
    pub(super) kills: Vec<KillPoint>,
    pub(super) walk: Walk,
}

/// Runs `crash_run(seed, bad)` for seeds `base`, `base + 1`, …, `batch` at a time, one in four
/// with a bad candidate, until at least `want` kills landed and one landed in a bad run (a kill
/// point that comes after the rollout finished does not land), at most `max_runs` runs. Prints
/// each run's seed and kills; fails when too few landed.
pub(super) async fn until_landed<F, Fut>(
    base: u64,
    want: usize,
    batch: u64,
    max_runs: u64,
    crash_run: F,
) -> Vec<Outcome>
where
    F: Fn(u64, bool) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let landed = |o: &[Outcome]| o.iter().map(|o| o.kills.len()).sum::<usize>();
    let bad_killed = |o: &[Outcome]| o.iter().any(|o| o.bad && !o.kills.is_empty());
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut next = 0u64;
    while next < max_runs && (landed(&outcomes) < want || !bad_killed(&outcomes)) {
        let runs: Vec<(u64, bool)> = (next..next + batch)
            .map(|i| (base + i, i % 4 == 3))
            .collect();
        next += batch;
        let done: Vec<Outcome> = futures::stream::iter(runs)
            .map(|(seed, bad)| {
                let run = crash_run(seed, bad);
                async move {
                    let began = std::time::Instant::now();
                    let o = run.await;
                    eprintln!("seed {seed:#x}: {:?}", began.elapsed());
                    o
                }
            })
            .buffer_unordered(batch as usize)
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
        kills >= want,
        "at least {want} kills landed during rollouts, got {kills}: {outcomes:#?}"
    );
    assert!(
        bad_killed(&outcomes),
        "a bad-candidate run was killed: {outcomes:#?}"
    );
    outcomes
}
