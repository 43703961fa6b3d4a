//! Staged rollouts end to end (issue #12 "Proof"): the real `flightdeck` binary against an
//! in-process sandbox whose Azure Monitor metrics have a 1 s grain and no lag, with a policy in
//! environment.yaml, scoring traffic sent in the background for as long as each apply runs, and
//! the 2021 flow from blue 100 to green 100 (blue removed, `6-delete-blue.yml`).
//!
//! Gates are read with `ingestion_delay: 0s`, so a 1–2 s bake judges one or two complete
//! 1 s buckets [MON R18].

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flightdeck::sandbox::{MetricsConfig, SandboxConfig};
use flightdeck_testkit::azureml_sandbox::*;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

const EP: &str = "my-endpoint";

async fn start() -> Env {
    Env::start_with(SandboxConfig {
        provisioning_delay: Duration::from_millis(20),
        metrics: MetricsConfig {
            grain: Duration::from_secs(1),
            lag: Duration::ZERO,
            ..MetricsConfig::default()
        },
        ..Default::default()
    })
    .await
}

/// `environment.yaml` with Azure Monitor metrics read at once and `policy` as the default.
fn rollout_yaml(policy: &str) -> String {
    format!(
        "rollout:\n  metrics:\n    provider: azure_monitor\n    ingestion_delay: 0s\n  default:\n{policy}"
    )
}

/// An environment at blue 100 (flow file 1, applied), then declaring green 100 without blue.
async fn blue_live_then_declare_green(env: &Env, dir: &std::path::Path, policy: &str) {
    env.write_environment(dir, &rollout_yaml(policy));
    std::fs::copy(flow_file(0), dir.join("my-endpoint.yml")).unwrap();
    let out = run(env, &["apply", dir.to_str().unwrap()]).await;
    assert_eq!(out.code, 0, "blue lands: {out}");
    assert_eq!(env.traffic(EP).await, [("blue".to_string(), 100)].into());
    std::fs::copy(flow_file(5), dir.join("my-endpoint.yml")).unwrap();
}

/// Scoring requests sent to the endpoint's scoring URI at a settable rate, each on its own task
/// (so a slow deployment does not lower the rate), until dropped.
struct Load {
    rate: watch::Sender<u32>,
    answered: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    async fn start(env: &Env, per_second: u32) -> Load {
        let (url, key) = env.scoring(EP).await;
        let (rate, mut rx) = watch::channel(per_second);
        let answered = Arc::new(AtomicU64::new(0));
        let count = answered.clone();
        let http = reqwest::Client::new();
        let task = tokio::spawn(async move {
            loop {
                let per_second = *rx.borrow_and_update();
                let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second.max(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        changed = rx.changed() => {
                            if changed.is_err() { return; }
                            break;
                        }
                    }
                    let req = http
                        .post(&url)
                        .bearer_auth(&key)
                        .header("content-type", "application/json")
                        .body(r#"{"data": [[1, 2, 3]]}"#);
                    let count = count.clone();
                    tokio::spawn(async move {
                        if req.send().await.is_ok() {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            }
        });
        Load {
            rate,
            answered,
            task,
        }
    }

    fn set_rate(&self, per_second: u32) {
        self.rate.send_replace(per_second);
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A finished run of the binary.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A running `flightdeck`, its stderr readable while it runs.
struct Running {
    child: tokio::process::Child,
    stdout: tokio::task::JoinHandle<String>,
    stderr: Arc<Mutex<String>>,
    reader: tokio::task::JoinHandle<()>,
}

fn spawn(env: &Env, args: &[&str]) -> Running {
    let mut cmd = env.command(args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("flightdeck runs");
    let mut out = child.stdout.take().unwrap();
    let stdout = tokio::spawn(async move {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s).await;
        s
    });
    let mut err = child.stderr.take().unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = stderr.clone();
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    Running {
        child,
        stdout,
        stderr,
        reader,
    }
}

impl Running {
    /// Waits (30 s failure timeout) until stderr contains `needle`.
    async fn wait_stderr(&self, needle: &str) {
        let what = format!("stderr to contain {needle:?}");
        flightdeck_testkit::eventually(&what, Duration::from_secs(30), || async {
            self.stderr.lock().unwrap().contains(needle)
        })
        .await;
    }

    async fn finish(mut self) -> Ran {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("flightdeck finished within 30s")
            .expect("flightdeck ran");
        let stdout = self.stdout.await.unwrap();
        self.reader.await.unwrap();
        let stderr = self.stderr.lock().unwrap().clone();
        Ran {
            code: status.code().expect("exited, not killed"),
            stdout,
            stderr,
        }
    }
}

async fn run(env: &Env, args: &[&str]) -> Ran {
    spawn(env, args).finish().await
}

/// The `rollout:` lines and gate lines of an apply's stderr, in order.
fn progress(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("rollout: ") || l.starts_with("  gate "))
        .collect()
}

/// Index of the first progress line containing `needle`, panicking with the whole run.
fn line_of(out: &Ran, needle: &str) -> usize {
    progress(&out.stderr)
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no progress line contains {needle:?}:\n{out}"))
}

async fn rollout_status_json(env: &Env, d: &str) -> (i32, Value) {
    let out = run(env, &["rollout", "status", d, "--output", "json"]).await;
    let doc: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("status JSON ({e}):\n{out}"));
    (out.code, doc)
}

fn traffic(pairs: &[(&str, i64)]) -> std::collections::BTreeMap<String, i64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

const CANARY: &str = "    steps:
      - weight: 10
        bake: 2s
        gates: [\"error_rate < 2%\"]
      - weight: 50
        bake: 2s
        gates: [\"error_rate < 2%\"]
    max_bake: 8s
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_three_stage_canary_moves_blue_to_green_in_order_and_deletes_blue() {
    let env = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let d = dir.to_str().unwrap();
    blue_live_then_declare_green(&env, &dir, CANARY).await;
    let load = Load::start(&env, 50).await;

    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(env.traffic(EP).await, traffic(&[("green", 100)]), "{out}");
    let deployments = env.deployments(EP).await;
    assert!(!deployments.contains_key("blue"), "{deployments:?}\n{out}");
    assert!(deployments.contains_key("green"), "{deployments:?}");

    // Each stage in order, each gate judged before the next stage.
    let s1 = line_of(&out, "stage 1/3: routing blue 90, green 10");
    let g1 = line_of(&out, "gate error_rate < 2%");
    let s2 = line_of(&out, "stage 2/3: routing blue 50, green 50");
    let s3 = line_of(&out, "stage 3/3: routing the declared green 100");
    assert!(s1 < g1 && g1 < s2 && s2 < s3, "{out}");
    let passes = progress(&out.stderr)
        .iter()
        .filter(|l| l.starts_with("  gate error_rate < 2%") && l.ends_with("[pass]"))
        .count();
    assert_eq!(passes, 2, "one passing verdict per gated stage:\n{out}");
    assert!(!out.stderr.contains("FAIL"), "{out}");
    assert!(load.answered.load(Ordering::Relaxed) > 0);

    let out = run(&env, &["plan", d]).await;
    assert_eq!(out.code, 0, "plan after the rollout: {out}");
}
