//! Commit signature verification on real signed commits.
//!
//! The OpenPGP cases use commits that git signed through GnuPG 2.2 and the public keys gpg
//! exported (`tests/fixtures/openpgp/make.sh` made them; tests never run gpg): each raw commit
//! object is written into a fresh repository and checked through libgit2's signature
//! extraction, exactly as the agent does. Cases gpg cannot easily produce use keys made with
//! rPGP (`support/openpgp.rs`).

use std::path::{Path, PathBuf};

use flightdeck::source::SourceError;
use flightdeck::source::verify::{Verifier, openpgp};
use flightdeck_testkit::openpgp::PgpKey;
use git2::{ObjectType, Oid, Repository};
use ssh_key::private::{Ed25519Keypair, PrivateKey};
use ssh_key::{HashAlg, LineEnding};

const ALICE: &str = "DA4E3E96D49CD422A4E9FA75758D6E0BAFD8B6B1";
const BOB_SIGNING_SUBKEY: &str = "17CCBEC1169EE1A57B10EAB447D09386567ADCF4";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/openpgp")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

/// A repository holding the empty tree and one raw commit object.
struct Repo {
    _dir: tempfile::TempDir,
    repo: Repository,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        repo.treebuilder(None).unwrap().write().unwrap();
        Repo { _dir: dir, repo }
    }

    fn insert(&self, raw: &[u8]) -> Oid {
        self.repo
            .odb()
            .unwrap()
            .write(ObjectType::Commit, raw)
            .unwrap()
    }

    /// Writes a fixture commit, checking it kept the id git gave it.
    fn fixture_commit(&self, who: &str) -> Oid {
        let oid = self.insert(&read(&format!("{who}.commit")));
        let expected = String::from_utf8(read(&format!("{who}.oid"))).unwrap();
        assert_eq!(oid.to_string(), expected.trim(), "{who}.commit round-trips");
        oid
    }
}

fn verifier(key_files: &[&str]) -> Verifier {
    let paths: Vec<PathBuf> = key_files.iter().map(|f| fixture(f)).collect();
    Verifier::from_files(&paths).unwrap()
}

fn refusal(result: Result<String, SourceError>) -> String {
    match result {
        Err(SourceError::Unverified { reason, .. }) => reason,
        other => panic!("expected an unverified commit, got {other:?}"),
    }
}

#[test]
fn commits_gpg_signed_by_trusted_keys_verify_with_primary_keys_and_signing_subkeys() {
    let repo = Repo::new();
    let trusted = verifier(&["alice.asc", "bob.asc"]);
    let alice = repo.fixture_commit("alice");
    assert_eq!(
        trusted.verify_commit(&repo.repo, alice).unwrap(),
        format!("openpgp:{ALICE}")
    );
    // Bob's primary key only certifies; gpg signed with his RSA-3072 signing subkey.
    let bob = repo.fixture_commit("bob");
    assert_eq!(
        trusted.verify_commit(&repo.repo, bob).unwrap(),
        format!("openpgp:{BOB_SIGNING_SUBKEY}")
    );
}

#[test]
fn a_commit_by_an_untrusted_key_names_the_key() {
    let repo = Repo::new();
    let mallory = repo.fixture_commit("mallory");
    let reason = refusal(verifier(&["alice.asc", "bob.asc"]).verify_commit(&repo.repo, mallory));
    assert!(reason.starts_with("signed by OpenPGP key "), "{reason}");
    assert!(reason.ends_with(", which is not a trusted key"), "{reason}");
    // Once trusted, the same commit verifies: the refusal was about trust, not the signature.
    assert!(
        verifier(&["mallory.asc"])
            .verify_commit(&repo.repo, mallory)
            .is_ok()
    );
}

#[test]
fn a_key_that_expired_before_the_commit_was_signed_is_refused() {
    let repo = Repo::new();
    let carol = repo.fixture_commit("carol");
    let reason = refusal(verifier(&["carol.asc"]).verify_commit(&repo.repo, carol));
    assert!(
        reason.contains(
            "expired on 2025-01-02 00:00:00 UTC, before the commit was signed on 2025-01-03 00:00:00 UTC"
        ),
        "{reason}"
    );
}

#[test]
fn a_revoked_key_is_refused() {
    let repo = Repo::new();
    let dave = repo.fixture_commit("dave");
    let reason = refusal(verifier(&["dave.asc"]).verify_commit(&repo.repo, dave));
    assert!(reason.ends_with("is revoked"), "{reason}");
}

#[test]
fn a_commit_changed_after_signing_does_not_verify() {
    let repo = Repo::new();
    let raw = String::from_utf8(read("alice.commit")).unwrap();
    let tampered = raw.replace("signed by alice", "signed by alice, honest");
    assert_ne!(raw, tampered);
    let oid = repo.insert(tampered.as_bytes());
    let reason = refusal(verifier(&["alice.asc"]).verify_commit(&repo.repo, oid));
    assert!(reason.starts_with("signature does not verify"), "{reason}");
}

