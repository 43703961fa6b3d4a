//! Measures the agent's resident memory idle and while reconciling 1,000 endpoints on the
//! sandbox, and the webhook-to-first-write latency. Not a criterion bench: one scenario, figures
//! printed as `key: value` lines.
//!
//! Run: `cargo bench --bench agent_memory` (release build). `AGENT_BENCH_ENDPOINTS=N` changes
//! the endpoint count. The sandbox runs in this process; the agent is the real `flightdeck agent`
//! binary in a child process, so its /proc/<pid>/status VmRSS / VmHWM are its own.
//!
//! Profiling: `AGENT_BENCH_WRAP="heaptrack -o /tmp/agent"` runs the agent under that command
//! (split on whitespace, the agent's command line appended). The memory figures are then those
//! of the wrapper's process, so read the profiler's output instead; the bench stops the wrapper
//! on exit, not the agent under it (stop that by its pid).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flightdeck::agent::webhook::sign_github;
use flightdeck::sandbox::{Sandbox, SandboxConfig};
use git2::{Repository, Signature};
use serde_json::Value;

const ENVIRONMENT: &str = "name: bench
target:
  azureml:
    subscription_id: 00000000-0000-0000-0000-000000000000
    resource_group: bench
    workspace: bench
    location: westus2
";

fn endpoint(i: usize) -> String {
    format!(
        "name: ep-{i:04}\nauth_mode: key\ntraffic:\n  blue: 100\ndeployments:\n  - name: blue\n    model: azureml:model-1:1\n    environment: azureml:env-1:1\n    code_configuration:\n      code: azureml:code:1\n      scoring_script: score.py\n    instance_type: Standard_DS3_v2\n    instance_count: 1\n"
    )
}

fn commit(repo: &Repository, message: &str) -> String {
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.update_all(["*"], None).unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = Signature::now("bench", "bench@example.com").unwrap();
    let parent = repo
        .refname_to_id("refs/heads/main")
        .ok()
        .map(|id| repo.find_commit(id).unwrap());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repo.commit(
        Some("refs/heads/main"),
        &sig,
        &sig,
        message,
        &tree,
        &parents,
    )
    .unwrap()
    .to_string()
}

fn write_endpoints(dir: &Path, count: usize) {
    let env = dir.join("environments/bench");
    std::fs::create_dir_all(&env).unwrap();
    std::fs::write(env.join("environment.yaml"), ENVIRONMENT).unwrap();
    for i in 0..count {
        std::fs::write(env.join(format!("ep-{i:04}.yml")), endpoint(i)).unwrap();
    }
}

