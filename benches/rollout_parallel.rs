//! Cost of staged rollouts (issue #12 "Proof", Cost): N endpoints (50) released blue→green at
//! once by ONE `flightdeck apply` of the real binary, against an in-process sandbox whose Azure
//! Monitor metrics have a 1 s grain and no lag, with a 2-stage policy (20 %, 50 %, then the
//! declared green 100 %) gated on `error_rate < 2%` and read with `ingestion_delay: 0s`. Scoring
//! requests go to every endpoint all along, so every gate has data.
//!
//! It runs the same release for 1 endpoint, then for N, each on its own sandbox, and prints:
//! - the wall time of each apply, and N's wall time over 1's (goal: about 1);
//! - the metrics reads (`GET …/providers/Microsoft.Insights/metrics` in `/_sandbox/log`) per
//!   gated endpoint per round: a round is one read of the live state, which starts with the
//!   endpoint list (`GET …/onlineEndpoints`), so the reads between two list GETs are one round's
//!   (goal: at most 1 per endpoint per round);
//! - the metrics reads of a second `apply` and of a `plan` once the rollout is done (goal: 0).
//!
//! Run: `cargo bench --bench rollout_parallel` (about 1 minute). Knobs: `PARALLEL_ENDPOINTS`
//! (50), `PARALLEL_BAKE` (3s), `PARALLEL_RATE` (scoring requests per second per endpoint, 8).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flightdeck::sandbox::{MetricsConfig, SandboxConfig};
use flightdeck_testkit::azureml_sandbox::{Env, flow_file};
use serde_json::Value;

fn policy(bake: &str) -> String {
    format!(
        "rollout:\n  metrics:\n    provider: azure_monitor\n    ingestion_delay: 0s\n  default:\n    steps:\n      - weight: 20\n        bake: {bake}\n        gates: [\"error_rate < 2%\"]\n      - weight: 50\n        bake: {bake}\n        gates: [\"error_rate < 2%\"]\n    max_bake: 60s\n"
    )
}

fn name(i: usize) -> String {
    format!("ep-{i:02}")
}

/// Flow file `i` (0: blue 100; 5: green 100 without blue) for endpoint `endpoint`.
fn endpoint_file(i: usize, endpoint: &str) -> String {
    std::fs::read_to_string(flow_file(i))
        .unwrap()
        .replace("my-endpoint", endpoint)
}

