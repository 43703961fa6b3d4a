//! The `state_file` target: the in-memory backend persisted to a JSON snapshot file after every
//! step, a local stand-in for a platform for trying plan and apply offline.
//!
//! The file must stay inside the environment directory: the loader refuses absolute paths and
//! `..` (`spec::paths`), and [`StateFileBackend::open`] resolves the existing part of the path
//! on disk, so a symlinked directory cannot lead out of it, and never reads or writes through
//! a symlink.

use std::collections::BTreeSet;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::memory::{apply_step, set_rollout};
use super::{Backend, BackendError, StepDetail};
use crate::model::LiveState;
use crate::plan::Step;
use crate::rollout::RolloutRecord;
use crate::spec::paths::inside_environment;

/// Why a state file path is refused at connect time.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("state_file.path `{path}`: {why}")]
    Refused { path: String, why: &'static str },
    #[error(
        "state_file.path `{path}`: {} resolves to {}, outside the environment directory {}",
        dir.display(), resolved.display(), env.display()
    )]
    Escapes {
        path: String,
        dir: PathBuf,
        resolved: PathBuf,
        env: PathBuf,
    },
    #[error("state_file.path `{path}`: {} is a symlink, the state file is never read or written through one", file.display())]
    Symlink { path: String, file: PathBuf },
    #[error("state_file.path `{path}`: cannot resolve {}", dir.display())]
    Resolve {
        path: String,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug)]
pub struct StateFileBackend {
    path: PathBuf,
    lock: tokio::sync::Mutex<()>,
}

impl StateFileBackend {
    /// The state file `path` (as written in `environment.yaml`) of the environment `env_dir`.
    pub fn open(env_dir: &Path, path: &str) -> Result<StateFileBackend, StateFileError> {
        let refused = |why| StateFileError::Refused {
            path: path.to_string(),
            why,
        };
        let rel = inside_environment(path).map_err(refused)?;
        let resolve = |dir: &Path| {
            dir.canonicalize()
                .map_err(|source| StateFileError::Resolve {
                    path: path.to_string(),
                    dir: dir.to_path_buf(),
                    source,
                })
        };
        let env = resolve(env_dir)?;
        // The deepest directory of the path that exists now, resolved through any symlink; the
        // rest does not exist yet, so it holds no symlink.
        let parent = rel.parent().unwrap_or(Path::new(""));
        let mut existing = parent.to_path_buf();
        let mut missing = Vec::new();
        // `symlink_metadata`: a dangling symlink counts as existing, and then fails to resolve.
        while !existing.as_os_str().is_empty()
            && std::fs::symlink_metadata(env_dir.join(&existing)).is_err()
        {
            missing.push(existing.file_name().map(|n| n.to_os_string()));
            existing.pop();
        }
        let resolved = resolve(&env_dir.join(&existing))?;
        if !resolved.starts_with(&env) {
            return Err(StateFileError::Escapes {
                path: path.to_string(),
                dir: env_dir.join(&existing),
                resolved,
                env,
            });
        }
        let mut file = resolved;
        for part in missing.into_iter().rev().flatten() {
            file.push(part);
        }
        file.push(rel.file_name().unwrap_or_default());
        if is_symlink(&file) {
            return Err(StateFileError::Symlink {
                path: path.to_string(),
                file,
            });
        }
        Ok(StateFileBackend::new(file))
    }

    fn new(path: PathBuf) -> Self {
        StateFileBackend {
            path,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    fn load(&self) -> Result<LiveState, BackendError> {
        if is_symlink(&self.path) {
            return Err(self.symlink());
        }
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| BackendError::Malformed {
                subject: self.path.display().to_string(),
                message: format!("invalid state file: {e}"),
                source: Some(Box::new(e)),
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(LiveState::default()),
            Err(e) => Err(self.io(e)),
        }
    }

    fn io(&self, e: std::io::Error) -> BackendError {
        BackendError::Io {
            subject: self.path.display().to_string(),
            message: e.to_string(),
            source: Some(Box::new(e)),
        }
    }

    fn symlink(&self) -> BackendError {
        BackendError::Io {
            subject: self.path.display().to_string(),
            message: "is a symlink, the state file is never read or written through one".into(),
            source: None,
        }
    }

    /// Writes a fresh temporary file (`create_new` never follows a symlink left in its place)
    /// and renames it over the state file (a rename replaces a symlink, never follows it).
    fn save(&self, state: &LiveState) -> Result<(), BackendError> {
        let io = |e: std::io::Error| self.io(e);
        let json = serde_json::to_vec_pretty(state).map_err(|e| BackendError::Other(e.into()))?;
        let tmp = self.path.with_extension("tmp");
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io)?;
        file.write_all(&json).map_err(io)?;
        drop(file);
        std::fs::rename(&tmp, &self.path).map_err(io)
    }
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

#[async_trait]
impl Backend for StateFileBackend {
    fn name(&self) -> &'static str {
        "state_file"
    }

    async fn read_live(&self) -> Result<LiveState, BackendError> {
        let _guard = self.lock.lock().await;
        self.load()
    }

    async fn execute(&self, step: &Step) -> Result<StepDetail, BackendError> {
        let _guard = self.lock.lock().await;
        let mut state = self.load()?;
        let outcome = apply_step(&mut state, step, &BTreeSet::new())?;
        if step.action.is_write() {
            self.save(&state)?;
        }
        Ok(outcome)
    }

    /// Under the same lock as a step: load, change the one record, save (nothing is written
    /// when the endpoint does not exist).
    async fn write_rollout(
        &self,
        endpoint: &str,
        record: Option<&RolloutRecord>,
    ) -> Result<(), BackendError> {
        let _guard = self.lock.lock().await;
        let mut state = self.load()?;
        set_rollout(&mut state, endpoint, record)?;
        self.save(&state)
    }
}
