//! A Git repository as a source: fetched incrementally into a bare cache repository, then the
//! desired files are read from the tracked commit's tree.
//!
//! Authentication: HTTPS with a token (sent as the password of `x-access-token`, which GitHub,
//! GitLab and Azure DevOps accept), SSH with a private key file. SSH host keys are checked
//! against a `known_hosts` file; without one, SSH is refused rather than trusting any host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

use async_trait::async_trait;
use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, ErrorClass, ErrorCode,
    FetchOptions, Oid, RemoteCallbacks, Repository,
};
use sha2::{Digest, Sha256};
use ssh_key::known_hosts::{HostPatterns, KnownHosts, Marker};

use super::verify::Verifier;
use super::{EnvTree, normalize_path as normalize, read_tree};
use super::{Secret, Snapshot, Source, SourceError, redact_url};

/// What to follow in the repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GitRef {
    /// The tip of a branch.
    Branch(String),
    /// A tag, a commit id (full or abbreviated) or any revision `git rev-parse` understands.
    Rev(String),
}

/// Credentials and host verification.
#[derive(Clone, Debug, Default)]
pub struct GitAuth {
    pub token: Option<Secret>,
    pub ssh_key: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct GitConfig {
    /// `https://...`, `ssh://...`, `git@host:org/repo.git`, or a local path.
    pub url: String,
    pub reference: GitRef,
    /// Environment directories inside the repository.
    pub paths: Vec<PathBuf>,
    /// Parent directory of the bare cache repository.
    pub cache_dir: PathBuf,
    pub auth: GitAuth,
}

/// A Git source. Fetches run on a blocking thread, one at a time.
pub struct GitSource {
    config: GitConfig,
    paths: Vec<PathBuf>,
    cache: PathBuf,
    verifier: Option<Verifier>,
    last: Mutex<Option<Snapshot>>,
    /// Serialises fetches into the cache repository.
    lock: Arc<tokio::sync::Mutex<()>>,
    /// A fetch has filled the cache once (so a missing cache directory means it was deleted).
    filled: AtomicBool,
    /// What the last fetch repaired, until `take_repair`.
    repair: Mutex<Option<String>>,
}

impl GitSource {
    pub fn new(config: GitConfig, verifier: Option<Verifier>) -> Result<GitSource, SourceError> {
        let paths = config
            .paths
            .iter()
            .map(|p| normalize(p))
            .collect::<Result<Vec<_>, _>>()?;
        let url = absolute_if_local(&config.url);
        check_token_transport(&url, &config.auth)?;
        let config = GitConfig { url, ..config };
        // One cache repository per URL, so several agents can share a cache directory.
        let digest = Sha256::digest(config.url.as_bytes());
        let name: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let cache = config.cache_dir.join(format!("repo-{name}.git"));
        Ok(GitSource {
            config,
            paths,
            cache,
            verifier,
            last: Mutex::new(None),
            lock: Arc::new(tokio::sync::Mutex::new(())),
            filled: AtomicBool::new(false),
            repair: Mutex::new(None),
        })
    }

    fn corrupt(&self, reason: impl Into<String>) -> SourceError {
        SourceError::CorruptCache {
            path: self.cache.display().to_string(),
            reason: reason.into(),
        }
    }

    /// Fetches and returns the commit the configured ref points at (blocking).
    pub fn fetch_commit(&self) -> Result<Oid, SourceError> {
        let repo = open_or_init(&self.cache).map_err(|e| match e {
            OpenError::Unreadable(e) => self.corrupt(format!("opening: {}", e.message())),
            OpenError::Source(e) => e,
        })?;
        if let GitRef::Rev(rev) = &self.config.reference {
            // A full commit id never moves: once we have it, no fetch is needed.
            if let Ok(oid) = Oid::from_str(rev)
                && rev.len() == 40
                && repo.find_commit(oid).is_ok()
            {
                return Ok(oid);
            }
        }
        let started = Instant::now();
        self.fetch_into(&repo)?;
        tracing::debug!(seconds = started.elapsed().as_secs_f64(), "fetched");
        self.resolve(&repo)
    }

    fn fetch_into(&self, repo: &Repository) -> Result<(), SourceError> {
        let display = redact_url(&self.config.url);
        let mut remote = repo
            .remote_anonymous(&self.config.url)
            .map_err(|e| SourceError::git(format!("remote {display}"), e))?;
        let refspecs: Vec<String> = match &self.config.reference {
            GitRef::Branch(b) => vec![format!("+refs/heads/{b}:refs/remotes/origin/{b}")],
            GitRef::Rev(_) => vec![
                "+refs/heads/*:refs/remotes/origin/*".to_string(),
                "+refs/tags/*:refs/tags/*".to_string(),
            ],
        };
        let mut options = FetchOptions::new();
        options.remote_callbacks(callbacks(&self.config.auth, &self.config.url));
        options.download_tags(AutotagOption::None);
        options.prune(git2::FetchPrune::On);
        remote
            .fetch(&refspecs, Some(&mut options), None)
            .map_err(|e| {
                if is_local_damage(&e) {
                    self.corrupt(format!("fetching {display}: {}", e.message()))
                } else {
                    SourceError::git(format!("fetching {display}"), e)
                }
            })
    }

