//! Checks of single settings: the repository exists when it is local, branch and rev exclude
//! each other, secrets are read from their files, the advertised URL is an http(s) base URL.

use std::path::{Path, PathBuf};

use super::{ConfigError, SourceKind};
use crate::source::{GitRef, Secret};

/// A local `--repo` must exist: otherwise git2 answers "unsupported URL protocol" on every
/// tick and the agent never says what is wrong.
pub fn check_repository(source: &SourceKind) -> Result<(), ConfigError> {
    let (shown, path) = match source {
        SourceKind::Git { url, .. } => match local_repo_path(url) {
            Some(path) => (url.as_str(), path),
            None => return Ok(()),
        },
        SourceKind::Local { root } => (root.to_str().unwrap_or_default(), root.clone()),
    };
    if path.exists() {
        Ok(())
    } else {
        let shown = if shown.is_empty() {
            path.display().to_string()
        } else {
            shown.to_string()
        };
        Err(ConfigError::Invalid(format!("no such repository: {shown}")))
    }
}

/// The directory `repo` names when it is a local path or a `file://` URL; `None` for remote
/// URLs (`https://`, `ssh://`) and scp-like addresses (`git@host:org/repo.git`, `host:repo`),
/// which git reads as remote when a `:` comes before any `/`.
fn local_repo_path(repo: &str) -> Option<PathBuf> {
    if let Some(rest) = repo.strip_prefix("file://") {
        return Some(PathBuf::from(rest));
    }
    if repo.contains("://") {
        return None;
    }
    match (repo.find(':'), repo.find('/')) {
        (Some(colon), Some(slash)) if colon < slash => None,
        (Some(_), None) => None,
        _ => Some(PathBuf::from(repo)),
    }
}

pub(super) fn reference_of(
    branch: &Option<String>,
    rev: &Option<String>,
) -> Result<GitRef, ConfigError> {
    match (branch, rev) {
        (Some(_), Some(_)) => Err(ConfigError::Invalid(
            "give either branch or rev, not both".into(),
        )),
        (_, Some(rev)) => Ok(GitRef::Rev(rev.clone())),
        (Some(branch), None) => Ok(GitRef::Branch(branch.clone())),
        (None, None) => Ok(GitRef::Branch("main".into())),
    }
}

pub(super) fn read_secret(path: &Path) -> Result<Secret, ConfigError> {
    Secret::from_file(path).map_err(|e| ConfigError::Invalid(e.to_string()))
}

/// `--advertise-url`: an http(s) URL with a host, kept without a trailing `/`.
pub(super) fn advertise_url(text: &str) -> Result<String, ConfigError> {
    let url = url::Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| {
            ConfigError::Invalid(format!("advertise-url {text:?}: expected http://HOST:PORT"))
        })?;
    Ok(url.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_and_file_urls_are_checked_for_existence() {
        for remote in [
            "https://github.com/org/repo.git",
            "ssh://git@host:2222/org/repo.git",
            "git@github.com:org/repo.git",
            "host:repo.git",
        ] {
            assert_eq!(local_repo_path(remote), None, "{remote}");
        }
        assert_eq!(
            local_repo_path("file:///srv/repo"),
            Some(PathBuf::from("/srv/repo"))
        );
        assert_eq!(
            local_repo_path("./repos/a:b"),
            Some(PathBuf::from("./repos/a:b"))
        );
        assert_eq!(local_repo_path("repo"), Some(PathBuf::from("repo")));
    }
}
