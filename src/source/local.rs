//! A local directory as a source, for development: files are read from disk on every fetch and
//! the revision is a hash of their contents. `watch_dir` turns file changes into debounced
//! triggers so an edit is reconciled within a moment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::normalize_path as normalize;
use super::tree::{self, EnvTree};
use super::{Snapshot, Source, SourceError};

pub struct LocalSource {
    root: PathBuf,
    paths: Vec<PathBuf>,
}

impl LocalSource {
    pub fn new(root: PathBuf, paths: &[PathBuf]) -> Result<LocalSource, SourceError> {
        if !root.is_dir() {
            return Err(SourceError::Config(format!(
                "{}: not a directory",
                root.display()
            )));
        }
        let paths = paths
            .iter()
            .map(|p| normalize(p))
            .collect::<Result<_, _>>()?;
        Ok(LocalSource { root, paths })
    }

    fn read_blocking(&self) -> Result<Snapshot, SourceError> {
        let mut envs = BTreeMap::new();
        let mut hasher = Sha256::new();
        for path in &self.paths {
            let files = read_dir_files(&self.root, path);
            if let Ok(files) = &files {
                for (name, content) in files.iter() {
                    hasher.update(name.to_string_lossy().as_bytes());
                    hasher.update([0]);
                    hasher.update((content.len() as u64).to_le_bytes());
                    hasher.update(content);
                }
                // A link that starts or stops resolving changes the revision too.
                for problem in &files.problems {
                    hasher.update(problem.to_string().as_bytes());
                    hasher.update([0]);
                }
            }
            envs.insert(path.clone(), files.map(Arc::new).map_err(|e| e.to_string()));
        }
        let digest = hasher.finalize();
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        Ok(Snapshot {
            revision: format!("local-{hex}"),
            envs,
        })
    }
}

#[async_trait]
impl Source for Arc<LocalSource> {
    fn describe(&self) -> String {
        format!("{} (local directory)", self.root.display())
    }

    async fn fetch(&self) -> Result<Snapshot, SourceError> {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || this.read_blocking())
            .await
            .map_err(|e| SourceError::Config(format!("read task failed: {e}")))?
    }
}

/// The environment `root/rel` through the one tree reader, keyed by paths relative to `root`.
pub fn read_dir_files(root: &Path, rel: &Path) -> Result<EnvTree, SourceError> {
    let dir = root.join(rel);
    if !dir.is_dir() {
        return Err(SourceError::PathNotFound {
            path: rel.display().to_string(),
            revision: "working directory".into(),
        });
    }
    Ok(tree::read_dir(&dir, rel)?)
}

/// Keeps a directory watch alive; dropping it stops watching.
pub struct DirWatch {
    _watcher: notify::RecommendedWatcher,
    _task: tokio::task::JoinHandle<()>,
}

/// Whether a changed path is an environment file the source reads: under one of the watched
/// environment directories and not hidden (`.live.json`, editor swap files), as `LocalSource`
/// skips hidden files too. Anything else (a log file next to the repository, `target/`) must not
/// trigger a reconcile, or a reconcile that writes it would trigger itself forever.
fn is_environment_file(path: &Path, watched: &[PathBuf]) -> bool {
    watched.iter().any(|dir| {
        path.strip_prefix(dir).is_ok_and(|rel| {
            rel.components()
                .all(|c| !c.as_os_str().to_string_lossy().starts_with('.'))
        })
    })
}

/// Watches the environment directories (`root/path` for each path) recursively and sends each
/// changed environment file. A directory that does not exist yet is skipped, with a warning.
fn watch_paths(
    root: &Path,
    paths: &[PathBuf],
) -> Result<(notify::RecommendedWatcher, mpsc::UnboundedReceiver<PathBuf>), SourceError> {
    let watched: Vec<PathBuf> = paths.iter().map(|p| root.join(p)).collect();
    let (tx, rx) = mpsc::unbounded_channel::<PathBuf>();
    let filter = watched.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        for path in event.paths {
            if is_environment_file(&path, &filter) {
                let _ = tx.send(path);
            }
        }
    })
    .map_err(|e| SourceError::Config(format!("watching {}: {e}", root.display())))?;
    for dir in &watched {
        if !dir.is_dir() {
            tracing::warn!(dir = %dir.display(), "not watching: no such directory");
            continue;
        }
        watcher
            .watch(dir, RecursiveMode::Recursive)
            .map_err(|e| SourceError::Config(format!("watching {}: {e}", dir.display())))?;
    }
    Ok((watcher, rx))
}

