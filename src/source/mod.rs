//! Where the desired state comes from: a Git repository (cloned and fetched into a bare cache,
//! files read straight from a commit's tree) or, for development, a local directory watched for
//! changes. Both produce a [`Snapshot`]: one revision id plus the files of each environment path.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

pub mod git;
mod git_tree;
pub mod incremental;
pub mod local;
pub mod verify;

pub use flightdeck_core::tree;

pub use git::{GitAuth, GitConfig, GitRef, GitSource};
pub use git_tree::{list_git_tree, read_git_tree, read_tree};
pub use local::{LocalSource, watch_dir};
pub use tree::{EnvTree, FileMap};

use tree::TreeError;

/// One revision of the desired state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The commit id (40 hex) for Git; `local-<12 hex>` (content hash) for a local directory.
    pub revision: String,
    /// Files per configured environment path. A path that is missing in this revision is an
    /// error for that environment only.
    pub envs: BTreeMap<PathBuf, Result<Arc<EnvTree>, String>>,
}

/// Errors from fetching or reading a source. Messages never contain credentials: URLs are
/// shown without their user-info part.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("git: {context}: {message}")]
    Git { context: String, message: String },
    #[error("revision {rev} not found in {repo}")]
    RevisionNotFound { repo: String, rev: String },
    #[error("{path}: not found in revision {revision}")]
    PathNotFound { path: String, revision: String },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// The environment tree was refused as a whole (too many files or bytes); the message names
    /// the environment directory and the limit.
    #[error("{0}")]
    Tree(String),
    #[error("commit {commit}: {reason}")]
    Unverified { commit: String, reason: String },
    #[error("invalid source configuration: {0}")]
    Config(String),
    /// The local cache repository is unreadable (corrupt or missing objects, broken refs).
    #[error("git cache {path} is unusable: {reason}")]
    CorruptCache { path: String, reason: String },
}

impl SourceError {
    /// Short machine-readable kind, used as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::Git { .. } | SourceError::RevisionNotFound { .. } => "fetch",
            SourceError::PathNotFound { .. } => "path",
            SourceError::Io { .. } | SourceError::Tree(_) => "read",
            SourceError::Unverified { .. } => "verify",
            SourceError::Config(_) => "config",
            SourceError::CorruptCache { .. } => "cache",
        }
    }

    pub(crate) fn git(context: impl Into<String>, err: git2::Error) -> SourceError {
        SourceError::Git {
            context: context.into(),
            message: err.message().to_string(),
        }
    }

    pub(crate) fn io(path: &Path, err: std::io::Error) -> SourceError {
        SourceError::Io {
            path: path.display().to_string(),
            message: err.to_string(),
        }
    }
}

/// A source of desired state. `fetch` brings the source up to date and returns the snapshot
/// of its current revision; it is called on every tick, so implementations make an unchanged
/// revision cheap.
#[async_trait]
pub trait Source: Send + Sync {
    /// For logs and `/status`: the repository (without credentials) and the ref it follows.
    fn describe(&self) -> String;
    async fn fetch(&self) -> Result<Snapshot, SourceError>;
    /// What the last `fetch` had to repair to succeed (a Git cache rebuilt from the remote),
    /// reported once; `None` when nothing was wrong.
    fn take_repair(&self) -> Option<String> {
        None
    }
}

pub use flightdeck_core::secret::Secret;

/// A repository URL with any user-info (`https://user:token@host/...`) removed, for display.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed)
            if parsed.has_host()
                && (!parsed.username().is_empty() || parsed.password().is_some()) =>
        {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => match url.split_once('@') {
            // scp-like `git@host:org/repo.git` carries a user name, not a secret.
            Some((user, _)) if !user.contains(':') && !user.contains('/') => url.to_string(),
            Some((_, rest)) if url.contains("://") => {
                let scheme = url.split("://").next().unwrap_or_default();
                format!("{scheme}://{rest}")
            }
            _ => url.to_string(),
        },
    }
}

impl From<TreeError> for SourceError {
    /// A git error stays a git error, so the agent can tell a cache that lacks an object the
    /// commit needs (a damaged cache, rebuilt from the remote) from a tree that breaks a rule.
    fn from(e: TreeError) -> SourceError {
        match e {
            TreeError::Git {
                dir,
                context,
                source,
            } => SourceError::Git {
                context: format!("{}: {context}", dir.display()),
                message: match source.downcast::<git2::Error>() {
                    Ok(git) => git.message().to_string(),
                    Err(other) => other.to_string(),
                },
            },
            other => SourceError::Tree(format!("{}: {}", other.dir().display(), other.message())),
        }
    }
}

/// `./environments/prod/` → `environments/prod`; rejects absolute paths and `..`.
pub(crate) fn normalize_path(path: &Path) -> Result<PathBuf, SourceError> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => {
                return Err(SourceError::Config(format!(
                    "{}: environment paths must be relative to the repository root, without `..`",
                    path.display()
                )));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials_for_display() {
        assert_eq!(
            redact_url("https://x-access-token:abc123@github.com/org/repo.git"),
            "https://github.com/org/repo.git"
        );
        assert_eq!(
            redact_url("git@github.com:org/repo.git"),
            "git@github.com:org/repo.git"
        );
        assert_eq!(redact_url("/srv/repo"), "/srv/repo");
    }
}