    fn resolve(&self, repo: &Repository) -> Result<Oid, SourceError> {
        let (spec, rev) = match &self.config.reference {
            GitRef::Branch(b) => (format!("refs/remotes/origin/{b}"), b.clone()),
            GitRef::Rev(r) => (r.clone(), r.clone()),
        };
        let not_found = || SourceError::RevisionNotFound {
            repo: redact_url(&self.config.url),
            rev: rev.clone(),
        };
        let resolved = repo
            .revparse_single(&spec)
            .and_then(|object| object.peel_to_commit());
        match resolved {
            Ok(commit) => Ok(commit.id()),
            // The ref is there but what it names cannot be read: missing objects, not a typo.
            Err(err) => match self.damaged_ref(repo, &spec) {
                Some(reason) => Err(self.corrupt(format!("{reason} ({})", err.message()))),
                None => Err(not_found()),
            },
        }
    }

    /// Why a ref the cache holds cannot be followed, if it holds one under `spec`.
    fn damaged_ref(&self, repo: &Repository, spec: &str) -> Option<String> {
        let candidates = match &self.config.reference {
            GitRef::Branch(_) => vec![spec.to_string()],
            GitRef::Rev(r) => vec![format!("refs/tags/{r}"), format!("refs/remotes/origin/{r}")],
        };
        for name in candidates {
            match repo.find_reference(&name) {
                Ok(reference) => {
                    let target = reference
                        .resolve()
                        .ok()
                        .and_then(|r| r.target())
                        .map(|oid| oid.to_string())
                        .unwrap_or_default();
                    return Some(format!("{name} points to a missing object {target}"));
                }
                Err(e) if e.code() != ErrorCode::NotFound => {
                    return Some(format!("{name} is unreadable: {}", e.message()));
                }
                Err(_) => {}
            }
        }
        None
    }

    /// Reads the snapshot of `commit` (blocking), verifying its signature if configured.
    pub fn snapshot_of(&self, commit: Oid) -> Result<Snapshot, SourceError> {
        let repo = open_or_init(&self.cache).map_err(|e| match e {
            OpenError::Unreadable(e) => self.corrupt(format!("opening: {}", e.message())),
            OpenError::Source(e) => e,
        })?;
        if let Some(verifier) = &self.verifier {
            let key = verifier.verify_commit(&repo, commit)?;
            tracing::debug!(commit = %commit, key = %key, "commit signature verified");
        }
        let mut envs: BTreeMap<PathBuf, Result<Arc<EnvTree>, String>> = BTreeMap::new();
        for path in &self.paths {
            let files = match read_tree(&repo, commit, path) {
                Ok(files) => Ok(Arc::new(files)),
                // A commit, tree or blob the fetched commit needs is not in the cache.
                Err(SourceError::Git { context, message }) => {
                    return Err(self.corrupt(format!("{context}: {message}")));
                }
                Err(e) => Err(e.to_string()),
            };
            envs.insert(path.clone(), files);
        }
        Ok(Snapshot {
            revision: commit.to_string(),
            envs,
        })
    }

    /// Fetches; a cache found deleted or unusable is removed, re-cloned from the remote in
    /// the same call and reported through `take_repair`.
    fn fetch_blocking(&self) -> Result<Snapshot, SourceError> {
        let cache = self.cache.display().to_string();
        if self.filled.load(Ordering::Acquire) && !self.cache.exists() {
            tracing::warn!(cache = %cache, "git cache disappeared, cloning again from the remote");
            self.note_repair(format!(
                "git cache {cache} disappeared; cloned again from the remote"
            ));
        }
        let damage = match self.fetch_snapshot() {
            Err(err @ SourceError::CorruptCache { .. }) => err,
            other => return other,
        };
        tracing::warn!(error = %damage, "rebuilding the git cache from the remote");
        if let Ok(mut last) = self.last.lock() {
            *last = None;
        }
        std::fs::remove_dir_all(&self.cache).map_err(|e| SourceError::io(&self.cache, e))?;
        self.note_repair(format!("{damage}; rebuilt from the remote"));
        self.fetch_snapshot()
    }

    fn note_repair(&self, message: String) {
        if let Ok(mut repair) = self.repair.lock() {
            *repair = Some(message);
        }
    }

