//! The Git source against real repositories made with git2 in temp dirs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flightdeck::source::verify::Verifier;
use flightdeck::source::{GitAuth, GitConfig, GitRef, GitSource, Source, SourceError};
use flightdeck_testkit::GitRepo;
use ssh_key::private::{Ed25519Keypair, PrivateKey};
use ssh_key::{HashAlg, LineEnding};

/// Signs a commit's bytes with an SSH key, as git does with `gpg.format = ssh`.
fn ssh_sign(key: &PrivateKey, data: &[u8]) -> String {
    key.sign("git", HashAlg::Sha512, data)
        .unwrap()
        .to_pem(LineEnding::LF)
        .unwrap()
}

fn source(
    upstream: &GitRepo,
    cache: &Path,
    reference: GitRef,
    verifier: Option<Verifier>,
) -> Arc<GitSource> {
    let config = GitConfig {
        url: upstream.dir.path().display().to_string(),
        reference,
        paths: vec![
            PathBuf::from("environments/dev"),
            PathBuf::from("environments/missing"),
        ],
        cache_dir: cache.to_path_buf(),
        auth: GitAuth::default(),
    };
    Arc::new(GitSource::new(config, verifier).unwrap())
}

fn file(snapshot: &flightdeck::source::Snapshot, path: &str) -> String {
    let files = snapshot.envs[Path::new("environments/dev")]
        .as_ref()
        .unwrap();
    String::from_utf8(files[Path::new(path)].clone()).unwrap()
}

#[tokio::test]
async fn fetches_follow_the_branch_and_read_files_from_the_commit_tree() {
    let upstream = GitRepo::new();
    upstream.write("environments/dev/environment.yaml", "name: dev\n");
    upstream.write("environments/dev/endpoints/a.yaml", "traffic: 1\n");
    upstream.write("README.md", "not part of any environment\n");
    let first = upstream.commit("first");
    let cache = tempfile::tempdir().unwrap();
    let src = source(&upstream, cache.path(), GitRef::Branch("main".into()), None);

    let snap = src.fetch().await.unwrap();
    assert_eq!(snap.revision, first.to_string());
    assert_eq!(
        file(&snap, "environments/dev/endpoints/a.yaml"),
        "traffic: 1\n"
    );
    let files = snap.envs[Path::new("environments/dev")].as_ref().unwrap();
    assert_eq!(files.len(), 2, "only the environment's own files");
    let missing = snap.envs[Path::new("environments/missing")]
        .as_ref()
        .unwrap_err();
    assert!(
        missing.contains("environments/missing: not found"),
        "{missing}"
    );

    // Uncommitted edits in the upstream working tree are invisible; commits are picked up.
    upstream.write("environments/dev/endpoints/a.yaml", "traffic: 2\n");
    assert_eq!(src.fetch().await.unwrap().revision, first.to_string());
    let second = upstream.commit("second");
    let snap = src.fetch().await.unwrap();
    assert_eq!(snap.revision, second.to_string());
    assert_eq!(
        file(&snap, "environments/dev/endpoints/a.yaml"),
        "traffic: 2\n"
    );
    assert!(src.describe().ends_with("(branch main)"));
}

#[tokio::test]
async fn a_pinned_revision_stays_put_when_the_branch_moves() {
    let upstream = GitRepo::new();
    upstream.write("environments/dev/x.yaml", "v: 1\n");
    let first = upstream.commit("first");
    upstream.write("environments/dev/x.yaml", "v: 2\n");
    upstream.commit("second");
    let cache = tempfile::tempdir().unwrap();
    let pinned = source(
        &upstream,
        cache.path(),
        GitRef::Rev(first.to_string()),
        None,
    );
    let snap = pinned.fetch().await.unwrap();
    assert_eq!(snap.revision, first.to_string());
    assert_eq!(file(&snap, "environments/dev/x.yaml"), "v: 1\n");

    let unknown = source(&upstream, cache.path(), GitRef::Branch("nope".into()), None);
    let err = unknown.fetch().await.unwrap_err();
    assert!(
        matches!(
            err,
            SourceError::Git { .. } | SourceError::RevisionNotFound { .. }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn with_verify_keys_only_commits_signed_by_a_trusted_key_are_read() {
    let trusted = PrivateKey::from(Ed25519Keypair::from_seed(&[7; 32]));
    let stranger = PrivateKey::from(Ed25519Keypair::from_seed(&[8; 32]));
    let verifier = Verifier::from_keys(vec![trusted.public_key().clone()]);
    let upstream = GitRepo::new();
    upstream.write("environments/dev/x.yaml", "v: 1\n");
    let signed = upstream.commit_signed("signed", |d| ssh_sign(&trusted, d));
    let cache = tempfile::tempdir().unwrap();
    let src = source(
        &upstream,
        cache.path(),
        GitRef::Branch("main".into()),
        Some(verifier),
    );
    assert_eq!(src.fetch().await.unwrap().revision, signed.to_string());

    upstream.write("environments/dev/x.yaml", "v: 2\n");
    upstream.commit("unsigned");
    let err = src.fetch().await.unwrap_err();
    assert!(err.to_string().contains("commit is not signed"), "{err}");
    assert_eq!(err.kind(), "verify");

    upstream.write("environments/dev/x.yaml", "v: 3\n");
    upstream.commit_signed("by a stranger", |d| ssh_sign(&stranger, d));
    let err = src.fetch().await.unwrap_err();
    assert!(err.to_string().contains("not a trusted key"), "{err}");
}
