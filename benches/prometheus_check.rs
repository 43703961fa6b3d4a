//! The Prometheus provider against a real Prometheus server: a CI-only check (issue #12), run by
//! `scripts/check-prometheus.sh` (which fails when no `prometheus` binary is there) as
//! `cargo bench --locked --bench prometheus_check --profile dev`. `cargo test` never builds it;
//! there the provider runs against recorded answers (crates/prometheus/tests/).
//!
//! It starts the sandbox in-process with endpoint `fraud`: `blue` 90 %, `green` 10 % (green with
//! an injected error rate and latency) and `idle` 0 %; starts `$PROMETHEUS_BIN` (or `prometheus`)
//! scraping the sandbox's `/metrics` every second; sends scoring traffic through the split; waits
//! until Prometheus holds every request and at least 3 scrapes of it; then reads requests, error
//! rate, p95 and p99 of every deployment through `PrometheusProvider` with the default Istio
//! templates [PROM P10] and compares them with what was sent. It prints the figures and exits 1
//! on any mismatch. Prometheus is killed on every exit path (success, failure, panic, Ctrl-C).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use flightdeck_core::metrics::{MetricsProvider, MetricsRequest, Readings, Signal, Window};
use flightdeck_prometheus::{PrometheusConfig, PrometheusProvider};
use flightdeck_testkit::sandbox::Env;
use serde_json::{Value, json};

const ENDPOINT: &str = "fraud";
/// Every 5th scoring request of green answers 500 (the sandbox's fault is deterministic).
const GREEN_ERROR_RATE: f64 = 0.2;
/// Green's injected latency: Istio bucket (250, 500] [PROM P8], so its p95 / p99 lie in there.
const GREEN_LATENCY_MS: f64 = 300.0;
/// The upper bound of the Istio bucket below the injected latency.
const BUCKET_BELOW_MS: f64 = 250.0;
/// The bucket that holds the injected latency.
const BUCKET_MS: f64 = 500.0;
/// Concurrent senders, one request each per tick.
const SENDERS: usize = 8;
const TICK: Duration = Duration::from_millis(50);
/// Traffic lasts this long: at least 6 scrapes at 1 s.
const TRAFFIC: Duration = Duration::from_secs(8);
/// Longest wait for Prometheus to start, to scrape, to catch up. Generous: a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(60);
/// `increase()` extrapolates to the window's edges [PROM P10]: allowed relative difference to
/// the requests sent.
const REQUESTS_TOLERANCE: f64 = 0.25;
/// Allowed absolute difference of the error rate to the injected one (the 5xx series starts a
/// few requests later than the 2xx one, and both are extrapolated).
const ERROR_RATE_TOLERANCE: f64 = 0.05;

/// A running Prometheus; killed and reaped when dropped, so on every way out of `run`.
struct Prometheus {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_prometheus(dir: &std::path::Path, scrape: &str) -> Result<Prometheus> {
    let bin = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into());
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: sandbox\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: ['{scrape}']\n"
        ),
    )?;
    let port = free_port()?;
    let log = dir.join("prometheus.log");
    let log_file = std::fs::File::create(&log)?;
    let child = Command::new(&bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("cannot start {bin}"))?;
    Ok(Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        log,
    })
}

