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

pub(super) const EP: &str = "my-endpoint";

pub(crate) async fn start() -> Env {
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
pub(crate) fn rollout_yaml(policy: &str) -> String {
    format!(
        "rollout:\n  metrics:\n    provider: azure_monitor\n    ingestion_delay: 0s\n  default:\n{policy}"
    )
}

/// An environment at blue 100 (flow file 1, applied), then declaring green 100 without blue.
pub(crate) async fn blue_live_then_declare_green(env: &Env, dir: &std::path::Path, policy: &str) {
    env.write_environment(dir, &rollout_yaml(policy));
    std::fs::copy(flow_file(0), dir.join("my-endpoint.yml")).unwrap();
    let out = run(env, &["apply", dir.to_str().unwrap()]).await;
    assert_eq!(out.code, 0, "blue lands: {out}");
    assert_eq!(env.traffic(EP).await, [("blue".to_string(), 100)].into());
    std::fs::copy(flow_file(5), dir.join("my-endpoint.yml")).unwrap();
}

/// Scoring requests sent to the endpoint's scoring URI at a settable rate, each on its own task
/// (so a slow deployment does not lower the rate), until dropped.
pub(crate) struct Load {
    rate: watch::Sender<u32>,
    pub(crate) answered: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    pub(crate) async fn start(env: &Env, per_second: u32) -> Load {
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
pub(crate) struct Ran {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
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

pub(crate) async fn run(env: &Env, args: &[&str]) -> Ran {
    spawn(env, args).finish().await
}

/// The `rollout:` lines and gate lines of an apply's stderr, in order.
pub(super) fn progress(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("rollout: ") || l.starts_with("  gate "))
        .collect()
}

/// Index of the first progress line containing `needle`, panicking with the whole run.
pub(super) fn line_of(out: &Ran, needle: &str) -> usize {
    progress(&out.stderr)
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no progress line contains {needle:?}:\n{out}"))
}

pub(super) async fn rollout_status_json(env: &Env, d: &str) -> (i32, Value) {
    let out = run(env, &["rollout", "status", d, "--output", "json"]).await;
    let doc: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("status JSON ({e}):\n{out}"));
    (out.code, doc)
}

pub(crate) fn traffic(pairs: &[(&str, i64)]) -> std::collections::BTreeMap<String, i64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

pub(super) const CANARY: &str = "    steps:
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

    // Each stage in order; the verdict that let a stage go on is shown under the next one.
    let lines = progress(&out.stderr);
    let s1 = line_of(&out, "stage 1/3: routing blue 90 / green 10");
    let s2 = line_of(&out, "stage 2/3: routing blue 50 / green 50");
    let s3 = line_of(&out, "stage 3/3: routing the declared green 100");
    assert!(s1 < s2 && s2 < s3, "{out}");
    for stage in [s2, s3] {
        let verdict = lines.get(stage + 1).copied().unwrap_or_default();
        assert!(
            verdict.starts_with("  gate error_rate < 2%: error_rate 0% < 2%")
                && verdict.ends_with("[pass]"),
            "a passing verdict under {:?}:\n{out}",
            lines[stage]
        );
    }
    let passes = lines.iter().filter(|l| l.ends_with("[pass]")).count();
    assert_eq!(passes, 2, "one passing verdict per gated stage:\n{out}");
    assert!(!out.stderr.contains("FAIL"), "{out}");
    assert!(load.answered.load(Ordering::Relaxed) > 0);

    let out = run(&env, &["plan", d]).await;
    assert_eq!(out.code, 0, "plan after the rollout: {out}");
}

/// Stage 1 ungated, stage 2 gated on the error rate.
pub(crate) const GATED_AT_TWO: &str = "    steps:
      - weight: 10
        bake: 1s
      - weight: 50
        bake: 2s
        gates: [\"error_rate < 2%\"]
    max_bake: 8s
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_failing_at_stage_two_rolls_back_to_blue_and_holds_until_git_changes() {
    let env = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let d = dir.to_str().unwrap();
    blue_live_then_declare_green(&env, &dir, GATED_AT_TWO).await;
    // Every second answer of green is a 500 (the sandbox's error_rate is deterministic).
    env.fault(json!({"endpoint": EP, "deployment": "green", "error_rate": 0.5}))
        .await;
    let _load = Load::start(&env, 50).await;

    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.code, 3, "held after the rollback: {out}");
    let s1 = line_of(&out, "stage 1/3: routing blue 90 / green 10");
    let s2 = line_of(&out, "stage 2/3: routing blue 50 / green 50");
    let back = line_of(&out, "rolling back to blue 100");
    assert!(s1 < s2 && s2 < back, "{out}");
    let verdict = progress(&out.stderr)[back + 1];
    // About half of green's answers were 500s (the window's edges move it by a request or two).
    let observed: f64 = verdict
        .strip_prefix("  gate error_rate < 2%: error_rate ")
        .and_then(|rest| rest.split_once("% >= 2%"))
        .and_then(|(pct, _)| pct.parse().ok())
        .unwrap_or_else(|| panic!("a failed error_rate verdict: {verdict:?}\n{out}"));
    assert!((40.0..=60.0).contains(&observed), "{verdict}");
    assert!(verdict.ends_with("[FAIL]"), "{out}");
    assert!(out.stderr.contains("gate failed at stage 2"), "{out}");
    // Back to blue in one step; green is kept for inspection (keep_failed defaults to true).
    assert_eq!(env.traffic(EP).await, traffic(&[("blue", 100)]));
    assert!(env.deployments(EP).await.contains_key("green"));

    let out = run(&env, &["plan", d]).await;
    assert_eq!(out.code, 3, "{out}");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("held at blue 100"),
        "{out}"
    );

    // Held: a second apply writes nothing.
    env.clear_log().await;
    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.code, 3, "{out}");
    let (_, writes) = reads_writes(&env.log().await);
    assert_eq!(
        writes,
        0,
        "a held apply writes nothing: {:?}",
        env.log().await
    );

    let out = run(&env, &["rollout", "status", d]).await;
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stdout.contains("gate failed at stage 2"), "{out}");
    assert!(out.stdout.contains("error_rate"), "{out}");
    let (code, doc) = rollout_status_json(&env, d).await;
    assert_eq!(code, 3);
    assert_eq!(doc[0]["record"]["state"], "failed", "{doc:#}");

    // A Git change (green's model version) is a new desired state: a new rollout starts, and
    // with green fixed it goes all the way.
    let text = std::fs::read_to_string(dir.join("my-endpoint.yml")).unwrap();
    let bumped = text.replacen(
        "name: model-2\n      version: 1",
        "name: model-2\n      version: 2",
        1,
    );
    assert_ne!(text, bumped, "flow file 6 changed shape");
    std::fs::write(dir.join("my-endpoint.yml"), bumped).unwrap();
    let resp = reqwest::Client::new()
        .delete(format!("{}/_sandbox/faults", env.base))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.code, 0, "{out}");
    line_of(&out, "stage 1/3: routing blue 90 / green 10");
    assert_eq!(env.traffic(EP).await, traffic(&[("green", 100)]), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_latency_gate_catches_a_candidate_five_times_as_slow_as_blue() {
    let env = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let d = dir.to_str().unwrap();
    let policy = "    steps:
      - weight: 50
        bake: 2s
        gates: [\"p99 < 1.2x baseline\"]
    max_bake: 8s
";
    blue_live_then_declare_green(&env, &dir, policy).await;
    // Five times, not just over 1.2x: the latencies are real (the sandbox's data plane sleeps
    // them), and on a loaded machine blue's p99 picks up tens of ms of scheduling delay.
    env.fault(json!({"endpoint": EP, "deployment": "blue", "latency_ms": 40}))
        .await;
    env.fault(json!({"endpoint": EP, "deployment": "green", "latency_ms": 200}))
        .await;
    let _load = Load::start(&env, 50).await;

    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.code, 3, "{out}");
    let fail = line_of(&out, "gate p99 < 1.2x baseline");
    assert!(progress(&out.stderr)[fail].ends_with("[FAIL]"), "{out}");
    line_of(&out, "rolling back to blue 100");
    assert_eq!(env.traffic(EP).await, traffic(&[("blue", 100)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_requests_extend_the_bake_until_traffic_arrives_then_it_passes() {
    let env = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let d = dir.to_str().unwrap();
    let policy = "    steps:
      - weight: 50
        bake: 1s
        gates: [\"error_rate < 2%\"]
    min_requests: 200
    max_bake: 14s
";
    blue_live_then_declare_green(&env, &dir, policy).await;
    let load = Load::start(&env, 4).await;

    let apply = spawn(&env, &["apply", d]);
    apply.wait_stderr("waiting for data").await;
    // Traffic arrives: ~50 requests a second reach green.
    load.set_rate(100);
    let out = apply.finish().await;
    assert_eq!(out.code, 0, "{out}");
    let waiting = line_of(&out, "waiting for data");
    assert!(
        progress(&out.stderr)[waiting].contains("of 200 requests"),
        "{out}"
    );
    let done = line_of(&out, "stage 2/2: routing the declared green 100");
    assert!(waiting < done, "{out}");
    assert_eq!(env.traffic(EP).await, traffic(&[("green", 100)]));
}

/// Stage 1 waits for a person after its bake.
const PAUSED_AT_ONE: &str = "    steps:
      - weight: 10
        bake: 1s
        pause: true
      - weight: 50
        bake: 2s
        gates: [\"error_rate < 2%\"]
    max_bake: 8s
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_stage_exits_4_and_a_resumed_rollout_finishes_on_the_next_apply() {
    let env = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let d = dir.to_str().unwrap();
    blue_live_then_declare_green(&env, &dir, PAUSED_AT_ONE).await;
    let _load = Load::start(&env, 50).await;

    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.code, 4, "{out}");
    line_of(&out, "stage 1/3 paused at blue 90 / green 10");
    assert_eq!(
        env.traffic(EP).await,
        traffic(&[("blue", 90), ("green", 10)])
    );

    let out = run(&env, &["rollout", "status", d]).await;
    assert_eq!(out.code, 4, "{out}");
    assert!(out.stdout.contains("flightdeck rollout resume"), "{out}");
    // Paused means paused: an apply now moves nothing.
    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.code, 4, "{out}");
    assert_eq!(
        env.traffic(EP).await,
        traffic(&[("blue", 90), ("green", 10)])
    );

    let out = run(&env, &["rollout", "resume", d]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("resumed at stage 1"), "{out}");
    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.code, 0, "{out}");
    line_of(&out, "stage 2/3: routing blue 50 / green 50");
    assert_eq!(env.traffic(EP).await, traffic(&[("green", 100)]));
    let out = run(&env, &["rollout", "status", d]).await;
    assert_eq!(out.code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_abort_mid_pause_returns_traffic_to_blue_and_exits_3() {
    let env = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let d = dir.to_str().unwrap();
    blue_live_then_declare_green(&env, &dir, PAUSED_AT_ONE).await;
    let _load = Load::start(&env, 50).await;

    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.code, 4, "{out}");
    assert_eq!(
        env.traffic(EP).await,
        traffic(&[("blue", 90), ("green", 10)])
    );

    let out = run(&env, &["rollout", "abort", d]).await;
    assert_eq!(out.code, 3, "{out}");
    assert_eq!(env.traffic(EP).await, traffic(&[("blue", 100)]));
    assert!(out.stdout.contains("aborted at stage 1"), "{out}");
    let out = run(&env, &["rollout", "status", d]).await;
    assert_eq!(out.code, 3, "{out}");
    let out = run(&env, &["plan", d]).await;
    assert_eq!(out.code, 3, "{out}");
    // Nothing left to abort.
    let out = run(&env, &["rollout", "abort", d]).await;
    assert_eq!(out.code, 2, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_that_fails_provisioning_never_takes_traffic_and_is_then_held() {
    let env = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let d = dir.to_str().unwrap();
    blue_live_then_declare_green(&env, &dir, CANARY).await;
    env.fault(json!({"endpoint": EP, "deployment": "green", "fail_provisioning": true}))
        .await;
    let _load = Load::start(&env, 50).await;

    let out = run(&env, &["apply", d]).await;
    assert_ne!(out.code, 0, "{out}");
    assert_eq!(env.traffic(EP).await, traffic(&[("blue", 100)]), "{out}");
    let (code, doc) = rollout_status_json(&env, d).await;
    assert_eq!(code, 3, "{doc:#}");
    let record = &doc[0]["record"];
    assert_eq!(record["state"], "failed", "{doc:#}");
    assert!(
        record["reason"]
            .as_str()
            .is_some_and(|r| r.contains("failed before taking traffic")),
        "{doc:#}"
    );

    // The fault fired once, so green would provision now: held, the next apply writes nothing.
    env.clear_log().await;
    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.code, 3, "{out}");
    let log = env.log().await;
    let writes: Vec<_> = log.iter().filter(|e| e["method"] != "GET").collect();
    assert!(
        writes.is_empty(),
        "a held apply writes nothing: {writes:?}\n{out}"
    );
    assert_eq!(env.traffic(EP).await, traffic(&[("blue", 100)]));
}
