//! Rollout benchmark: a blue→green flow over 50 endpoints against the in-process sandbox, whose
//! operations take 1 s each, through the real Azure ML client and the executor.
//!
//! Run: `cargo bench --bench rollout` (about 1–2 minutes). Knobs (environment variables):
//! `ROLLOUT_ENDPOINTS` (50), `ROLLOUT_DELAY` (1s, humantime), `ROLLOUT_CONCURRENCY` (`50,8`), and
//! the client's own `FLIGHTDECK_POLL_INTERVAL_MAX` (default: honour the sandbox's Retry-After: 1).
//!
//! Five desired states are applied in turn: create the endpoint with blue at 100%; create green at
//! 0%; 90/10; 0/100; delete blue. For each phase it prints the steps executed, the wall time, the
//! sequential minimum (steps × delay: every step waits for one operation) and the speedup; then
//! the requests a steady-state re-apply makes per endpoint.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flightdeck::apply::{self, ApplyOptions};
use flightdeck::backend::Backend;
use flightdeck::backend::azureml::{AzureMlBackend, AzureMlConfig, credential_from_vars};
use flightdeck::model::{DesiredState, Target};
use flightdeck::plan::{self, PlanOptions};
use flightdeck::sandbox::{Sandbox, SandboxConfig, SandboxHandle};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const PHASES: [&str; 5] = [
    "create blue 100%",
    "create green 0%",
    "flight 90/10",
    "green 100%",
    "delete blue",
];

fn deployment_yaml(name: &str, model: &str) -> String {
    format!(
        "  - name: {name}
    model: azureml:{model}:1
    code_configuration:
      code: azureml:score-code:1
      scoring_script: score.py
    environment: azureml:env-sklearn:1
    instance_type: Standard_F2s_v2
    instance_count: 1
"
    )
}

/// The endpoint file of phase `phase` (2021 combined form).
fn endpoint_yaml(name: &str, phase: usize) -> String {
    let (traffic, blue, green) = match phase {
        0 => ("blue: 100", true, false),
        1 => ("blue: 100\n  green: 0", true, true),
        2 => ("blue: 90\n  green: 10", true, true),
        3 => ("blue: 0\n  green: 100", true, true),
        _ => ("green: 100", false, true),
    };
    let mut text = format!("name: {name}\nauth_mode: key\ntraffic:\n  {traffic}\ndeployments:\n");
    if blue {
        text.push_str(&deployment_yaml("blue", "model-1"));
    }
    if green {
        text.push_str(&deployment_yaml("green", "model-2"));
    }
    text
}

struct Bench {
    sandbox: SandboxHandle,
    vars: BTreeMap<String, String>,
    dir: tempfile::TempDir,
    endpoints: usize,
}

impl Bench {
    async fn start(endpoints: usize, delay: Duration) -> anyhow::Result<Bench> {
        let sandbox = Sandbox::start(SandboxConfig {
            provisioning_delay: delay,
            page_size: 100,
            ..Default::default()
        })
        .await?;
        let vars = sandbox
            .env_lines()
            .iter()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(Bench {
            sandbox,
            vars,
            dir: tempfile::tempdir()?,
            endpoints,
        })
    }

    fn write_phase(&self, phase: usize) -> anyhow::Result<DesiredState> {
        let dir = self.dir.path();
        std::fs::write(
            dir.join("environment.yaml"),
            format!(
                "name: bench\ntarget:\n  azureml:\n    subscription_id: {}\n    resource_group: rg-bench\n    workspace: ws-bench\n    location: westus2\n",
                self.vars["AZURE_SUBSCRIPTION_ID"]
            ),
        )?;
        for n in 0..self.endpoints {
            let name = format!("ep-{n:02}");
            std::fs::write(dir.join(format!("{name}.yml")), endpoint_yaml(&name, phase))?;
        }
        load(dir)
    }

    fn backend(&self, desired: &DesiredState) -> anyhow::Result<AzureMlBackend> {
        let Target::AzureMl(target) = &desired.environment.target else {
            anyhow::bail!("bench environment must target azureml");
        };
        // The bench is an edge: it reads the one client knob it documents itself.
        let mut config = AzureMlConfig::default();
        if let Some(cap) = env_or("FLIGHTDECK_POLL_INTERVAL_MAX", None, |s| {
            humantime::parse_duration(s).ok().map(Some)
        })? {
            config.max_poll_interval = cap;
        }
        config.arm_endpoint = self.sandbox.base_url().parse()?;
        let vars = self.vars.clone();
        let credential: Arc<_> =
            credential_from_vars(&config.arm_endpoint, &move |k| vars.get(k).cloned())?;
        Ok(AzureMlBackend::new(target, config, credential)?)
    }

    async fn log(&self) -> anyhow::Result<Vec<Value>> {
        Ok(
            reqwest::get(format!("{}/_sandbox/log", self.sandbox.base_url()))
                .await?
                .json()
                .await?,
        )
    }

