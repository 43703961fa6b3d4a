//! The agent's readers (Git commit snapshots and `--watch-local`) go through the same tree
//! reader as the CLI: one symlink policy, the same limits, checked before content is loaded.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flightdeck::source::tree::{EntryProblem, MAX_FILE_BYTES};
use flightdeck::source::{
    GitAuth, GitConfig, GitRef, GitSource, LocalSource, Source, SourceError, read_tree,
};
use flightdeck::spec;
use flightdeck_testkit::GitRepo;
use flightdeck_testkit::hostile::{
    ENVIRONMENT, MARKER, commit_one_blob_many_paths, write_environment,
};

fn git_source(repo: &GitRepo, cache: &Path, reference: &str) -> Arc<GitSource> {
    let config = GitConfig {
        url: repo.dir.path().display().to_string(),
        reference: GitRef::Branch(reference.into()),
        paths: vec![PathBuf::from("environments/dev")],
        cache_dir: cache.to_path_buf(),
        auth: GitAuth::default(),
    };
    Arc::new(GitSource::new(config, None).unwrap())
}

#[tokio::test]
async fn the_agent_refuses_a_commit_naming_one_large_blob_from_thousands_of_paths() {
    let repo = GitRepo::new();
    let commit = commit_one_blob_many_paths(
        repo.repo(),
        "refs/heads/main",
        "environments/dev",
        2 << 20,
        10_000,
    );

    let refused = read_tree(repo.repo(), commit, Path::new("environments/dev")).unwrap_err();
    assert!(matches!(refused, SourceError::Tree(_)), "{refused:?}");
    assert_eq!(
        refused.to_string(),
        "environments/dev: the environment holds 20000 MiB in 10005 files, more than the 64 MiB limit"
    );

    let cache = tempfile::tempdir().unwrap();
    let snapshot = git_source(&repo, cache.path(), "main")
        .fetch()
        .await
        .unwrap();
    let env = snapshot.envs[Path::new("environments/dev")]
        .as_ref()
        .unwrap_err();
    assert!(env.contains("more than the 64 MiB limit"), "{env}");
}

#[test]
fn a_blob_over_the_file_limit_is_named_and_never_loaded() {
    let repo = GitRepo::new();
    let commit = commit_one_blob_many_paths(
        repo.repo(),
        "refs/heads/main",
        "environments/dev",
        (MAX_FILE_BYTES + 1) as usize,
        1,
    );
    let tree = read_tree(repo.repo(), commit, Path::new("environments/dev")).unwrap();
    assert!(!tree.contains_key(Path::new("environments/dev/many/0.json")));
    assert_eq!(
        tree.problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>(),
        ["environments/dev/many/0.json: file is larger than the 1 MiB limit (1048577 bytes)"]
    );
    let d = spec::load_tree(
        &tree,
        Path::new("environments/dev"),
        flightdeck::backend::profile_of,
    )
    .unwrap_err();
    assert!(d.to_string().contains("many/0.json: file is larger"), "{d}");
}

#[tokio::test]
async fn agent_snapshots_name_links_that_leave_the_tree_and_still_check_the_other_files() {
    let repo = GitRepo::new();
    let env = repo.dir.path().join("environments/dev");
    write_environment(&env, ENVIRONMENT);
    std::fs::write(
        env.join("endpoint.yml"),
        "name: my-endpoint\ntraffic:\n  blue: 90\n",
    )
    .unwrap();
    std::fs::remove_file(env.join("req.json")).unwrap();
    symlink("../../../etc/passwd", env.join("req.json")).unwrap();
    symlink("nowhere.yml", env.join("gone.yml")).unwrap();
    std::fs::create_dir(env.join("sub")).unwrap();
    symlink("../sub", env.join("sub/self")).unwrap();
    repo.commit("hostile links");

    let cache = tempfile::tempdir().unwrap();
    let snapshot = git_source(&repo, cache.path(), "main")
        .fetch()
        .await
        .unwrap();
    let tree = snapshot.envs[Path::new("environments/dev")]
        .as_ref()
        .unwrap();
    let found: Vec<String> = tree.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        found,
        [
            "environments/dev/gone.yml: dangling symlink (-> nowhere.yml)",
            "environments/dev/req.json: symlink points outside the environment directory (-> ../../../etc/passwd)",
            "environments/dev/sub/self: symlink loop (-> ../sub)",
        ]
    );
    // What the agent's pipeline does with the snapshot: every problem at once.
    let d = spec::load_tree(
        tree,
        Path::new("environments/dev"),
        flightdeck::backend::profile_of,
    )
    .unwrap_err()
    .to_string();
    for wanted in [
        "environments/dev/req.json: symlink points outside",
        "environments/dev/environment.yaml:7:19: request_file `req.json`: file not found",
        "environments/dev/endpoint.yml:2:1: traffic sums to 90, expected 100",
    ] {
        assert!(d.contains(wanted), "missing {wanted:?} in:\n{d}");
    }
}

#[tokio::test]
async fn watch_local_reads_through_the_same_policy_and_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let env = tmp.path().join("environments/dev");
    write_environment(&env, ENVIRONMENT);
    std::fs::write(tmp.path().join("secret.json"), MARKER).unwrap();
    symlink("../../secret.json", env.join("leak.json")).unwrap();
    symlink("req.json", env.join("again.json")).unwrap();
    std::fs::write(env.join(".swap.yml"), "{{{").unwrap();
    let source = Arc::new(
        LocalSource::new(
            tmp.path().to_path_buf(),
            &[PathBuf::from("environments/dev")],
        )
        .unwrap(),
    );
    let snapshot = source.fetch().await.unwrap();
    let tree = snapshot.envs[Path::new("environments/dev")]
        .as_ref()
        .unwrap();
    assert_eq!(tree.problems.len(), 1, "{:?}", tree.problems);
    assert_eq!(
        tree.problems[0].path,
        Path::new("environments/dev/leak.json")
    );
    assert!(matches!(
        tree.problems[0].problem,
        EntryProblem::LinkOutside { .. }
    ));
    assert!(
        tree.values().all(|c| c != MARKER.as_bytes()),
        "the outside file was read"
    );
    assert_eq!(
        tree[Path::new("environments/dev/again.json")],
        tree[Path::new("environments/dev/req.json")],
        "a link inside is followed"
    );
    assert!(!tree.contains_key(Path::new("environments/dev/.swap.yml")));

    // 65 paths to one 1 MiB file: refused from sizes alone.
    std::fs::create_dir(env.join("data")).unwrap();
    let first = env.join("data/0.json");
    std::fs::write(&first, vec![b' '; 1 << 20]).unwrap();
    for i in 1..65 {
        std::fs::hard_link(&first, env.join(format!("data/{i}.json"))).unwrap();
    }
    let snapshot = source.fetch().await.unwrap();
    let refused = snapshot.envs[Path::new("environments/dev")]
        .as_ref()
        .unwrap_err();
    assert!(refused.contains("more than the 64 MiB limit"), "{refused}");
}
