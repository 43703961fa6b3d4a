//! Measures the agent at 1,000 and 10,000 endpoints on the sandbox (issue #13): resident memory
//! at start, after the first reconcile and over 40 full in-sync ticks (the plateau), the in-sync
//! tick time, and the webhook-to-first-write latency of commits that change one endpoint with
//! the whole fleet live (targeted reconciles). Not a criterion bench: figures are printed as
//! `key: value` lines, with the goals.
//!
//! Run: `cargo bench --bench agent_memory` (release build). `AGENT_BENCH_ENDPOINTS=1000,10000`
//! (the default) lists the fleet sizes; `AGENT_BENCH_WEBHOOKS` (default 20) the one-endpoint
//! commits timed; `AGENT_BENCH_TICKS` (default 40) the full ticks; `AGENT_BENCH_CONCURRENCY`
//! (default 32) the agent's `--concurrency` (it matters only while the fleet is created). The sandbox runs in this process; the agent is the
//! real `flightdeck agent` binary in a child process, so its /proc/<pid>/status VmRSS / VmHWM
//! are its own.
//!
//! Two agents run per size against the same sandbox and repository. The first (default
//! `--full-resync-interval`, 10 min) creates the fleet and then takes the one-endpoint
//! webhooks. The second (`--full-resync-interval 0s`, every tick reads and plans every
//! endpoint, the most a tick can cost) measures start, first reconcile and the plateau.
//!
//! Phases: `AGENT_BENCH_LOG="warn,flightdeck::agent=debug,flightdeck::source=debug"` sets the
//! agent's `RUST_LOG` (default `warn`); its stderr then has timestamped lines for the webhook, the
//! fetch, the new revision (tree read), `desired state loaded`, `scope decided` and `live state
//! read` of every tick (docs/benchmarks.md, "Targeted reconciles and a bounded agent").
//!
//! Profiling: `AGENT_BENCH_WRAP="heaptrack -o /tmp/agent"` runs the agent under that command
//! (split on whitespace, the agent's command line appended). The memory figures are then those
//! of the wrapper's process, so read the profiler's output instead; the bench stops the wrapper
//! on exit, not the agent under it (stop that by its pid).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flightdeck::agent::webhook::sign_github;
use flightdeck::sandbox::{Sandbox, SandboxConfig, SandboxHandle};
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

const IN_SYNC: &str = "flightdeck_reconcile_total{env=\"environments/bench\",result=\"in_sync\"}";

/// A running `flightdeck agent` and where to reach it.
struct Agent {
    _child: KillOnDrop,
    pid: u32,
    base: String,
}