    fn fetch_snapshot(&self) -> Result<Snapshot, SourceError> {
        let commit = self.fetch_commit()?;
        self.filled.store(true, Ordering::Release);
        if let Ok(last) = self.last.lock()
            && let Some(snapshot) = last.as_ref()
            && snapshot.revision == commit.to_string()
        {
            return Ok(snapshot.clone());
        }
        let snapshot = self.snapshot_of(commit)?;
        if let Ok(mut last) = self.last.lock() {
            *last = Some(snapshot.clone());
        }
        Ok(snapshot)
    }
}

#[async_trait]
impl Source for Arc<GitSource> {
    fn describe(&self) -> String {
        let reference = match &self.config.reference {
            GitRef::Branch(b) => format!("branch {b}"),
            GitRef::Rev(r) => format!("rev {r}"),
        };
        format!("{} ({reference})", redact_url(&self.config.url))
    }

    async fn fetch(&self) -> Result<Snapshot, SourceError> {
        let _guard = self.lock.lock().await;
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || this.fetch_blocking())
            .await
            .map_err(|e| SourceError::Config(format!("fetch task failed: {e}")))?
    }

    fn take_repair(&self) -> Option<String> {
        self.repair.lock().ok().and_then(|mut r| r.take())
    }
}

enum OpenError {
    /// The cache exists but is not a readable repository.
    Unreadable(git2::Error),
    Source(SourceError),
}

fn open_or_init(path: &Path) -> Result<Repository, OpenError> {
    if path.exists() {
        return Repository::open_bare(path).map_err(OpenError::Unreadable);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| OpenError::Source(SourceError::io(parent, e)))?;
    }
    Repository::init_bare(path).map_err(|e| {
        OpenError::Source(SourceError::git(
            format!("creating cache {}", path.display()),
            e,
        ))
    })
}

/// Errors that come from the cache's own objects or refs, not from the network or the remote.
fn is_local_damage(err: &git2::Error) -> bool {
    matches!(
        err.class(),
        ErrorClass::Odb
            | ErrorClass::Object
            | ErrorClass::Zlib
            | ErrorClass::Reference
            | ErrorClass::Repository
            | ErrorClass::Index
            | ErrorClass::Tree
    )
}

/// A token travels only over https, or over plain http to this machine (a local mirror, tests).
pub(crate) fn check_token_transport(url: &str, auth: &GitAuth) -> Result<(), SourceError> {
    if auth.token.is_none() {
        return Ok(());
    }
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(()); // scp-like ssh address or a local path: the token is never used
    };
    if parsed.scheme() != "http" {
        return Ok(());
    }
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    if loopback {
        return Ok(());
    }
    Err(SourceError::Config(format!(
        "refusing to send the git token over plain http to {}; use an https URL",
        parsed.host_str().unwrap_or("")
    )))
}

/// Local paths become absolute so the cache key and the remote do not depend on the cwd.
fn absolute_if_local(url: &str) -> String {
    let looks_remote = url.contains("://") || (url.contains('@') && url.contains(':'));
    if looks_remote {
        return url.to_string();
    }
    std::path::absolute(url)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| url.to_string())
}

pub(crate) fn callbacks<'a>(auth: &'a GitAuth, url: &str) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    let mut attempts = 0u32;
    callbacks.credentials(move |_url, username, allowed| {
        // libgit2 calls again after a rejected credential; one try each is enough.
        attempts += 1;
        if attempts > 1 {
            return Err(git2::Error::from_str(
                "authentication failed (credentials rejected)",
            ));
        }
        if allowed.contains(CredentialType::SSH_KEY)
            && let Some(key) = &auth.ssh_key
        {
            return Cred::ssh_key(username.unwrap_or("git"), None, key, None);
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
            && let Some(token) = &auth.token
        {
            return Cred::userpass_plaintext("x-access-token", token.expose());
        }
        Err(git2::Error::from_str(
            "repository needs credentials; none configured",
        ))
    });
    let port = ssh_port(url);
    let known_hosts = auth.known_hosts.clone();
    callbacks.certificate_check(move |cert, host| {
        let Some(hostkey) = cert.as_hostkey() else {
            // TLS: let libgit2 validate against the system trust store.
            return Ok(CertificateCheckStatus::CertificatePassthrough);
        };
        let Some(path) = &known_hosts else {
            return Err(git2::Error::from_str(
                "ssh host key cannot be verified: set --known-hosts",
            ));
        };
        let raw = hostkey
            .hostkey()
            .ok_or_else(|| git2::Error::from_str("ssh server sent no host key"))?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| git2::Error::from_str(&format!("{}: {e}", path.display())))?;
        match check_host_key(&text, host, port, raw) {
            HostKeyCheck::Match => Ok(CertificateCheckStatus::CertificateOk),
            HostKeyCheck::Revoked => Err(git2::Error::from_str(&format!(
                "ssh host key of {host} is marked @revoked in known_hosts"
            ))),
            HostKeyCheck::Mismatch => Err(git2::Error::from_str(&format!(
                "ssh host key of {host} does not match known_hosts"
            ))),
            HostKeyCheck::Unknown => Err(git2::Error::from_str(&format!(
                "{host} is not in known_hosts (hashed entries are not supported)"
            ))),
        }
    });
    callbacks
}