#[test]
fn an_unsigned_commit_is_refused() {
    let repo = Repo::new();
    let raw = String::from_utf8(read("alice.commit")).unwrap();
    let header_end = raw.find("gpgsig ").unwrap();
    let body_start = raw.find("\n\n").unwrap();
    let unsigned = format!("{}{}", &raw[..header_end], &raw[body_start + 1..]);
    let oid = repo.insert(unsigned.as_bytes());
    let reason = refusal(verifier(&["alice.asc"]).verify_commit(&repo.repo, oid));
    assert_eq!(reason, "commit is not signed");
}

#[test]
fn key_files_may_be_binary_armored_or_several_keys_in_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = dir.path().join("team.asc");
    let mut both = read("alice.asc");
    both.extend(read("bob.asc"));
    std::fs::write(&keyring, both).unwrap();
    let verifier = Verifier::from_files(&[fixture("alice.gpg"), keyring]).unwrap();
    let repo = Repo::new();
    for who in ["alice", "bob"] {
        let oid = repo.fixture_commit(who);
        assert!(verifier.verify_commit(&repo.repo, oid).is_ok(), "{who}");
    }
}

#[test]
fn bad_key_files_are_configuration_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, content: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    };
    let cases = [
        (
            write(
                "secret.asc",
                b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nxyz\n-----END PGP PRIVATE KEY BLOCK-----\n",
            ),
            "holds an OpenPGP secret key; give only the public key",
        ),
        (
            write(
                "id_ed25519",
                b"-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n",
            ),
            "holds a private key; give only the public key",
        ),
        (
            write(
                "broken.asc",
                b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64 at all!\n-----END PGP PUBLIC KEY BLOCK-----\n",
            ),
            "not a valid OpenPGP public key",
        ),
        (write("binary.gpg", &[0x99, 0x00, 0x01]), "not a valid OpenPGP public key"),
    ];
    for (path, expected) in cases {
        let err = Verifier::from_files(std::slice::from_ref(&path))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains(expected), "{err}");
        assert!(
            !err.contains("abc") && !err.contains("xyz"),
            "no key material: {err}"
        );
    }
}

#[test]
fn a_signature_kind_without_configured_keys_says_so() {
    let data = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\nmsg\n";
    let ssh = PrivateKey::from(Ed25519Keypair::from_seed(&[1; 32]));
    let ssh_sig = ssh
        .sign("git", HashAlg::Sha512, data)
        .unwrap()
        .to_pem(LineEnding::LF)
        .unwrap();
    let err = verifier(&["alice.asc"])
        .verify_signature(ssh_sig.as_bytes(), data)
        .unwrap_err();
    assert_eq!(
        err,
        "signed with an ssh key, but no ssh keys are configured in --verify-keys"
    );

    let pgp = PgpKey::new(1, "Erin <erin@example.com>");
    let ssh_only = Verifier::from_keys(vec![ssh.public_key().clone()]);
    let err = ssh_only
        .verify_signature(pgp.sign(data).as_bytes(), data)
        .unwrap_err();
    assert_eq!(
        err,
        "signed with an OpenPGP key, but no OpenPGP keys are configured in --verify-keys"
    );
    let err = ssh_only
        .verify_signature(b"-----BEGIN SIGNED MESSAGE-----\nx509\n", data)
        .unwrap_err();
    assert!(err.starts_with("unsupported signature format"), "{err}");
}

#[test]
fn rpgp_keys_sign_with_a_subkey_and_a_certification_only_primary_is_refused() {
    let data = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\nmsg\n";
    let key = PgpKey::with_signing_subkey(7, "Frank <frank@example.com>");
    let certs = openpgp::parse_certificates(key.public_armored().as_bytes()).unwrap();
    let verifier = Verifier::from_certificates(certs.clone());
    let by = verifier
        .verify_signature(key.sign(data).as_bytes(), data)
        .unwrap();
    assert!(by.starts_with("openpgp:"), "{by}");
    assert_ne!(
        by,
        format!("openpgp:{}", certs[0].fingerprint()),
        "the subkey signed"
    );

    let err = verifier
        .verify_signature(key.sign_with_primary(data).as_bytes(), data)
        .unwrap_err();
    assert!(err.ends_with("is not certified for signing"), "{err}");
}

#[test]
fn a_signature_over_sha1_is_refused() {
    let repo = Repo::new();
    let trusted = verifier(&["bob.asc"]);
    // The same key and commit contents, signed by gpg with --digest-algo SHA1.
    let sha1 = repo.fixture_commit("bob-sha1");
    let reason = refusal(trusted.verify_commit(&repo.repo, sha1));
    assert_eq!(
        reason,
        "signature uses SHA1, which is not collision resistant; sign with SHA-256 or stronger"
    );
    let sha2 = repo.fixture_commit("bob");
    assert!(trusted.verify_commit(&repo.repo, sha2).is_ok());
}
