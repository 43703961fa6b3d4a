//! The agent's own clone of the repository it follows, where promotions are written: before each
//! promotion it is fetched and reset to the tracked branch's tip (so `promote::prepare` starts
//! from what the remote has, with a clean work tree), and a promotion's commit is pushed back,
//! never forced: onto the tracked branch itself (`mode: commit`; a branch that moved meanwhile
//! refuses the push and the next pass retries on the new tip) or as its own branch
//! (`mode: pull_request`). Blocking (libgit2); callers run it on a blocking thread.

use std::path::{Path, PathBuf};

use git2::{FetchOptions, PushOptions, Repository, ResetType};

use crate::source::GitAuth;
use crate::source::git::{callbacks, check_token_transport};

#[derive(Debug, thiserror::Error)]
pub enum WorktreeError {
    #[error("promotion work tree {path}: {message}")]
    Git { path: String, message: String },
    #[error(transparent)]
    Transport(#[from] crate::source::SourceError),
    #[error("pushing {src} to {dst}: the remote refused it ({status})")]
    Rejected {
        src: String,
        dst: String,
        status: String,
    },
}

pub struct Worktree {
    pub dir: PathBuf,
    url: String,
    branch: String,
    auth: GitAuth,
}

impl Worktree {
    pub fn new(dir: PathBuf, url: String, branch: String, auth: GitAuth) -> Worktree {
        Worktree {
            dir,
            url,
            branch,
            auth,
        }
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }

    fn err(&self, e: git2::Error) -> WorktreeError {
        WorktreeError::Git {
            path: self.dir.display().to_string(),
            message: e.message().to_string(),
        }
    }

    /// Opens (or clones) the work tree, fetches the tracked branch and resets the checked-out
    /// branch, index and files to its tip. Returns the tip.
    pub fn sync(&self) -> Result<String, WorktreeError> {
        check_token_transport(&self.url, &self.auth)?;
        let repo = match Repository::open(&self.dir) {
            Ok(repo) => repo,
            Err(_) => {
                std::fs::create_dir_all(&self.dir).map_err(|e| WorktreeError::Git {
                    path: self.dir.display().to_string(),
                    message: e.to_string(),
                })?;
                Repository::init(&self.dir).map_err(|e| self.err(e))?
            }
        };
        let mut options = FetchOptions::new();
        options.remote_callbacks(callbacks(&self.auth, &self.url));
        let mut remote = repo.remote_anonymous(&self.url).map_err(|e| self.err(e))?;
        let tracking = format!("refs/flightdeck/remote/{}", self.branch);
        let spec = format!("+refs/heads/{}:{tracking}", self.branch);
        remote
            .fetch(&[spec.as_str()], Some(&mut options), None)
            .map_err(|e| self.err(e))?;
        drop(options);
        let tip = repo
            .find_reference(&tracking)
            .and_then(|r| r.peel_to_commit())
            .map_err(|e| self.err(e))?;
        let local = format!("refs/heads/{}", self.branch);
        repo.reference(&local, tip.id(), true, "flightdeck: promotion sync")
            .map_err(|e| self.err(e))?;
        repo.set_head(&local).map_err(|e| self.err(e))?;
        repo.reset(tip.as_object(), ResetType::Hard, None)
            .map_err(|e| self.err(e))?;
        // Untracked leftovers would make `promote::prepare` refuse a dirty directory.
        let mut checkout = git2::build::CheckoutBuilder::new();
        checkout.force().remove_untracked(true);
        repo.checkout_head(Some(&mut checkout))
            .map_err(|e| self.err(e))?;
        Ok(tip.id().to_string())
    }

    /// The environment directory `path` inside the work tree.
    pub fn env_dir(&self, path: &Path) -> PathBuf {
        self.dir.join(path)
    }

    /// Deletes a local branch (a promotion branch already pushed in commit mode).
    pub fn delete_branch(&self, name: &str) {
        if let Ok(repo) = Repository::open(&self.dir)
            && let Ok(mut b) = repo.find_branch(name, git2::BranchType::Local)
        {
            let _ = b.delete();
        }
    }

    /// Whether the remote has `refs/heads/<name>` (a pull-request branch pushed before).
    pub fn remote_has(&self, name: &str) -> Result<bool, WorktreeError> {
        let repo = Repository::open(&self.dir).map_err(|e| self.err(e))?;
        let mut remote = repo.remote_anonymous(&self.url).map_err(|e| self.err(e))?;
        let connection = remote
            .connect_auth(
                git2::Direction::Fetch,
                Some(callbacks(&self.auth, &self.url)),
                None,
            )
            .map_err(|e| self.err(e))?;
        let wanted = format!("refs/heads/{name}");
        let found = connection
            .list()
            .map_err(|e| self.err(e))?
            .iter()
            .any(|h| h.name() == wanted);
        Ok(found)
    }

    /// Pushes local `src` to the remote's `dst`, never forced.
    pub fn push(&self, src: &str, dst: &str) -> Result<(), WorktreeError> {
        let repo = Repository::open(&self.dir).map_err(|e| self.err(e))?;
        let mut remote = repo.remote_anonymous(&self.url).map_err(|e| self.err(e))?;
        let rejected = std::cell::RefCell::new(None);
        let mut cb = callbacks(&self.auth, &self.url);
        cb.push_update_reference(|_, status| {
            if let Some(s) = status {
                *rejected.borrow_mut() = Some(s.to_string());
            }
            Ok(())
        });
        let mut options = PushOptions::new();
        options.remote_callbacks(cb);
        let spec = format!("refs/heads/{src}:refs/heads/{dst}");
        remote
            .push(&[spec.as_str()], Some(&mut options))
            .map_err(|e| self.err(e))?;
        drop(options);
        if let Some(status) = rejected.into_inner() {
            return Err(WorktreeError::Rejected {
                src: src.to_string(),
                dst: dst.to_string(),
                status,
            });
        }
        Ok(())
    }
}
