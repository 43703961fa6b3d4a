//! `plan`/`diff --against-rev` through the real binary with the file index cache: the output of
//! a cold run, a warm run and a run over a corrupt cache is the same; the cache lives under the
//! Git directory and nothing is written to the work tree; an unchanged invalid file is still
//! reported from its cached record.

use std::path::Path;
use std::process::{Command, Output};

use flightdeck_testkit::GitRepo;

const ENVIRONMENT: &str = "name: cached\ntarget:\n  state_file:\n    path: .live.json\n";

fn endpoint(name: &str, count: u32) -> String {
    format!(
        "name: {name}\nauth_mode: key\ntraffic:\n  blue: 100\ndeployments:\n  - name: blue\n    \
         model: azureml:m:1\n    environment: azureml:e:1\n    instance_type: Standard_DS3_v2\n    \
         instance_count: {count}\n"
    )
}

fn flightdeck(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run flightdeck")
}

fn text(out: &Output) -> (Option<i32>, String, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn repo_with_three_endpoints() -> (GitRepo, String) {
    let repo = GitRepo::new();
    repo.write("env/environment.yaml", ENVIRONMENT);
    for name in ["ep-a", "ep-b", "ep-c"] {
        repo.write(&format!("env/{name}.yml"), &endpoint(name, 1));
    }
    let rev = repo.commit("base");
    (repo, rev)
}

#[test]
fn diff_against_a_revision_gives_the_same_output_cold_warm_and_over_a_corrupt_cache() {
    let (repo, rev) = repo_with_three_endpoints();
    let dir = repo.dir.path();
    repo.write("env/ep-b.yml", &endpoint("ep-b", 2));
    let args = [
        "diff",
        "env",
        "--against-rev",
        rev.as_str(),
        "--output",
        "json",
    ];
    let cold = text(&flightdeck(&args, dir));
    assert_eq!(cold.0, Some(1), "{}", cold.2);
    let json: serde_json::Value = serde_json::from_str(&cold.1).expect("json");
    let statuses: Vec<(String, String)> = json["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (s("endpoint"), s("status"))
        })
        .collect();
    let expected = [
        ("ep-a", "unchanged"),
        ("ep-b", "changed"),
        ("ep-c", "unchanged"),
    ]
    .map(|(a, b)| (a.to_string(), b.to_string()));
    assert_eq!(statuses, expected);

    let cache = dir.join(".git/flightdeck/cache-v2");
    assert!(cache.is_file(), "the cache is under the Git directory");
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(true);
    let status = repo.repo().statuses(Some(&mut opts)).expect("status");
    // Work tree against the index: modified, new (untracked) or ignored files.
    let work_tree = git2::Status::WT_NEW
        | git2::Status::WT_MODIFIED
        | git2::Status::WT_DELETED
        | git2::Status::IGNORED;
    let dirty: Vec<String> = status
        .iter()
        .filter(|s| s.status().intersects(work_tree))
        .filter_map(|s| s.path().ok().map(str::to_string))
        .collect();
    assert_eq!(dirty, ["env/ep-b.yml"], "nothing new in the work tree");

    let warm = text(&flightdeck(&args, dir));
    assert_eq!(warm, cold, "a warm run gives the same output");
    std::fs::write(&cache, b"{\"format\":1,\"version\":\"0.1.0\",\"entr").unwrap();
    let corrupt = text(&flightdeck(&args, dir));
    assert_eq!(corrupt, cold, "a corrupt cache is ignored");
    let rewritten = std::fs::read(&cache).unwrap();
    let read = flightdeck::spec::IndexCache::from_bytes(&rewritten).expect("rewritten whole");
    assert!(!read.is_empty(), "the records are back");
}

#[test]
fn an_unchanged_invalid_file_is_still_reported_from_its_cached_record() {
    let (repo, _) = repo_with_three_endpoints();
    repo.write(
        "env/ep-c.yml",
        &format!("{}flavour: spicy\n", endpoint("ep-c", 1)),
    );
    let rev = repo.commit("ep-c gets an unknown field");
    let dir = repo.dir.path();
    repo.write("env/ep-b.yml", &endpoint("ep-b", 2));
    let args = ["plan", "env", "--against-rev", rev.as_str()];
    let full = text(&flightdeck(&["validate", "env"], dir));
    let cold = text(&flightdeck(&args, dir));
    let warm = text(&flightdeck(&args, dir));
    assert_eq!(cold.0, Some(2), "{}", cold.2);
    let first = cold.2.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("env/ep-c.yml:11:1: unknown field `flavour` in endpoint"),
        "{}",
        cold.2
    );
    assert!(
        full.2.starts_with(first),
        "the same diagnostic as a full validate: {}",
        full.2
    );
    assert_eq!(warm, cold, "the warm run reports it from the record");
}
