//! Peak memory and time of reading hostile environment trees (docs/benchmarks.md, "Hostile
//! trees"). Each case builds its input first, resets the peak-RSS mark (`/proc/self/clear_refs`,
//! "5"), then reads the tree once through `source::tree` and prints the time, the process's peak
//! resident memory (VmHWM) and how far it rose above the resident memory before the read.
//!
//! `cargo bench --bench hostile`

use std::path::Path;
use std::time::Instant;

use flightdeck::source::read_tree;
use flightdeck::source::tree::read_dir;
use git2::{Oid, Repository, Signature};

/// (VmRSS, VmHWM) in KiB.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
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

/// A commit whose `environments/dev/many/` names one blob of `bytes` from `paths` paths.
fn one_blob_many_paths(repo: &Repository, bytes: usize, paths: usize) -> Oid {
    let blob = repo.blob(&vec![0u8; bytes]).unwrap();
    let mut many = repo.treebuilder(None).unwrap();
    for i in 0..paths {
        many.insert(format!("{i}.json"), blob, 0o100644).unwrap();
    }
    let mut tree = many.write().unwrap();
    for name in ["many", "dev", "environments"] {
        let mut parent = repo.treebuilder(None).unwrap();
        parent.insert(name, tree, 0o040000).unwrap();
        tree = parent.write().unwrap();
    }
    let tree = repo.find_tree(tree).unwrap();
    let sig = Signature::now("bench", "bench@example.com").unwrap();
    repo.commit(None, &sig, &sig, "hostile", &tree, &[])
        .unwrap()
}

fn repo_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                pending.push(e.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

fn measure(case: &str, read: impl FnOnce() -> String) {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (before, _) = memory();
    let started = Instant::now();
    let outcome = read();
    let elapsed = started.elapsed();
    let (_, peak) = memory();
    println!(
        "{case}: {:.1} ms, peak RSS {:.1} MiB (+{:.1} MiB over {:.1} MiB before): {outcome}",
        elapsed.as_secs_f64() * 1e3,
        peak as f64 / 1024.0,
        peak.saturating_sub(before) as f64 / 1024.0,
        before as f64 / 1024.0,
    );
}

fn main() {
    let env = Path::new("environments/dev");
    for (bytes, paths) in [(2 << 20, 10_000), (1 << 20, 65)] {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let commit = one_blob_many_paths(&repo, bytes, paths);
        let size = repo_size(dir.path());
        let case = format!(
            "git: one {} KiB blob from {paths} paths (repository {} KiB)",
            bytes >> 10,
            size >> 10
        );
        measure(&case, || match read_tree(&repo, commit, env) {
            Ok(tree) => format!("read {} files", tree.len()),
            Err(e) => format!("refused: {e}"),
        });
    }

    let dir = tempfile::tempdir().unwrap();
    let env_dir = dir.path().join("env");
    std::fs::create_dir(&env_dir).unwrap();
    let first = env_dir.join("0.json");
    std::fs::write(&first, vec![b' '; 1 << 20]).unwrap();
    for i in 1..10_000 {
        std::fs::hard_link(&first, env_dir.join(format!("{i}.json"))).unwrap();
    }
    measure(
        "disk: 10,000 hard links to one 1 MiB file",
        || match read_dir(&env_dir, Path::new("env")) {
            Ok(tree) => format!("read {} files", tree.len()),
            Err(e) => format!("refused: {e}"),
        },
    );
}