/// (VmRSS, VmHWM) in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// What the resident set is made of: anonymous memory (heap, stacks), file-backed pages (the
/// binary's code and data as far as it was touched) and the thread count.
fn breakdown(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    ["RssAnon:", "RssFile:", "Threads:"]
        .iter()
        .map(|name| {
            let v = status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or("?");
            format!("{} {v}", name.trim_end_matches(':'))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sends a signed push of an unchanged branch and waits for the in-sync tick it triggers.
async fn in_sync_tick(client: &reqwest::Client, base: &str) {
    const IN_SYNC: &str =
        "flightdeck_reconcile_total{env=\"environments/bench\",result=\"in_sync\"}";
    let ticks_before = metric(client, base, IN_SYNC).await;
    client
        .post(format!("{base}/webhook"))
        .header("x-github-event", "push")
        .header(
            "x-hub-signature-256",
            sign_github(b"bench-secret", br#"{"ref":"refs/heads/main"}"#),
        )
        .body(r#"{"ref":"refs/heads/main"}"#)
        .send()
        .await
        .unwrap();
    wait_for("an in-sync tick", Duration::from_secs(120), async || {
        metric(client, base, IN_SYNC).await > ticks_before
    })
    .await;
}

async fn status(client: &reqwest::Client, base: &str) -> Value {
    match client.get(format!("{base}/status")).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::var("AGENT_BENCH_ENDPOINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let sandbox = Sandbox::start(SandboxConfig {
        retry_after: Some(0),
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let repo_dir = work.path().join("repo");
    let repo = Repository::init(&repo_dir).unwrap();
    write_endpoints(&repo_dir, 1);
    commit(&repo, "one endpoint");
    let secret_file = work.path().join("webhook-secret");
    std::fs::write(&secret_file, "bench-secret\n").unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let wrap = std::env::var("AGENT_BENCH_WRAP").unwrap_or_default();
    let mut wrap = wrap.split_whitespace();
    let mut command = match wrap.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(wrap).arg(env!("CARGO_BIN_EXE_flightdeck"));
            command
        }
        None => Command::new(env!("CARGO_BIN_EXE_flightdeck")),
    };
    command
        .args(["agent", "--repo"])
        .arg(&repo_dir)
        .args([
            "--path",
            "environments/bench",
            "--interval",
            "1h",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--webhook-secret-file")
        .arg(&secret_file)
        .arg("--cache-dir")
        .arg(work.path().join("cache"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    for line in sandbox.env_lines() {
        let (key, value) = line.split_once('=').unwrap();
        command.env(key, value);
    }
    let child = KillOnDrop(command.spawn().expect("spawn flightdeck agent"));
    let pid = child.0.id();
    let client = reqwest::Client::new();

    wait_for("the first sync", Duration::from_secs(60), async || {
        status(&client, &base).await["environments"]["environments/bench"]["last_result"]
            == "applied"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle_rss, idle_hwm) = memory(pid);
    println!("endpoints: {count}");
    println!("idle_rss_kib: {idle_rss}");
    println!("idle_breakdown: {}", breakdown(pid));
    println!("idle_hwm_kib: {idle_hwm}");

    write_endpoints(&repo_dir, count);
    let revision = commit(&repo, "many endpoints");
    let body = format!(r#"{{"ref":"refs/heads/main","after":"{revision}"}}"#);
    let sent = chrono::Utc::now();
    let response = client
        .post(format!("{base}/webhook"))
        .header("x-github-event", "push")
        .header(
            "x-hub-signature-256",
            sign_github(b"bench-secret", body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    let mut peak_rss = 0;
    let took = wait_for(
        "all endpoints applied",
        Duration::from_secs(1800),
        async || {
            peak_rss = peak_rss.max(memory(pid).0);
            let s = status(&client, &base).await;
            let env = &s["environments"]["environments/bench"];
            env["applied_commit"] == revision.as_str()
        },
    )
    .await;
    let (after_rss, hwm) = memory(pid);
    println!("reconcile_{count}_seconds: {:.1}", took.as_secs_f64());
    println!("reconciling_peak_rss_sampled_kib: {peak_rss}");
    println!("reconciling_hwm_kib: {hwm}");
    println!("after_rss_kib: {after_rss}");

    let log: Vec<Value> = client
        .get(format!("{}/_sandbox/log", sandbox.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first_write = log
        .iter()
        .filter(|e| matches!(e["method"].as_str(), Some("PUT" | "PATCH" | "DELETE")))
        .filter_map(|e| chrono::DateTime::parse_from_rfc3339(e["time"].as_str()?).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .filter(|t| *t > sent)
        .min()
        .expect("a write after the webhook");
    let latency = first_write - sent;
    println!(
        "webhook_to_first_write_ms: {:.1}",
        latency.num_microseconds().unwrap_or(0) as f64 / 1000.0
    );

    // One in-sync tick over all endpoints (read live, plan, nothing to apply).
    let before = Instant::now();
    in_sync_tick(&client, &base).await;
    println!("in_sync_tick_{count}_ms: {}", before.elapsed().as_millis());
    println!("after_in_sync_tick_rss_kib: {}", memory(pid).0);
    println!("after_in_sync_tick_breakdown: {}", breakdown(pid));

    // Ten more in-sync ticks: does resident memory plateau (issue #13)?
    for _ in 0..10 {
        in_sync_tick(&client, &base).await;
    }
    let (rss, hwm) = memory(pid);
    println!("after_11_in_sync_ticks_rss_kib: {rss}");
    println!("after_11_in_sync_ticks_hwm_kib: {hwm}");
    drop(child);
    sandbox.shutdown().await;
}

async fn metric(client: &reqwest::Client, base: &str, series: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}
