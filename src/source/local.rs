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
use tokio::sync::{Notify, mpsc};

use super::tree::{self, EnvTree, normalize};
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

/// Watches `dir` recursively and calls `trigger.notify_one()` once changes have been quiet for
/// `debounce` (editors write a file in several events).
pub fn watch_dir(
    dir: &Path,
    debounce: Duration,
    trigger: Arc<Notify>,
) -> Result<DirWatch, SourceError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !event.kind.is_access()
        {
            let _ = tx.send(());
        }
    })
    .map_err(|e| SourceError::Config(format!("watching {}: {e}", dir.display())))?;
    watcher
        .watch(dir, RecursiveMode::Recursive)
        .map_err(|e| SourceError::Config(format!("watching {}: {e}", dir.display())))?;
    let task = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Debounce: wait until no event arrives for `debounce`.
            loop {
                match tokio::time::timeout(debounce, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            tracing::debug!("local files changed");
            trigger.notify_one();
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
        let trigger = Arc::new(Notify::new());
        let _watch = watch_dir(dir.path(), Duration::from_millis(50), trigger.clone()).unwrap();
        std::fs::write(dir.path().join("x.yaml"), "a").unwrap();
        std::fs::write(dir.path().join("x.yaml"), "b").unwrap();
        tokio::time::timeout(Duration::from_secs(5), trigger.notified())
            .await
            .expect("a change is reported");
    }
}
