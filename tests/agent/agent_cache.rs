//! A damaged or deleted Git cache heals: the agent reports it in `/status` (`last_fetch_error`)
//! and `flightdeck_source_errors_total{kind="cache"}`, re-clones from the remote in the same
//! fetch, and later commits are applied again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flightdeck::agent::{Agent, AgentOptions};
use flightdeck_testkit::recorder::{Recorder, git_config};
use flightdeck_testkit::{GitRepo, eventually, metrics, status};
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(20);

/// The bare cache repository the agent keeps under `cache_dir`.
fn cache_repo(cache_dir: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(cache_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].clone()
}

/// Deletes every file under `dir` (directories stay): the objects are gone, the refs remain.
fn delete_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            delete_files(&path);
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
}

fn cache_errors(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("flightdeck_source_errors_total{kind=\"cache\"} "))
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_deleted_git_cache_is_reported_rebuilt_and_synced_again() {
    let repo = GitRepo::new();
    repo.write("environments/prod/environment.yaml", "name: prod\n");
    let first = repo.commit("init");
    let cache = tempfile::tempdir().unwrap();
    // Fetches happen at start and on `trigger` only: each step below is one fetch.
    let config = git_config(
        repo.dir.path(),
        cache.path(),
        &["environments/prod"],
        Duration::from_secs(600),
        None,
    );
    let recorder = Arc::new(Recorder::default());
    let cancel = CancellationToken::new();
    let agent = Agent::start(
        config,
        recorder.clone(),
        AgentOptions::default(),
        cancel.clone(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", agent.local_addr());
    eventually("the first sync", T, || async {
        recorder.reconciled(&first)
    })
    .await;
    let bare = cache_repo(cache.path());

    // Objects gone and nothing new to fetch: the ref names a commit the cache lacks.
    delete_files(&bare.join("objects"));
    agent.trigger();
    eventually("the missing commit is reported", T, || async {
        let s = status(&base).await;
        s["last_fetch_error"]
            .as_str()
            .is_some_and(|e| e.contains("refs/remotes/origin/main points to a missing object"))
    })
    .await;
    assert_eq!(cache_errors(&metrics(&base).await), 1);
    assert!(
        status(&base).await["last_fetch_error"]
            .as_str()
            .unwrap()
            .ends_with("; rebuilt from the remote")
    );

    let damages: [(&str, &dyn Fn(), &str); 3] = [
        (
            "missing objects",
            &|| delete_files(&bare.join("objects")),
            "is unusable: ",
        ),
        (
            "a garbled ref",
            &|| std::fs::write(bare.join("refs/remotes/origin/main"), "garbage\n").unwrap(),
            "is unusable: ",
        ),
        (
            "a deleted cache",
            &|| std::fs::remove_dir_all(&bare).unwrap(),
            "disappeared; cloned again from the remote",
        ),
    ];
    for (round, (what, damage, reported)) in damages.into_iter().enumerate() {
        damage();
        repo.write("environments/prod/round.yaml", &format!("round: {round}\n"));
        let next = repo.commit(what);
        agent.trigger();
        eventually(
            &format!("{what}: the next commit is applied"),
            T,
            || async { recorder.reconciled(&next) },
        )
        .await;
        let s = status(&base).await;
        let error = s["last_fetch_error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(error.contains(reported), "{what}: {s}");
        eprintln!("{what}: {error}");
        assert!(
            error.contains("rebuilt from the remote") || error.contains("cloned again"),
            "{what}: {error}"
        );
        assert_eq!(s["revision"], next.as_str(), "{what}");
        assert_eq!(
            cache_errors(&metrics(&base).await),
            round as u64 + 2,
            "{what}"
        );
    }
    // The report lasts until the next clean fetch.
    let before = status(&base).await["last_fetch_time"].clone();
    agent.trigger();
    eventually("a clean fetch clears the report", T, || async {
        let s = status(&base).await;
        s["last_fetch_time"] != before && s["last_fetch_error"].is_null()
    })
    .await;
    cancel.cancel();
    agent.wait().await;
}