/// Polls `check` until it returns `Some`, for at most [`PATIENCE`].
async fn wait_for<T, F, Fut>(what: &str, prom: &mut Prometheus, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let give_up = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = prom.child.try_wait()? {
            bail!(
                "prometheus exited ({status}) while waiting for {what}:\n{}",
                prom.log_tail()
            );
        }
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > give_up {
            bail!(
                "gave up after {PATIENCE:?} waiting for {what}:\n{}",
                prom.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One raw instant query; the first sample's value, `None` for an empty vector or an error.
async fn instant(http: &reqwest::Client, prom: &str, query: &str) -> Option<f64> {
    let body: Value = http
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// Requests sent, by (answering deployment, status).
type Sent = BTreeMap<(String, u16), u64>;

async fn send_traffic(env: &Env, url: &str, key: &str) -> Sent {
    let mut tasks = Vec::new();
    for _ in 0..SENDERS {
        let (http, url, key) = (env.http.clone(), url.to_string(), key.to_string());
        tasks.push(tokio::spawn(async move {
            let mut sent = Sent::new();
            let end = tokio::time::Instant::now() + TRAFFIC;
            let mut tick = tokio::time::interval(TICK);
            while tick.tick().await < end {
                let r = http
                    .post(&url)
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(r#"{"data": [[1, 2, 3]]}"#)
                    .send()
                    .await
                    .expect("scoring request");
                let deployment = r
                    .headers()
                    .get("azureml-model-deployment")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                *sent.entry((deployment, r.status().as_u16())).or_default() += 1;
            }
            sent
        }));
    }
    let mut all = Sent::new();
    for t in tasks {
        for (k, n) in t.await.expect("sender") {
            *all.entry(k).or_default() += n;
        }
    }
    all
}

struct Checks(Vec<(bool, String)>);

impl Checks {
    fn check(&mut self, ok: bool, what: String) {
        println!("  [{}] {what}", if ok { "ok" } else { "FAIL" });
        self.0.push((ok, what));
    }
}

fn value(readings: &Readings, deployment: &str, signal: Signal) -> Option<f64> {
    readings
        .get(deployment)
        .and_then(|s| s.get(&signal))
        .and_then(|r| r.value)
}

async fn run() -> Result<bool> {
    let env = Env::start().await;
    env.create_endpoint(ENDPOINT, "Key").await;
    for d in ["blue", "green", "idle"] {
        env.create_deployment(ENDPOINT, d, "model-1").await;
    }
    let (status, body) = env
        .set_traffic(ENDPOINT, json!({"blue": 90, "green": 10, "idle": 0}), None)
        .await;
    if !status.is_success() {
        bail!("setting traffic failed: {status} {body}");
    }
    env.add_fault(json!({"endpoint": ENDPOINT, "deployment": "green",
        "error_rate": GREEN_ERROR_RATE, "latency_ms": GREEN_LATENCY_MS as u64}))
        .await;
    let (score_url, key) = env.scoring(ENDPOINT).await;

    let dir = tempfile::tempdir()?;
    let scrape = env.base.trim_start_matches("http://").to_string();
    let mut prom = start_prometheus(dir.path(), &scrape)?;
    let http = reqwest::Client::new();
    let prom_url = prom.url.clone();
    let targets = format!("{prom_url}/api/v1/targets");
    let (h, t, sc) = (&http, &targets, &scrape);
    wait_for("the sandbox target to be up", &mut prom, || async move {
        let body: Value = h.get(t).send().await.ok()?.json().await.ok()?;
        let active = body["data"]["activeTargets"].as_array()?;
        active
            .iter()
            .any(|t| {
                t["health"] == "up"
                    && t["scrapeUrl"]
                        .as_str()
                        .is_some_and(|u| u.contains(sc.as_str()))
            })
            .then_some(())
    })
    .await?;
    println!("prometheus {prom_url} scrapes http://{scrape}/metrics every 1s; target up");

    let start = Utc::now();
    let sent = send_traffic(&env, &score_url, &key).await;
    let count = |d: &str, pred: &dyn Fn(u16) -> bool| -> u64 {
        sent.iter()
            .filter(|((dep, s), _)| dep == d && pred(*s))
            .map(|(_, n)| n)
            .sum()
    };
    let total: u64 = sent.values().sum();
    println!("sent {total} scoring requests in {TRAFFIC:?}: {sent:?}");

    // Prometheus has every request once the scraped counters add up to what was sent, and the
    // window holds at least 3 scrapes of each series read below.
    let sel = |d: &str| {
        format!(
            r#"reporter="destination",destination_service_name="{ENDPOINT}",destination_version="{d}""#
        )
    };
    for d in ["blue", "green"] {
        let want = count(d, &|_| true) as f64;
        let q = format!("sum(istio_requests_total{{{}}})", sel(d));
        let (http, prom_url) = (&http, &prom_url);
        let q = &q;
        wait_for(
            &format!("{d}'s counter to reach {want}"),
            &mut prom,
            || async move { (instant(http, prom_url, q).await? == want).then_some(()) },
        )
        .await?;
    }
    let scrapes = format!(
        "min(count_over_time(istio_requests_total{{{},response_code=\"200\"}}[1m]))",
        sel("blue")
    );
    let samples = {
        let (http, prom_url, scrapes) = (&http, &prom_url, &scrapes);
        wait_for("3 scrapes of the traffic", &mut prom, || async move {
            instant(http, prom_url, scrapes).await.filter(|n| *n >= 3.0)
        })
        .await?
    };
    let end = Utc::now();
    println!("prometheus holds every request; {samples} scrapes of blue's 200 series");

    let mut config = PrometheusConfig::new(prom_url.parse()?, "ws");
    config.request_timeout = Duration::from_secs(10);
    let provider = PrometheusProvider::new(config)?;
    let request = MetricsRequest {
        endpoint: ENDPOINT.into(),
        deployments: vec!["blue".into(), "green".into(), "idle".into()],
        signals: Signal::ALL.to_vec(),
        window: Window {
            start: start - chrono::Duration::seconds(2),
            end,
        },
    };
    let readings = provider.read(&request).await?;
    let secs = (end - request.window.start).num_seconds();
    println!("readings through PrometheusProvider over [{secs}s] ending {end}:");
    for (d, signals) in &readings {
        let figures: Vec<String> = signals
            .iter()
            .map(|(s, r)| format!("{s}={:?}", r.value))
            .collect();
        println!("  {d}: {}", figures.join(" "));
    }

    let mut checks = Checks(Vec::new());
    for d in ["blue", "green"] {
        let want = count(d, &|_| true) as f64;
        let got = value(&readings, d, Signal::Requests);
        checks.check(
            got.is_some_and(|g| (g - want).abs() <= want * REQUESTS_TOLERANCE),
            format!("{d} requests {got:?} within {REQUESTS_TOLERANCE} of the {want} sent"),
        );
    }
    let green_all = count("green", &|_| true) as f64;
    let green_5xx = count("green", &|s| (500..600).contains(&s)) as f64;
    checks.check(
        green_all >= 20.0 && (green_5xx / green_all - GREEN_ERROR_RATE).abs() < 0.02,
        format!("the sandbox answered {green_5xx} of green's {green_all} with a 5xx (injected {GREEN_ERROR_RATE})"),
    );
    let green_err = value(&readings, "green", Signal::ErrorRate);
    checks.check(
        green_err.is_some_and(|e| (e - GREEN_ERROR_RATE).abs() <= ERROR_RATE_TOLERANCE),
        format!(
            "green error_rate {green_err:?} within {ERROR_RATE_TOLERANCE} of {GREEN_ERROR_RATE}"
        ),
    );
    let blue_err = value(&readings, "blue", Signal::ErrorRate);
    checks.check(
        count("blue", &|s| s >= 500) == 0 && blue_err == Some(0.0),
        format!("blue error_rate {blue_err:?} is 0 (no 5xx sent)"),
    );
    for signal in [Signal::LatencyP95, Signal::LatencyP99] {
        let green = value(&readings, "green", signal);
        checks.check(
            green.is_some_and(|v| (BUCKET_BELOW_MS..=BUCKET_MS).contains(&v)),
            format!(
                "green {signal} {green:?} in the bucket of the injected {GREEN_LATENCY_MS} ms ({BUCKET_BELOW_MS}..={BUCKET_MS})"
            ),
        );
        let blue = value(&readings, "blue", signal);
        checks.check(
            blue.is_some_and(|v| v < BUCKET_BELOW_MS),
            format!("blue {signal} {blue:?} below {BUCKET_BELOW_MS} ms (no latency injected)"),
        );
    }
    for signal in Signal::ALL {
        let idle = readings.get("idle").and_then(|s| s.get(&signal));
        checks.check(
            idle.is_some_and(|r| r.value.is_none()),
            format!(
                "idle (0 %, no request) {signal} is no data: {:?}",
                idle.map(|r| r.value)
            ),
        );
    }
    let failed = checks.0.iter().filter(|(ok, _)| !ok).count();
    println!(
        "prometheus check: {} of {} checks held",
        checks.0.len() - failed,
        checks.0.len()
    );
    drop(prom);
    Ok(failed == 0)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = run() => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    match outcome {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("prometheus check FAILED: a reading does not match what was sent");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("prometheus check FAILED: {e:#}");
            std::process::exit(1);
        }
    }
}