    async fn clear_log(&self) -> anyhow::Result<()> {
        reqwest::Client::new()
            .delete(format!("{}/_sandbox/log", self.sandbox.base_url()))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}

fn load(dir: &Path) -> anyhow::Result<DesiredState> {
    flightdeck::spec::load_environment(dir, flightdeck::backend::profile_of)
        .map_err(|d| anyhow::anyhow!("{d}"))
}

/// One phase: read live, plan, apply. Returns (steps executed, wall time).
async fn run_phase(
    backend: &dyn Backend,
    desired: &DesiredState,
    concurrency: usize,
) -> anyhow::Result<(usize, Duration)> {
    let started = Instant::now();
    let live = backend.read_live().await?;
    let p = plan::plan(
        desired,
        &live,
        &PlanOptions::default(),
        flightdeck::backend::profile_of(&desired.environment.target),
    )
    .map_err(|r| anyhow::anyhow!("plan refused: {r:?}"))?;
    let opts = ApplyOptions {
        concurrency,
        dry_run: false,
    };
    let report = apply::apply(&p, backend, &opts, &CancellationToken::new()).await;
    if let Some(e) = report.error() {
        anyhow::bail!("apply failed:\n{e}");
    }
    Ok((report.results.len(), started.elapsed()))
}

struct Row {
    phase: &'static str,
    steps: usize,
    wall: Duration,
    sequential: Duration,
}

async fn bench(endpoints: usize, delay: Duration, concurrency: usize) -> anyhow::Result<()> {
    let b = Bench::start(endpoints, delay).await?;
    let mut rows = Vec::new();
    for (phase, name) in PHASES.iter().enumerate() {
        let desired = b.write_phase(phase)?;
        let backend = b.backend(&desired)?;
        let (steps, wall) = run_phase(&backend, &desired, concurrency).await?;
        rows.push(Row {
            phase: name,
            steps,
            wall,
            sequential: delay * steps as u32,
        });
    }

    println!("\n{endpoints} endpoints, operation delay {delay:?}, concurrency {concurrency}");
    println!(
        "{:<18} {:>6} {:>10} {:>15} {:>8}",
        "phase", "steps", "wall", "sequential min", "speedup"
    );
    let secs = |d: Duration| format!("{:.1}s", d.as_secs_f64());
    for r in &rows {
        println!(
            "{:<18} {:>6} {:>10} {:>15} {:>7.1}x",
            r.phase,
            r.steps,
            secs(r.wall),
            secs(r.sequential),
            r.sequential.as_secs_f64() / r.wall.as_secs_f64()
        );
    }
    let steps: usize = rows.iter().map(|r| r.steps).sum();
    let wall: Duration = rows.iter().map(|r| r.wall).sum();
    let sequential: Duration = rows.iter().map(|r| r.sequential).sum();
    println!(
        "{:<18} {:>6} {:>10} {:>15} {:>7.1}x",
        "total",
        steps,
        secs(wall),
        secs(sequential),
        sequential.as_secs_f64() / wall.as_secs_f64()
    );

    // Steady state: the last desired state applied again.
    let desired = b.write_phase(PHASES.len() - 1)?;
    let backend = b.backend(&desired)?;
    b.clear_log().await?;
    let (steps, wall) = run_phase(&backend, &desired, concurrency).await?;
    let log = b.log().await?;
    let reads = log.iter().filter(|e| e["method"] == "GET").count();
    let writes = log.len() - reads;
    println!(
        "steady-state re-apply: {steps} steps, {reads} reads ({:.2}/endpoint), {writes} writes ({:.2}/endpoint), {}",
        reads as f64 / endpoints as f64,
        writes as f64 / endpoints as f64,
        secs(wall)
    );
    if steps != 0 || writes != 0 || reads > 2 * endpoints {
        anyhow::bail!("steady state is not quiet: {steps} steps, {reads} reads, {writes} writes");
    }
    b.sandbox.shutdown().await;
    Ok(())
}

fn env_or<T>(name: &str, default: T, parse: impl Fn(&str) -> Option<T>) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(raw) => parse(&raw).ok_or_else(|| anyhow::anyhow!("{name}={raw:?} is not valid")),
        Err(_) => Ok(default),
    }
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; there are no other arguments.
    let endpoints = env_or("ROLLOUT_ENDPOINTS", 50usize, |s| s.parse().ok())?;
    let delay = env_or("ROLLOUT_DELAY", Duration::from_secs(1), |s| {
        humantime::parse_duration(s).ok()
    })?;
    let concurrency = env_or("ROLLOUT_CONCURRENCY", vec![50usize, 8], |s| {
        s.split(',').map(|c| c.trim().parse().ok()).collect()
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        for c in concurrency {
            bench(endpoints, delay, c).await?;
        }
        Ok(())
    })
}
