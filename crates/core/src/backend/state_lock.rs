//! The advisory lock that serialises `apply` runs on one `state_file` target: `<state>.lock`,
//! locked exclusively (`File::try_lock`, flock/LockFileEx) for the whole apply. The OS drops the
//! lock when the holder exits, so a killed apply never leaves a stale lock. A second apply waits
//! for the first (then reads live afresh, so no step runs twice), up to a bound, then refuses.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often a waiting apply tries the lock again.
const RETRY: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{path}: cannot open the apply lock: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: another apply on this environment still holds the lock after {waited}; \
         nothing was applied (raise FLIGHTDECK_LOCK_TIMEOUT to wait longer)"
    )]
    Busy { path: String, waited: String },
}

/// Held for the duration of an apply; dropping it releases the lock.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    pub path: PathBuf,
}

/// `<state>.lock` beside the state file.
pub fn lock_path(state: &Path) -> PathBuf {
    let mut name = state.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    state.with_file_name(name)
}

/// Takes the lock, waiting up to `limit` for another holder; `on_wait` is called once if it must.
pub async fn acquire(
    state: &Path,
    limit: Duration,
    on_wait: impl FnOnce(&Path),
) -> Result<StateLock, LockError> {
    let path = lock_path(state);
    let shown = path.display().to_string();
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| LockError::Open {
            path: shown.clone(),
            source,
        })?;
    let deadline = tokio::time::Instant::now() + limit;
    let mut on_wait = Some(on_wait);
    loop {
        // `File::try_lock` is std since 1.89, the workspace's rust-version.
        let locked = file.try_lock();
        match locked {
            Ok(()) => return Ok(StateLock { _file: file, path }),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(source)) => {
                return Err(LockError::Open {
                    path: shown,
                    source,
                });
            }
        }
        if let Some(f) = on_wait.take() {
            f(&path);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(LockError::Busy {
                path: shown,
                waited: humantime::format_duration(limit).to_string(),
            });
        }
        tokio::time::sleep(RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_holder_waits_then_refuses_and_gets_the_lock_once_it_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("live.json");
        let first = acquire(&state, Duration::ZERO, |_| panic!("free"))
            .await
            .unwrap();
        assert_eq!(first.path, dir.path().join("live.json.lock"));
        let mut waited = false;
        let err = acquire(&state, Duration::from_millis(120), |_| waited = true)
            .await
            .unwrap_err();
        assert!(waited);
        assert!(err.to_string().contains("another apply"), "{err}");
        drop(first);
        acquire(&state, Duration::ZERO, |_| panic!("free again"))
            .await
            .unwrap();
    }
}
