//! Zero-downtime bench (issue #12 "Proof"): an in-process sandbox, ≥ 200 scoring requests/s sent
//! through the endpoint's scoring URI with its real key at a steady pace, while 20 consecutive
//! blue→green→blue releases run with a 3-stage policy (10 %, 50 %, then 100 %) through the real
//! binary's `apply`. It counts failed requests (goal 0) and, per stage, compares each deployment's
//! observed share (the `azureml-model-deployment` header of the answers) with the declared weight
//! (goal: within 2 points at ≥ 1,000 requests per stage). Stage windows come from the sandbox's
//! change history (`/_sandbox/history`).
//!
//! Run: `cargo bench --bench rollout_zero_downtime` (about 4 minutes: 5 s bakes).
//! Quick smoke run: `ZERO_DOWNTIME_QUICK=1 cargo bench --bench rollout_zero_downtime` (2 releases,
//! 1 s bakes; the share goal needs the full run's 1,000 requests per stage and is only reported).
//! `ZERO_DOWNTIME_RATE` sets the request rate (200).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use flightdeck::sandbox::{MetricsConfig, SandboxConfig};
use flightdeck_testkit::azureml_sandbox::{Env, flow_file};

const EP: &str = "my-endpoint";

/// One answer: when, which deployment answered (None: failed), HTTP status.
struct Answer {
    at: DateTime<Utc>,
    deployment: Option<String>,
}

fn policy(bake: &str) -> String {
    format!(
        "rollout:\n  metrics:\n    provider: azure_monitor\n    ingestion_delay: 0s\n  default:\n    steps:\n      - weight: 10\n        bake: {bake}\n        gates: [\"error_rate < 2%\"]\n      - weight: 50\n        bake: {bake}\n        gates: [\"error_rate < 2%\"]\n    max_bake: 30s\n"
    )
}

/// `name` at 100 %, alone (flow file 6 with its deployment renamed).
fn only(name: &str) -> String {
    std::fs::read_to_string(flow_file(5))
        .unwrap()
        .replace("green", name)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::var_os("ZERO_DOWNTIME_QUICK").is_some();
    let rate: u32 = std::env::var("ZERO_DOWNTIME_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200);
    let (releases, bake) = if quick { (2, "1s") } else { (20, "5s") };
    let env = Env::start_with(SandboxConfig {
        provisioning_delay: Duration::from_millis(20),
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
    std::fs::copy(flow_file(0), dir.join("my-endpoint.yml")).unwrap();
    let code = apply(&env, &d).await;
    assert_eq!(code, 0, "blue lands");
    env.clear_history().await;

    // Steady pacing: one request every 1/rate s, each on its own task.
    let (url, key) = env.scoring(EP).await;
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let http = reqwest::Client::new();
    let sink = answers.clone();
    let load = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
        loop {
            tick.tick().await;
            let req = http
                .post(&url)
                .bearer_auth(&key)
                .header("content-type", "application/json")
                .body(r#"{"data": [[1, 2, 3]]}"#);
            let sink = sink.clone();
            tokio::spawn(async move {
                let deployment = match req.send().await {
                    Ok(r) if r.status().is_success() => r
                        .headers()
                        .get("azureml-model-deployment")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                    _ => None,
                };
                sink.lock().unwrap().push(Answer {
                    at: Utc::now(),
                    deployment,
                });
            });
        }
    });

    let started = std::time::Instant::now();
    for i in 0..releases {
        let to = if i % 2 == 0 { "green" } else { "blue" };
        std::fs::write(dir.join("my-endpoint.yml"), only(to)).unwrap();
        let t = std::time::Instant::now();
        let code = apply(&env, &d).await;
        println!(
            "release {:>2}: → {to} 100: exit {code} in {:.1}s",
            i + 1,
            t.elapsed().as_secs_f64()
        );
        assert_eq!(code, 0, "release {} failed", i + 1);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    load.abort();
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Stage windows: consecutive traffic maps of the history.
    let history = env.history().await;
    let mut windows: Vec<(DateTime<Utc>, BTreeMap<String, u64>)> = Vec::new();
    for e in history["entries"].as_array().unwrap() {
        if e["endpoint"] != EP || e["traffic"].is_null() {
            continue;
        }
        let at = DateTime::parse_from_rfc3339(e["time"].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc);
        let map: BTreeMap<String, u64> = e["traffic"]
            .as_object()
            .unwrap()
            .iter()
            .filter_map(|(k, v)| v.as_u64().filter(|w| *w > 0).map(|w| (k.clone(), w)))
            .collect();
        if windows.last().is_some_and(|(_, m)| *m == map) {
            continue;
        }
        windows.push((at, map));
    }
    let answers = answers.lock().unwrap();
    let failed = answers.iter().filter(|a| a.deployment.is_none()).count();
    println!(
        "\n{} requests in {:.1}s ({:.0}/s), {failed} failed",
        answers.len(),
        elapsed.as_secs_f64(),
        answers.len() as f64 / elapsed.as_secs_f64()
    );
    println!("\nstage (declared)                   requests  observed share        worst gap");
    let mut worst_overall: f64 = 0.0;
    let mut judged = 0;
    for (i, (from, map)) in windows.iter().enumerate() {
        if map.len() < 2 {
            continue; // a 100 % stage: every answer is from one deployment by construction
        }
        let to = windows
            .get(i + 1)
            .map(|(t, _)| *t)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        let mut n = 0u64;
        for a in answers.iter().filter(|a| a.at >= *from && a.at < to) {
            n += 1;
            if let Some(d) = &a.deployment {
                *counts.entry(d.as_str()).or_default() += 1;
            }
        }
        let mut worst: f64 = 0.0;
        let mut shares = Vec::new();
        for (d, w) in map {
            let share = 100.0 * *counts.get(d.as_str()).unwrap_or(&0) as f64 / n.max(1) as f64;
            worst = worst.max((share - *w as f64).abs());
            shares.push(format!("{d} {share:.1}"));
        }
        if n >= 1000 {
            worst_overall = worst_overall.max(worst);
            judged += 1;
        }
        println!(
            "{:<34} {n:>8}  {:<20}  {worst:.2} pts{}",
            format!("{map:?}"),
            shares.join(" / "),
            if n < 1000 {
                " (under 1,000: not judged)"
            } else {
                ""
            }
        );
    }
    println!(
        "\nfailed requests: {failed} (goal 0); worst share gap over {judged} stages with ≥ 1,000 requests: {worst_overall:.2} points (goal ≤ 2)"
    );
    if failed > 0 || (judged > 0 && worst_overall > 2.0) {
        std::process::exit(1);
    }
}

async fn apply(env: &Env, dir: &str) -> i32 {
    let out = env
        .command(&["apply", dir])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .unwrap();
    out.code().unwrap_or(-1)
}