/// Watches the environment directories `paths` under `root` (only those: see
/// `is_environment_file`) and calls `trigger()` once changes have been quiet for
/// `debounce` (editors write a file in several events).
pub fn watch_dir(
    root: &Path,
    paths: &[PathBuf],
    debounce: Duration,
    trigger: impl Fn() + Send + 'static,
) -> Result<DirWatch, SourceError> {
    let (watcher, mut rx) = watch_paths(root, paths)?;
    let task = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Debounce: wait until no event arrives for `debounce`.
            loop {
                match tokio::time::timeout(debounce, rx.recv()).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            tracing::debug!("local files changed");
            trigger();
        }
    });
    Ok(DirWatch {
        _watcher: watcher,
        _task: task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Notify;

    #[tokio::test]
    async fn local_revisions_change_only_when_content_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("environments/dev/sub")).unwrap();
        std::fs::write(dir.path().join("environments/dev/a.yaml"), "a: 1\n").unwrap();
        std::fs::write(dir.path().join("environments/dev/sub/b.json"), "{}").unwrap();
        std::fs::write(dir.path().join("environments/dev/.a.yaml.swp"), "x").unwrap();
        let source = Arc::new(
            LocalSource::new(
                dir.path().to_path_buf(),
                &[PathBuf::from("environments/dev")],
            )
            .unwrap(),
        );
        let first = source.fetch().await.unwrap();
        let files = first.envs[Path::new("environments/dev")].as_ref().unwrap();
        let names: Vec<_> = files.keys().map(|p| p.display().to_string()).collect();
        assert_eq!(
            names,
            ["environments/dev/a.yaml", "environments/dev/sub/b.json"]
        );
        assert_eq!(source.fetch().await.unwrap().revision, first.revision);
        std::fs::write(dir.path().join("environments/dev/a.yaml"), "a: 2\n").unwrap();
        assert_ne!(source.fetch().await.unwrap().revision, first.revision);
    }

    #[tokio::test]
    async fn a_file_change_triggers_once_after_the_debounce() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("env")).unwrap();
        let trigger = Arc::new(Notify::new());
        let paths = [PathBuf::from("env")];
        let _watch = watch_dir(dir.path(), &paths, Duration::from_millis(50), {
            let trigger = trigger.clone();
            move || trigger.notify_one()
        })
        .unwrap();
        std::fs::write(dir.path().join("env/x.yaml"), "a").unwrap();
        std::fs::write(dir.path().join("env/x.yaml"), "b").unwrap();
        tokio::time::timeout(Duration::from_secs(5), trigger.notified())
            .await
            .expect("a change is reported");
    }

    #[tokio::test]
    async fn only_files_of_the_watched_environments_count_not_logs_beside_them_or_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("environments/dev")).unwrap();
        std::fs::create_dir_all(dir.path().join("environments/prod")).unwrap();
        let (_watcher, mut rx) =
            watch_paths(dir.path(), &[PathBuf::from("environments/dev")]).unwrap();
        // Events arrive in order: if any of these counted, it would be received first.
        std::fs::write(dir.path().join("agent.log"), "a log line").unwrap();
        std::fs::write(dir.path().join("environments/prod/a.yaml"), "a: 1").unwrap();
        std::fs::write(dir.path().join("environments/dev/.live.json"), "{}").unwrap();
        std::fs::write(dir.path().join("environments/dev/a.yaml"), "a: 1").unwrap();
        let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("the environment file is reported")
            .unwrap();
        assert_eq!(first, dir.path().join("environments/dev/a.yaml"));
    }
}
