//! Load + validate + plan at 10, 1,000 and 10,000 endpoints with 2–4 deployments each.
//!
//! Run: `cargo bench --bench plan` (figures in docs/benchmarks.md). The environment is written
//! to a temp directory once per size, one combined-form file per endpoint, as users lay it out.
//! The live state differs from the desired state on every fourth endpoint (a traffic shift and
//! a scale), so the planner does real work and not only equality checks.

use std::fmt::Write;
use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flightdeck::model::{LiveState, effective};
use flightdeck::plan::{PlanOptions, plan};
use flightdeck::spec;

const COLOURS: &[&str] = &["blue", "green", "red", "teal"];

fn endpoint_yaml(i: usize) -> String {
    let n = 2 + i % 3;
    let mut y = format!("name: ep-{i:05}\nauth_mode: key\ntraffic:\n");
    for (k, c) in COLOURS.iter().take(n).enumerate() {
        let w = if k == 0 { 100 } else { 0 };
        let _ = writeln!(y, "  {c}: {w}");
    }
    y.push_str("deployments:\n");
    for c in COLOURS.iter().take(n) {
        let _ = write!(
            y,
            "  - name: {c}\n    model: azureml:model-{i}:1\n    environment: azureml:env:3\n    \
             instance_type: Standard_DS3_v2\n    instance_count: 2\n    request_settings:\n      \
             request_timeout_ms: 5000\n    readiness_probe:\n      period: 10\n"
        );
    }
    y
}

fn write_environment(dir: &Path, endpoints: usize) {
    std::fs::write(
        dir.join("environment.yaml"),
        "name: bench\ntarget:\n  state_file:\n    path: .live.json\n",
    )
    .expect("write environment.yaml");
    for i in 0..endpoints {
        std::fs::write(dir.join(format!("ep-{i:05}.yml")), endpoint_yaml(i))
            .expect("write endpoint");
    }
}

/// Live = desired, except every fourth endpoint: green took 10% and blue has one instance.
fn drifted_live(desired: &flightdeck::model::DesiredState) -> LiveState {
    let mut live = LiveState::from_desired(desired);
    for (i, e) in live.endpoints.values_mut().enumerate() {
        if i % 4 == 0 {
            e.traffic = effective(&[("blue".to_string(), 90), ("green".to_string(), 10)].into());
            if let Some(b) = e.deployments.get_mut("blue") {
                b.settings.instance_count = Some(1);
            }
        }
    }
    live
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan");
    group.sample_size(10);
    for &n in &[10usize, 1_000, 10_000] {
        let dir = tempfile::tempdir().expect("tempdir");
        write_environment(dir.path(), n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("load_validate", n), &n, |b, _| {
            b.iter(|| {
                black_box(
                    spec::load_environment(dir.path(), flightdeck::backend::profile_of)
                        .expect("valid"),
                )
            })
        });
        let desired =
            spec::load_environment(dir.path(), flightdeck::backend::profile_of).expect("valid");
        let live = drifted_live(&desired);
        let opts = PlanOptions::default();
        let steps = plan(
            &desired,
            &live,
            &opts,
            flightdeck::backend::profile_of(&desired.environment.target),
        )
        .expect("plan")
        .steps
        .len();
        assert!(
            steps >= n / 4,
            "the bench plans real changes ({steps} steps)"
        );
        group.bench_with_input(BenchmarkId::new("plan", n), &n, |b, _| {
            b.iter(|| {
                black_box(
                    plan(
                        &desired,
                        &live,
                        &opts,
                        flightdeck::backend::profile_of(&desired.environment.target),
                    )
                    .expect("plan"),
                )
            })
        });
        group.bench_with_input(BenchmarkId::new("load_validate_plan", n), &n, |b, _| {
            b.iter(|| {
                let d = spec::load_environment(dir.path(), flightdeck::backend::profile_of)
                    .expect("valid");
                black_box(
                    plan(
                        &d,
                        &live,
                        &opts,
                        flightdeck::backend::profile_of(&d.environment.target),
                    )
                    .expect("plan"),
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
