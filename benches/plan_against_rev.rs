//! Issue #13 item 1: `flightdeck plan env --against-rev HEAD` at 1,000 and 10,000 endpoint
//! files with 1% of them changed in the work tree, with a cold cache (none under
//! `.git/flightdeck`) and a warm one (the previous run's). Not a criterion bench: each run is
//! the real binary in a child process, so its wall time and peak RSS (`ru_maxrss` from
//! `wait4`, the child's VmHWM) are its own. `git diff --stat HEAD` on the same tree is timed
//! for scale.
//!
//! Goals: 10,000 files < 0.3 s and < 64 MiB peak; 1,000 files < 50 ms (warm cache).
//!
//! Run: `cargo bench --bench plan_against_rev` (figures in docs/benchmarks.md).
//! `PLAN_AGAINST_REV_BEFORE=/path/to/flightdeck` also measures another build of the binary (an
//! older one that parses both revisions in full) on the same trees, for the before figures.
//! `PLAN_AGAINST_REV_SIZES=1000` changes the sizes.

use std::fmt::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use git2::{IndexAddOption, Repository, Signature};

const COLOURS: &[&str] = &["blue", "green", "red", "teal"];
/// Warm runs per size; the median is printed.
const RUNS: usize = 5;

/// The same combined-form endpoint file as benches/plan.rs: 2–4 deployments.
fn endpoint_yaml(i: usize, count: u32) -> String {
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
             instance_type: Standard_DS3_v2\n    instance_count: {count}\n    request_settings:\n      \
             request_timeout_ms: 5000\n    readiness_probe:\n      period: 10\n"
        );
    }
    y
}

/// A repository with `n` endpoint files committed, then 1% of them changed (a scale) in the
/// work tree.
fn repository(root: &Path, n: usize) {
    let env = root.join("env");
    std::fs::create_dir_all(&env).expect("env dir");
    std::fs::write(
        env.join("environment.yaml"),
        "name: bench\ntarget:\n  state_file:\n    path: .live.json\n",
    )
    .expect("environment.yaml");
    for i in 0..n {
        std::fs::write(env.join(format!("ep-{i:05}.yml")), endpoint_yaml(i, 2)).expect("write");
    }
    let repo = Repository::init(root).expect("init");
    let mut index = repo.index().expect("index");
    index
        .add_all(["*"], IndexAddOption::DEFAULT, None)
        .expect("add");
    index.write().expect("write index");
    let tree = repo
        .find_tree(index.write_tree().expect("tree"))
        .expect("tree");
    let sig = Signature::now("bench", "bench@example.com").expect("sig");
    repo.commit(Some("HEAD"), &sig, &sig, "base", &tree, &[])
        .expect("commit");
    for i in (0..n).step_by(100) {
        std::fs::write(env.join(format!("ep-{i:05}.yml")), endpoint_yaml(i, 3)).expect("edit");
    }
}

/// One run: wall time, CPU time (user + system) and peak RSS in KiB.
type Run = (Duration, Duration, u64);

/// One run of `bin plan env --against-rev HEAD` in `root`. CPU time is printed beside wall
/// time: on a shared machine it is the steadier figure.
fn run(bin: &Path, root: &Path) -> Run {
    let started = Instant::now();
    // Reaped by `wait4` below (which also gives its peak RSS), not by `Child::wait`.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(bin)
        .args(["plan", "env", "--against-rev", "HEAD"])
        .current_dir(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn flightdeck");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter for wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet reaped; both pointers are valid for the call.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed();
    assert_eq!(reaped, pid, "wait4");
    // Exit code 1: the plan has changes (1% of the endpoints scale).
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 1,
        "plan --against-rev exits 1 (changes), got status {status}"
    );
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    (elapsed, cpu, usage.ru_maxrss as u64)
}

fn median(mut runs: Vec<Run>) -> Run {
    runs.sort();
    runs[runs.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn measure(label: &str, bin: &Path, root: &Path, n: usize) {
    let cache = root.join(".git/flightdeck/cache-v2");
    let _ = std::fs::remove_file(&cache);
    let cold = run(bin, root);
    let warm = median((0..RUNS).map(|_| run(bin, root)).collect());
    println!(
        "{label} {n} files, 1% changed: cold cache {} ({} CPU) / {} peak; warm cache {} ({} CPU) / {} peak (median of {RUNS})",
        ms(cold.0),
        ms(cold.1),
        mib(cold.2),
        ms(warm.0),
        ms(warm.1),
        mib(warm.2)
    );
}

fn main() {
    println!(
        "goal: plan --against-rev at 10,000 endpoint files, 1% changed, < 300 ms and < 64 MiB \
         peak; at 1,000 < 50 ms"
    );
    let bin = Path::new(env!("CARGO_BIN_EXE_flightdeck"));
    let before = std::env::var_os("PLAN_AGAINST_REV_BEFORE").map(std::path::PathBuf::from);
    let sizes: Vec<usize> = std::env::var("PLAN_AGAINST_REV_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000]);
    for n in sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        repository(dir.path(), n);
        measure("after: ", bin, dir.path(), n);
        if let Some(before) = &before {
            measure("before:", before, dir.path(), n);
        }
        let started = Instant::now();
        let out = Command::new("git")
            .args(["diff", "--stat", "HEAD", "--", "env"])
            .current_dir(dir.path())
            .output()
            .expect("git diff --stat");
        assert!(out.status.success(), "git diff --stat");
        println!(
            "git diff --stat HEAD at {n} files: {}",
            ms(started.elapsed())
        );
    }
}