async fn run(env: &Env, args: &[&str]) -> (i32, String) {
    let out = env
        .command(args)
        .stdout(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn is_metrics_read(e: &Value) -> bool {
    e["method"] == "GET"
        && e["path"].as_str().is_some_and(|p| {
            p.to_ascii_lowercase()
                .ends_with("/microsoft.insights/metrics")
        })
}

fn is_endpoint_list(e: &Value) -> bool {
    e["method"] == "GET"
        && e["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("/onlineEndpoints"))
}

/// The endpoint a metrics read is about (`…/onlineEndpoints/{ep}/providers/…`).
fn endpoint_of(e: &Value) -> String {
    let path = e["path"].as_str().unwrap_or_default();
    path.split("/onlineEndpoints/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_string()
}

/// What one release across `n` endpoints measured.
struct Release {
    n: usize,
    wall: Duration,
    rounds: usize,
    reads: usize,
    /// The most metrics reads one endpoint had in one round.
    max_per_endpoint_round: usize,
    steady_apply_reads: usize,
    steady_plan_reads: usize,
}

async fn release(n: usize, bake: &str, rate: u32) -> Release {
    let env = Env::start_with(SandboxConfig {
        provisioning_delay: Duration::from_millis(20),
        page_size: 100,
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
    let d = dir.to_str().unwrap().to_string();
    env.write_environment(&dir, &policy(bake));
    for i in 0..n {
        std::fs::write(
            dir.join(format!("{}.yml", name(i))),
            endpoint_file(0, &name(i)),
        )
        .unwrap();
    }
    let (code, stderr) = run(&env, &["apply", &d]).await;
    assert_eq!(code, 0, "blue lands on {n} endpoints:\n{stderr}");

    // Scoring requests to every endpoint, `rate` per second each, spread evenly.
    let mut targets = Vec::new();
    for i in 0..n {
        targets.push(env.scoring(&name(i)).await);
    }
    let http = reqwest::Client::new();
    let load = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1) / (rate * n as u32));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for (url, key) in targets.iter().cycle() {
            tick.tick().await;
            let req = http
                .post(url)
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(r#"{"data": [[1, 2, 3]]}"#);
            tokio::spawn(async move { drop(req.send().await) });
        }
    });
    // Let one full metrics bucket of baseline traffic close first.
    tokio::time::sleep(Duration::from_secs(2)).await;

    for i in 0..n {
        std::fs::write(
            dir.join(format!("{}.yml", name(i))),
            endpoint_file(5, &name(i)),
        )
        .unwrap();
    }
    env.clear_log().await;
    let started = Instant::now();
    let (code, stderr) = run(&env, &["apply", &d]).await;
    let wall = started.elapsed();
    assert_eq!(
        code, 0,
        "the release reaches green 100 on {n} endpoints:\n{stderr}"
    );
    let log = env.log().await;

    let mut rounds = 0;
    let mut reads = 0;
    let mut max_per_endpoint_round = 0;
    let mut this_round: BTreeMap<String, usize> = BTreeMap::new();
    for e in &log {
        if is_endpoint_list(e) {
            rounds += 1;
            this_round.clear();
        } else if is_metrics_read(e) {
            reads += 1;
            let count = this_round.entry(endpoint_of(e)).or_default();
            *count += 1;
            max_per_endpoint_round = max_per_endpoint_round.max(*count);
        }
    }

    env.clear_log().await;
    let (code, stderr) = run(&env, &["apply", &d]).await;
    assert_eq!(code, 0, "steady apply:\n{stderr}");
    let steady_apply_reads = env
        .log()
        .await
        .iter()
        .filter(|e| is_metrics_read(e))
        .count();
    env.clear_log().await;
    let (code, stderr) = run(&env, &["plan", &d]).await;
    assert_eq!(code, 0, "steady plan:\n{stderr}");
    let steady_plan_reads = env
        .log()
        .await
        .iter()
        .filter(|e| is_metrics_read(e))
        .count();
    load.abort();
    for i in 0..n {
        let live: BTreeMap<String, i64> = env
            .traffic(&name(i))
            .await
            .into_iter()
            .filter(|(_, w)| *w > 0)
            .collect();
        assert_eq!(live, [("green".to_string(), 100)].into(), "{}", name(i));
    }
    env.sandbox.shutdown().await;
    Release {
        n,
        wall,
        rounds,
        reads,
        max_per_endpoint_round,
        steady_apply_reads,
        steady_plan_reads,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("PARALLEL_ENDPOINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let bake = std::env::var("PARALLEL_BAKE").unwrap_or_else(|_| "3s".into());
    humantime::parse_duration(&bake).expect("PARALLEL_BAKE is a duration");
    let rate: u32 = std::env::var("PARALLEL_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    println!(
        "2 stages (20 %, 50 %) baking {bake} each, gated on error_rate, {rate} req/s per endpoint"
    );
    println!(
        "{:>9} {:>8} {:>7} {:>14} {:>22} {:>20}",
        "endpoints", "wall", "rounds", "metrics reads", "max reads/ep/round", "steady apply/plan"
    );
    let mut walls = Vec::new();
    for count in [1, n] {
        let r = release(count, &bake, rate).await;
        println!(
            "{:>9} {:>7.1}s {:>7} {:>14} {:>22} {:>20}",
            r.n,
            r.wall.as_secs_f64(),
            r.rounds,
            r.reads,
            r.max_per_endpoint_round,
            format!("{}/{}", r.steady_apply_reads, r.steady_plan_reads)
        );
        walls.push(r.wall);
        assert!(
            r.max_per_endpoint_round <= 1,
            "more than one metrics read per endpoint in a round"
        );
        assert_eq!(
            r.steady_apply_reads + r.steady_plan_reads,
            0,
            "metrics read in steady state"
        );
    }
    println!(
        "{n} endpoints / 1 endpoint: {:.2}x",
        walls[1].as_secs_f64() / walls[0].as_secs_f64()
    );
}
