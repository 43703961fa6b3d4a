//! Issue #15: rendering the dashboard at 1,000 endpoints costs under 1 MiB and under 5 ms per
//! request. Not a criterion bench: one scenario, figures printed as `key: value` lines.
//!
//! Run: `cargo bench --bench dashboard` (release). `DASHBOARD_BENCH_ENDPOINTS=N` changes the
//! endpoint count. What is measured: the handler's work, in-process, on a board as the agent
//! keeps it (1,000 endpoints of two deployments, 10 of them in a rollout with two gates of 120
//! readings each, 50 recent events): `render::page` under the board's read lock, as `GET /`
//! does. Memory is the peak of bytes allocated during one render above what was allocated
//! before it (a counting global allocator), i.e. what one request adds to the process's heap
//! (the page text included); time is wall time per render over many renders.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use flightdeck::dashboard::board::{DeploymentBar, EndpointPanel, Hub, Reconciled};
use flightdeck::dashboard::render;
use flightdeck::rollout::RolloutView;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const GOAL_BYTES: usize = 1024 * 1024;
const GOAL_MS: f64 = 5.0;

fn view(i: usize, reading: f64) -> RolloutView {
    let verdicts: Vec<serde_json::Value> = ["error_rate < 2%", "p99 < 1.5x baseline"]
        .iter()
        .map(|g| {
            serde_json::json!({
                "gate": g,
                "signal": "error_rate",
                "comparison": "below",
                "query": "q",
                "window": {"start": "2026-12-01T10:00:00Z", "end": "2026-12-01T10:01:00Z"},
                "observed": reading,
                "threshold": 0.02,
                "result": "pass",
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "endpoint": format!("ep-{i:04}"),
        "state": "baking",
        "stage": 2,
        "stages": 3,
        "candidate": "green",
        "declared": {"green": 100},
        "traffic": {"blue": 50, "green": 50},
        "message": "stage 2/3 at blue 50 / green 50: bake, 41s left",
        "next_check_seconds": 41,
        "verdicts": verdicts,
    }))
    .unwrap()
}

fn board(endpoints: usize) -> Hub {
    let hub = Hub::new(
        "https://git.example.com/o/r.git (branch main)".into(),
        Some("https://git.example.com/o/r/commit/{sha}".into()),
    );
    let panels = (0..endpoints)
        .map(|i| EndpointPanel {
            name: format!("ep-{i:04}"),
            deployments: ["blue", "green"]
                .iter()
                .map(|d| DeploymentBar {
                    name: d.to_string(),
                    weight: 50,
                    mirror: 0,
                    state: "ready",
                    detail: None,
                })
                .collect(),
            scoring: vec![("blue".into(), 0.5), ("green".into(), 0.5)],
        })
        .collect();
    hub.observed("environments/prod", panels);
    for tick in 0..120 {
        let views: Vec<RolloutView> = (0..10.min(endpoints))
            .map(|i| view(i, 0.001 * tick as f64))
            .collect();
        hub.reconciled(Reconciled {
            env: "environments/prod",
            revision: "0123456789abcdef0123456789abcdef01234567",
            applied: true,
            result: "applied",
            error: None,
            rollouts: &views,
            steps: vec![("ep-0001: set traffic blue 50 / green 50".into(), true)],
        });
    }
    hub
}

fn main() {
    let endpoints: usize = std::env::var("DASHBOARD_BENCH_ENDPOINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    println!("goal: GET / at {endpoints} endpoints allocates < 1 MiB and takes < 5 ms per request");
    let hub = board(endpoints);
    let now = flightdeck::clock::now_utc();
    let size = hub.read(|b| render::page(b, now)).len();
    let mut peak_extra = 0usize;
    let mut times = Vec::new();
    let runs = 200;
    for _ in 0..runs {
        let before = CURRENT.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let started = Instant::now();
        let page = hub.read(|b| render::page(b, now));
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        peak_extra = peak_extra.max(PEAK.load(Ordering::Relaxed) - before);
        std::hint::black_box(page);
    }
    times.sort_by(f64::total_cmp);
    let median = times[runs / 2];
    let p99 = times[runs * 99 / 100];
    println!("endpoints: {endpoints}");
    println!("page_bytes: {size}");
    println!("peak_alloc_per_render_bytes: {peak_extra}");
    println!("render_ms_median: {median:.3}");
    println!("render_ms_p99: {p99:.3}");
    let ok = peak_extra < GOAL_BYTES && p99 < GOAL_MS;
    println!("goal_met: {ok}");
    if !ok {
        std::process::exit(1);
    }
}
