//! `flightdeck promote --push`: the new branch pushed to a remote with the agent's Git
//! credentials (`source::git`: a token as the password of `x-access-token` over https, or an
//! SSH key checked against known_hosts). Never forced: a branch that exists on the remote is
//! refused by it, and that refusal is the error.

use git2::{PushOptions, Repository};

use crate::source::git::{callbacks, check_token_transport};
use crate::source::{GitAuth, redact_url};

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("remote {0} is not configured (git remote -v) and is not a URL")]
    NoRemote(String),
    #[error(transparent)]
    Transport(#[from] crate::source::SourceError),
    #[error("pushing {branch} to {url}: {message}")]
    Failed {
        branch: String,
        url: String,
        message: String,
    },
    #[error("{url} refused {branch}: {status}")]
    Rejected {
        branch: String,
        url: String,
        status: String,
    },
}

/// The URL of `remote`: a configured remote's name, or a URL / path itself.
pub fn remote_url(repo: &Repository, remote: &str) -> Result<String, PushError> {
    if let Ok(r) = repo.find_remote(remote) {
        let push = r.pushurl().ok().flatten();
        return push
            .or(r.url().ok())
            .map(String::from)
            .ok_or_else(|| PushError::NoRemote(remote.to_string()));
    }
    if remote.contains("://") || remote.contains('@') || std::path::Path::new(remote).exists() {
        return Ok(remote.to_string());
    }
    Err(PushError::NoRemote(remote.to_string()))
}

/// Pushes `refs/heads/<branch>` to `remote` (blocking); returns the URL pushed to (with any
/// user-info removed, for display).
pub fn push(
    repo: &Repository,
    remote: &str,
    branch: &str,
    auth: &GitAuth,
) -> Result<String, PushError> {
    let url = remote_url(repo, remote)?;
    check_token_transport(&url, auth)?;
    let shown = redact_url(&url);
    let failed = |e: git2::Error| PushError::Failed {
        branch: branch.to_string(),
        url: shown.clone(),
        message: e.message().to_string(),
    };
    let mut remote = repo.remote_anonymous(&url).map_err(failed)?;
    let rejected = std::cell::RefCell::new(None);
    let mut cb = callbacks(auth, &url);
    cb.push_update_reference(|_, status| {
        if let Some(s) = status {
            *rejected.borrow_mut() = Some(s.to_string());
        }
        Ok(())
    });
    let mut options = PushOptions::new();
    options.remote_callbacks(cb);
    let spec = format!("refs/heads/{branch}:refs/heads/{branch}");
    remote
        .push(&[spec.as_str()], Some(&mut options))
        .map_err(failed)?;
    drop(options);
    if let Some(status) = rejected.into_inner() {
        return Err(PushError::Rejected {
            branch: branch.to_string(),
            url: shown,
            status,
        });
    }
    Ok(shown)
}
