//! The Git source against real repositories made with git2 in temp dirs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flightdeck::source::verify::Verifier;
use flightdeck::source::{GitAuth, GitConfig, GitRef, GitSource, Source, SourceError};
use git2::{Oid, Repository, Signature};
use ssh_key::private::{Ed25519Keypair, PrivateKey};
use ssh_key::{HashAlg, LineEnding};

struct Upstream {
    dir: tempfile::TempDir,
    repo: Repository,
}

impl Upstream {
    fn new() -> Upstream {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        Upstream { dir, repo }
    }

    fn write(&self, path: &str, content: &str) {
        let full = self.dir.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }

    fn tree_and_parents(&self) -> (git2::Tree<'_>, Vec<git2::Commit<'_>>) {
        let mut index = self.repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.update_all(["*"], None).unwrap();
        index.write().unwrap();
        let tree = self.repo.find_tree(index.write_tree().unwrap()).unwrap();
        let parents = match self.repo.refname_to_id("refs/heads/main") {
            Ok(id) => vec![self.repo.find_commit(id).unwrap()],
            Err(_) => vec![],
        };
        (tree, parents)
    }

    fn commit(&self, message: &str) -> Oid {
        let sig = Signature::now("t", "t@example.com").unwrap();
        let (tree, parents) = self.tree_and_parents();
        let parents: Vec<&git2::Commit> = parents.iter().collect();
        self.repo
            .commit(
                Some("refs/heads/main"),
                &sig,
                &sig,
                message,
                &tree,
                &parents,
            )
            .unwrap()
    }

    fn commit_signed(&self, message: &str, key: &PrivateKey) -> Oid {
        let sig = Signature::now("t", "t@example.com").unwrap();
        let (tree, parents) = self.tree_and_parents();
        let parents: Vec<&git2::Commit> = parents.iter().collect();
        let buf = self
            .repo
            .commit_create_buffer(&sig, &sig, message, &tree, &parents)
            .unwrap();
        let content = std::str::from_utf8(&buf).unwrap();
        let armored = key
            .sign("git", HashAlg::Sha512, content.as_bytes())
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap();
        let oid = self.repo.commit_signed(content, &armored, None).unwrap();
        self.repo
            .reference("refs/heads/main", oid, true, "signed commit")
            .unwrap();
        oid
    }
}

fn source(
    upstream: &Upstream,
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
    let upstream = Upstream::new();
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
    let upstream = Upstream::new();
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
    let upstream = Upstream::new();
    upstream.write("environments/dev/x.yaml", "v: 1\n");
    let signed = upstream.commit_signed("signed", &trusted);
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
    upstream.commit_signed("by a stranger", &stranger);
    let err = src.fetch().await.unwrap_err();
    assert!(err.to_string().contains("not a trusted key"), "{err}");
}