fn start_agent(sandbox: &SandboxHandle, repo_dir: &Path, work: &Path, extra: &[&str]) -> Agent {
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
    let concurrency = std::env::var("AGENT_BENCH_CONCURRENCY").unwrap_or_else(|_| "32".into());
    command
        .args(["agent", "--repo"])
        .arg(repo_dir)
        .args([
            "--path",
            "environments/bench",
            "--interval",
            "1h",
            "--concurrency",
            &concurrency,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(extra)
        .arg("--webhook-secret-file")
        .arg(work.join("webhook-secret"))
        .arg("--cache-dir")
        .arg(work.join(format!("cache-{port}")))
        .env(
            "RUST_LOG",
            std::env::var("AGENT_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null());
    for line in sandbox.env_lines() {
        let (key, value) = line.split_once('=').unwrap();
        command.env(key, value);
    }
    let child = KillOnDrop(command.spawn().expect("spawn flightdeck agent"));
    let pid = child.0.id();
    Agent {
        _child: child,
        pid,
        base,
    }
}

async fn push(client: &reqwest::Client, base: &str, revision: Option<&str>) {
    let body = match revision {
        Some(rev) => format!(r#"{{"ref":"refs/heads/main","after":"{rev}"}}"#),
        None => r#"{"ref":"refs/heads/main"}"#.to_string(),
    };
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
}

async fn applied_commit(client: &reqwest::Client, base: &str) -> Value {
    status(client, base).await["environments"]["environments/bench"]["applied_commit"].clone()
}

async fn clear_log(client: &reqwest::Client, sandbox: &SandboxHandle) {
    client
        .delete(format!("{}/_sandbox/log", sandbox.base_url()))
        .send()
        .await
        .unwrap();
}

/// The first write the sandbox logged after `sent`, and how many GETs came before it.
async fn first_write(
    client: &reqwest::Client,
    sandbox: &SandboxHandle,
    sent: chrono::DateTime<chrono::Utc>,
) -> (f64, usize) {
    let log: Vec<Value> = client
        .get(format!("{}/_sandbox/log", sandbox.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let time = |e: &Value| {
        chrono::DateTime::parse_from_rfc3339(e["time"].as_str()?)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    let first = log
        .iter()
        .filter(|e| matches!(e["method"].as_str(), Some("PUT" | "PATCH" | "DELETE")))
        .filter_map(time)
        .filter(|t| *t > sent)
        .min()
        .expect("a write after the webhook");
    let reads = log
        .iter()
        .filter(|e| e["method"] == "GET" && time(e).is_some_and(|t| t > sent && t < first))
        .count();
    let latency = first - sent;
    (
        latency.num_microseconds().unwrap_or(0) as f64 / 1000.0,
        reads,
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

async fn run(count: usize, webhooks: usize, ticks: usize) {
    // Operations finish at once, so 10,000 endpoints are created in minutes (the figures that
    // matter here are reads, memory and the time to the first write, not provisioning).
    let sandbox = Sandbox::start(SandboxConfig {
        retry_after: Some(0),
        provisioning_delay: Duration::ZERO,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let repo_dir = work.path().join("repo");
    let repo = Repository::init(&repo_dir).unwrap();
    write_endpoints(&repo_dir, 1);
    commit(&repo, "one endpoint");
    std::fs::write(work.path().join("webhook-secret"), "bench-secret\n").unwrap();
    let client = reqwest::Client::new();
    println!("## {count} endpoints");
    println!("endpoints: {count}");

    // Agent 1 (targeted reconciles between full resyncs every 10 min): create the fleet, then
    // commits that change one endpoint each.
    let agent = start_agent(&sandbox, &repo_dir, work.path(), &[]);
    wait_for("the first sync", Duration::from_secs(60), async || {
        status(&client, &agent.base).await["environments"]["environments/bench"]["last_result"]
            == "applied"
    })
    .await;
    let (idle_rss, _) = memory(agent.pid);
    println!("idle_rss_kib: {idle_rss}");
    write_endpoints(&repo_dir, count);
    let revision = commit(&repo, "many endpoints");
    push(&client, &agent.base, Some(&revision)).await;
    let mut peak_rss = 0;
    let took = wait_for(
        "all endpoints applied",
        Duration::from_secs(3600),
        async || {
            peak_rss = peak_rss.max(memory(agent.pid).0);
            applied_commit(&client, &agent.base).await == revision.as_str()
        },
    )
    .await;
    let (_, hwm) = memory(agent.pid);
    println!("create_{count}_seconds: {:.1}", took.as_secs_f64());
    println!("creating_peak_rss_sampled_kib: {peak_rss}");
    println!("creating_hwm_kib: {hwm}");

    let env = repo_dir.join("environments/bench");
    let mut latencies = Vec::new();
    let mut reads = Vec::new();
    for i in 0..webhooks {
        let n = (i * 37) % count;
        let changed = endpoint(n).replace("instance_count: 1", "instance_count: 2");
        std::fs::write(env.join(format!("ep-{n:04}.yml")), changed).unwrap();
        let revision = commit(&repo, "scale one endpoint");
        clear_log(&client, &sandbox).await;
        let sent = chrono::Utc::now();
        push(&client, &agent.base, Some(&revision)).await;
        wait_for(
            "the one-endpoint commit",
            Duration::from_secs(120),
            async || applied_commit(&client, &agent.base).await == revision.as_str(),
        )
        .await;
        let (ms, before) = first_write(&client, &sandbox, sent).await;
        latencies.push(ms);
        reads.push(before as f64);
        // Back to one instance, so the next figures start from the same fleet.
        std::fs::write(env.join(format!("ep-{n:04}.yml")), endpoint(n)).unwrap();
        let revision = commit(&repo, "scale back");
        push(&client, &agent.base, Some(&revision)).await;
        wait_for("the scale back", Duration::from_secs(120), async || {
            applied_commit(&client, &agent.base).await == revision.as_str()
        })
        .await;
    }
    let p50 = median(latencies.clone());
    println!(
        "webhook_to_first_write_p50_ms: {p50:.1} (goal < 50 ms at 1,000 live; {webhooks} one-endpoint commits; min {:.1}, max {:.1})",
        latencies.iter().copied().fold(f64::MAX, f64::min),
        latencies.iter().copied().fold(0.0, f64::max),
    );
    println!(
        "gets_before_first_write_p50: {} (a full read would be {})",
        median(reads),
        count + count.div_ceil(50)
    );
    drop(agent);

    // Agent 2: every tick is a full resync (`--full-resync-interval 0s`).
    clear_log(&client, &sandbox).await;
    let started = Instant::now();
    let agent = start_agent(
        &sandbox,
        &repo_dir,
        work.path(),
        &["--full-resync-interval", "0s"],
    );
    wait_for("the agent to answer", Duration::from_secs(60), async || {
        client
            .get(format!("{}/healthz", agent.base))
            .send()
            .await
            .is_ok()
    })
    .await;
    let (start_rss, _) = memory(agent.pid);
    let first = wait_for(
        "the first reconcile",
        Duration::from_secs(600),
        async || metric(&client, &agent.base, IN_SYNC).await >= 1.0,
    )
    .await;
    let first_ms = started.elapsed().max(first).as_millis();
    let (first_rss, first_hwm) = memory(agent.pid);
    println!("start_rss_kib: {start_rss} ({})", mib(start_rss));
    println!(
        "first_reconcile_ms: {} (from start; in sync, every endpoint read)",
        first_ms
    );
    println!(
        "first_reconcile_rss_kib: {first_rss} ({}), hwm {first_hwm}",
        mib(first_rss)
    );
    let mut tick_ms = Vec::new();
    for tick in 1..=ticks {
        clear_log(&client, &sandbox).await;
        let before = Instant::now();
        in_sync_tick(&client, &agent.base).await;
        tick_ms.push(before.elapsed().as_secs_f64() * 1000.0);
        if [1, 10, 20, 30, 40].contains(&tick) {
            println!(
                "after_{tick}_full_ticks_rss_kib: {} (this tick {:.0} ms)",
                memory(agent.pid).0,
                tick_ms[tick - 1]
            );
        }
    }
    let (plateau, hwm) = memory(agent.pid);
    let goal = if count <= 1000 {
        "< 30 MiB"
    } else {
        "< 100 MiB"
    };
    println!(
        "plateau_rss_kib: {plateau} ({}; goal {goal}) after {ticks} full ticks; hwm {hwm} ({})",
        mib(plateau),
        mib(hwm)
    );
    println!("plateau_breakdown: {}", breakdown(agent.pid));
    println!(
        "in_sync_full_tick_p50_ms: {:.0} (goal < 2 s at 10,000; max {:.0})",
        median(tick_ms.clone()),
        tick_ms.iter().copied().fold(0.0, f64::max)
    );
    drop(agent);
    sandbox.shutdown().await;
}

#[tokio::main]
async fn main() {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let counts: Vec<usize> = var("AGENT_BENCH_ENDPOINTS", "1000,10000")
        .split(',')
        .map(|c| {
            c.trim()
                .parse()
                .expect("AGENT_BENCH_ENDPOINTS: counts such as 1000,10000")
        })
        .collect();
    let webhooks: usize = var("AGENT_BENCH_WEBHOOKS", "20").parse().unwrap();
    let ticks: usize = var("AGENT_BENCH_TICKS", "40").parse().unwrap();
    println!(
        "goal: RSS < 30 MiB at 1,000 endpoints and < 100 MiB at 10,000 (start, first reconcile, plateau after {ticks} full ticks); in-sync tick < 2 s at 10,000; webhook to first write < 50 ms p50 with 1,000 live"
    );
    for count in counts {
        run(count, webhooks, ticks).await;
    }
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