fn ssh_port(url: &str) -> u16 {
    url::Url::parse(url)
        .ok()
        .filter(|u| u.scheme() == "ssh")
        .and_then(|u| u.port())
        .unwrap_or(22)
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HostKeyCheck {
    Match,
    Mismatch,
    Revoked,
    Unknown,
}

/// Checks a raw SSH host key blob against `known_hosts` text.
pub(crate) fn check_host_key(known_hosts: &str, host: &str, port: u16, raw: &[u8]) -> HostKeyCheck {
    let Ok(offered) = ssh_key::PublicKey::from_bytes(raw) else {
        return HostKeyCheck::Mismatch;
    };
    let name = if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    };
    let mut known_for_host = false;
    for entry in KnownHosts::new(known_hosts).flatten() {
        let HostPatterns::Patterns(patterns) = entry.host_patterns() else {
            continue;
        };
        if !host_matches(patterns, &name) {
            continue;
        }
        let same = entry.public_key().key_data() == offered.key_data();
        match entry.marker() {
            Some(Marker::Revoked) if same => return HostKeyCheck::Revoked,
            Some(_) => continue,
            None if same => return HostKeyCheck::Match,
            None => known_for_host = true,
        }
    }
    if known_for_host {
        HostKeyCheck::Mismatch
    } else {
        HostKeyCheck::Unknown
    }
}

fn host_matches(patterns: &[String], name: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        if let Some(negated) = pattern.strip_prefix('!') {
            if glob(negated, name) {
                return false;
            }
        } else if glob(pattern, name) {
            matched = true;
        }
    }
    matched
}

/// known_hosts wildcards: `*` any run, `?` one character.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::private::{Ed25519Keypair, PrivateKey};

    fn public(seed: u8) -> ssh_key::PublicKey {
        PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
            .public_key()
            .clone()
    }

    #[test]
    fn host_keys_are_checked_against_known_hosts() {
        let good = public(1);
        let text = format!(
            "github.com,*.example.org {}\n[git.internal]:2222 {}\n",
            good.to_openssh().unwrap(),
            good.to_openssh().unwrap()
        );
        let raw = good.to_bytes().unwrap();
        assert_eq!(
            check_host_key(&text, "github.com", 22, &raw),
            HostKeyCheck::Match
        );
        assert_eq!(
            check_host_key(&text, "a.example.org", 22, &raw),
            HostKeyCheck::Match
        );
        assert_eq!(
            check_host_key(&text, "git.internal", 2222, &raw),
            HostKeyCheck::Match
        );
        assert_eq!(
            check_host_key(&text, "git.internal", 22, &raw),
            HostKeyCheck::Unknown
        );
        let other = public(2).to_bytes().unwrap();
        assert_eq!(
            check_host_key(&text, "github.com", 22, &other),
            HostKeyCheck::Mismatch
        );
    }

    #[test]
    fn a_revoked_host_key_is_refused() {
        let key = public(1).to_openssh().unwrap();
        let text = format!("@revoked * {key}\nexample.com {key}\n");
        let raw = public(1).to_bytes().unwrap();
        assert_eq!(
            check_host_key(&text, "example.com", 22, &raw),
            HostKeyCheck::Revoked
        );
    }

    #[test]
    fn a_token_is_never_sent_over_plain_http_to_another_host() {
        let auth = GitAuth {
            token: Some(Secret::new("tok")),
            ..GitAuth::default()
        };
        let err = check_token_transport("http://git.example.com/org/repo.git", &auth).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid source configuration: refusing to send the git token over plain http to git.example.com; use an https URL"
        );
        for fine in [
            "https://git.example.com/org/repo.git",
            "http://127.0.0.1:8080/repo.git",
            "http://[::1]:8080/repo.git",
            "http://localhost/repo.git",
            "git@github.com:org/repo.git",
            "/srv/repo",
        ] {
            assert!(check_token_transport(fine, &auth).is_ok(), "{fine}");
        }
        let no_token = GitAuth::default();
        assert!(check_token_transport("http://git.example.com/r.git", &no_token).is_ok());
    }

    #[test]
    fn local_paths_become_absolute_and_urls_stay() {
        assert!(absolute_if_local("repo").starts_with('/'));
        assert_eq!(absolute_if_local("https://h/r.git"), "https://h/r.git");
        assert_eq!(absolute_if_local("git@h:o/r.git"), "git@h:o/r.git");
    }
}
