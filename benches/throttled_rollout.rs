//! Polling that respects the platform (issue #13 item 4): a 50-endpoint release (green→blue,
//! after the same release blue→green unthrottled as a reference) by ONE
//! `flightdeck apply` of the real binary (production poll floor and cap: `--poll-interval-min`
//! 1 s, `--poll-interval-max` 30 s; `--concurrency 50`) against an in-process sandbox with
//! ARM-like throttling on (a token bucket per principal for reads and for writes, see
//! crates/sandbox/src/throttle.rs).
//!
//! The throttle-imposed minimum is the time the buckets force on the requests the release
//! needs. "Needed" is counted from the unthrottled reference run of the same release (every
//! request in `/_sandbox/log` during it: nothing in it exists because of throttling), so 429s and
//! the extra polls throttling causes are not counted. For each kind a full bucket serves
//! `capacity` at once and the rest come back at `per_second`:
//! `max(0, needed - capacity) / per_second`; the throttle bound is the larger of the two kinds.
//! The release's own critical path (each endpoint's serial chain of writes and polls) is the
//! unthrottled time; the bench reports both and the ratio against the larger ("the floor").
//! It prints:
//! - elapsed / max(throttle bound, unthrottled time) (goal ≤ 1.2), and / the throttle bound;
//! - 429s left unretried: a 429 answer not followed by another request to the same method and
//!   path (goal 0), and the 429s in all;
//! - requests per write (all requests over answered writes), throttled and unthrottled;
//! - the max request rate, requests in any 1 s window (the bucket allows capacity + per_second).
//!
//! Run: `cargo bench --bench throttled_rollout` (about 30 s). Knobs: `THROTTLED_ENDPOINTS` (50),
//! `THROTTLED_READS` (`60/30`: capacity/per second), `THROTTLED_WRITES` (`20/10`);
//! `THROTTLED_DUMP=1` also prints the throttled run's request log (time, method, status, path).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use flightdeck::sandbox::{BucketSpec, SandboxConfig};
use flightdeck_testkit::azureml_sandbox::{Env, flow_file};
use serde_json::{Value, json};

fn name(i: usize) -> String {
    format!("ep-{i:02}")
}

fn endpoint_file(i: usize, endpoint: &str) -> String {
    std::fs::read_to_string(flow_file(i))
        .unwrap()
        .replace("my-endpoint", endpoint)
}

fn bucket(var: &str, default: &str) -> BucketSpec {
    let raw = std::env::var(var).unwrap_or_else(|_| default.into());
    let (c, r) = raw.split_once('/').expect("CAPACITY/PER_SECOND");
    BucketSpec {
        capacity: c.parse().expect("capacity"),
        per_second: r.parse().expect("per second"),
    }
}

