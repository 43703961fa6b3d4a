//! Commit signature verification: loading the trusted keys, and checking one commit signed by
//! GnuPG with an Ed25519 primary key and with an RSA-3072 signing subkey, and one signed with an
//! SSH Ed25519 key (the agent does this once per new commit at the branch tip).
//!
//! Run: `cargo bench --bench verify` (figures in docs/benchmarks.md). The OpenPGP commits are the
//! fixtures in tests/fixtures/openpgp, written into a bare repository once.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use flightdeck::source::verify::Verifier;
use git2::{ObjectType, Oid, Repository, Signature};
use ssh_key::private::{Ed25519Keypair, PrivateKey};
use ssh_key::{HashAlg, LineEnding};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/openpgp")
        .join(name)
}

fn insert(repo: &Repository, who: &str) -> Oid {
    let raw = std::fs::read(fixture(&format!("{who}.commit"))).unwrap();
    repo.odb().unwrap().write(ObjectType::Commit, &raw).unwrap()
}

fn ssh_signed_commit(repo: &Repository, key: &PrivateKey) -> Oid {
    let tree = repo
        .find_tree(repo.treebuilder(None).unwrap().write().unwrap())
        .unwrap();
    let sig = Signature::now("bench", "bench@example.com").unwrap();
    let buffer = repo
        .commit_create_buffer(&sig, &sig, "ssh-signed", &tree, &[])
        .unwrap();
    let content = std::str::from_utf8(&buffer).unwrap();
    let armored = key
        .sign("git", HashAlg::Sha512, content.as_bytes())
        .unwrap()
        .to_pem(LineEnding::LF)
        .unwrap();
    repo.commit_signed(content, &armored, None).unwrap()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init_bare(dir.path()).unwrap();
    repo.treebuilder(None).unwrap().write().unwrap();
    let ssh_key = PrivateKey::from(Ed25519Keypair::from_seed(&[9; 32]));
    let signers = dir.path().join("allowed_signers");
    std::fs::write(
        &signers,
        format!(
            "ops@example.com {}\n",
            ssh_key.public_key().to_openssh().unwrap()
        ),
    )
    .unwrap();
    let keys = [fixture("alice.asc"), fixture("bob.asc"), signers];
    let verifier = Verifier::from_files(&keys).unwrap();

    let mut group = c.benchmark_group("verify");
    group.bench_function("load keys (2 OpenPGP + 1 ssh)", |b| {
        b.iter(|| Verifier::from_files(black_box(&keys)).unwrap())
    });
    for (name, commit) in [
        ("commit, OpenPGP Ed25519", insert(&repo, "alice")),
        ("commit, OpenPGP RSA-3072 subkey", insert(&repo, "bob")),
        ("commit, ssh Ed25519", ssh_signed_commit(&repo, &ssh_key)),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| verifier.verify_commit(&repo, black_box(commit)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