async fn apply(env: &Env, dir: &str) -> (i32, String) {
    let out = env
        .command(&["apply", dir, "--concurrency", "50"])
        // Production poll cap (the test harness sets 20 ms).
        .env("FLIGHTDECK_POLL_INTERVAL_MAX", "30s")
        .stdout(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn is_read(e: &Value) -> bool {
    e["method"] == "GET" || e["method"] == "HEAD"
}

fn at(e: &Value) -> DateTime<Utc> {
    e["time"].as_str().unwrap().parse().unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("THROTTLED_ENDPOINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let reads = bucket("THROTTLED_READS", "60/30");
    let writes = bucket("THROTTLED_WRITES", "20/10");
    println!(
        "goal: elapsed ≤ 1.2 × max(the throttle-imposed minimum, the unthrottled time), 0 429s left unretried; \
         {n} endpoints blue→green, \
         reads {}/{} per s, writes {}/{} per s",
        reads.capacity, reads.per_second, writes.capacity, writes.per_second
    );
    let env = Env::start_with(SandboxConfig {
        provisioning_delay: Duration::from_millis(500),
        page_size: 100,
        ..Default::default()
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let d = dir.to_str().unwrap().to_string();
    env.write_environment(&dir, "");
    for i in 0..n {
        std::fs::write(
            dir.join(format!("{}.yml", name(i))),
            endpoint_file(0, &name(i)),
        )
        .unwrap();
    }
    let (code, stderr) = apply(&env, &d).await;
    assert_eq!(code, 0, "blue lands on {n} endpoints:\n{stderr}");

    // The same release unthrottled first (blue→green), as the reference for what the machine
    // and the platform's own delays take; then green→blue, the same shape of work, throttled.
    for i in 0..n {
        std::fs::write(
            dir.join(format!("{}.yml", name(i))),
            endpoint_file(5, &name(i)),
        )
        .unwrap();
    }
    env.clear_log().await;
    let started = Instant::now();
    let (code, stderr) = apply(&env, &d).await;
    let unthrottled = started.elapsed();
    assert_eq!(
        code, 0,
        "the unthrottled release reaches green on {n} endpoints:\n{stderr}"
    );
    let reference = env.log().await;
    for i in 0..n {
        std::fs::write(
            dir.join(format!("{}.yml", name(i))),
            endpoint_file(0, &name(i)),
        )
        .unwrap();
    }
    env.fault(json!({"throttle": {"reads": reads, "writes": writes}}))
        .await;
    env.clear_log().await;
    let started = Instant::now();
    let (code, stderr) = apply(&env, &d).await;
    let elapsed = started.elapsed();
    assert_eq!(
        code, 0,
        "the throttled release reaches blue on {n} endpoints:\n{stderr}"
    );
    let log = env.log().await;
    env.fault(json!({"throttle": null})).await;

    let answered: Vec<&Value> = log.iter().filter(|e| e["status"] != 429).collect();
    let throttled: Vec<usize> = (0..log.len())
        .filter(|&i| log[i]["status"] == 429)
        .collect();
    let unretried = throttled
        .iter()
        .filter(|&&i| {
            !log[i + 1..]
                .iter()
                .any(|e| e["method"] == log[i]["method"] && e["path"] == log[i]["path"])
        })
        .count();
    let answered_writes = answered.iter().filter(|e| !is_read(e)).count() as f64;
    // Needed: what the same release sends with no throttle (no 429s, no throttle-made polls).
    let needed_reads = reference.iter().filter(|e| is_read(e)).count() as f64;
    let needed_writes = reference.len() as f64 - needed_reads;
    let min_for = |needed: f64, b: BucketSpec| ((needed - b.capacity) / b.per_second).max(0.0);
    let bound_reads = min_for(needed_reads, reads);
    let bound_writes = min_for(needed_writes, writes);
    let bound = bound_reads.max(bound_writes);
    let floor = bound.max(unthrottled.as_secs_f64());

    // Requests (429s included) in any 1 s window.
    let times: Vec<DateTime<Utc>> = log.iter().map(at).collect();
    let mut max_rate = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= chrono::Duration::seconds(1) {
            lo += 1;
        }
        max_rate = max_rate.max(hi - lo + 1);
    }
    let mut by_status: BTreeMap<u64, usize> = BTreeMap::new();
    for e in &log {
        *by_status
            .entry(e["status"].as_u64().unwrap_or(0))
            .or_default() += 1;
    }
    for i in 0..n {
        let live: BTreeMap<String, i64> = env
            .traffic(&name(i))
            .await
            .into_iter()
            .filter(|(_, w)| *w > 0)
            .collect();
        assert_eq!(live, [("blue".to_string(), 100)].into(), "{}", name(i));
    }
    println!(
        "needed (the unthrottled run): {needed_reads} reads, {needed_writes} writes; throttled run: {} requests \
         ({answered_writes} answered writes, {} 429s), statuses {by_status:?}",
        log.len(),
        throttled.len()
    );
    println!(
        "throttle bound {bound:.1}s (reads {bound_reads:.1}s, writes {bound_writes:.1}s); \
         the release's own critical path (unthrottled) {:.1}s",
        unthrottled.as_secs_f64()
    );
    println!(
        "elapsed {:.1}s: {:.2}x the larger of the two, {floor:.1}s (goal ≤ 1.2); {:.2}x the throttle bound",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() / floor.max(f64::EPSILON),
        elapsed.as_secs_f64() / bound.max(f64::EPSILON)
    );
    println!("429s left unretried: {unretried} (goal 0)");
    println!(
        "requests per write: {:.2} throttled, {:.2} unthrottled",
        log.len() as f64 / answered_writes.max(1.0),
        reference.len() as f64 / needed_writes.max(1.0)
    );
    if std::env::var_os("THROTTLED_DUMP").is_some() {
        for e in &log {
            println!(
                "{} {} {} {}",
                e["time"], e["method"], e["status"], e["path"]
            );
        }
    }
    println!(
        "max request rate: {max_rate} in 1 s (bucket allows {} reads + {} writes in the first second, then {} + {} per s)",
        reads.capacity + reads.per_second,
        writes.capacity + writes.per_second,
        reads.per_second,
        writes.per_second
    );
    env.sandbox.shutdown().await;
}
