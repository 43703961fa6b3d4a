//! Commit signature verification against configured public keys, SSH or OpenPGP.
//!
//! libgit2's `extract_signature` yields a commit's armored signature (the `gpgsig` header) and
//! the exact bytes it signs. The armor says which kind it is: `SSH SIGNATURE` (git's
//! `gpg.format = ssh`, see [`ssh`]) or `PGP SIGNATURE` (git's default, gpg, see [`openpgp`]).
//! Anything else, such as an X.509 (`gpgsm`) signature, is refused.

pub mod openpgp;
pub mod ssh;

use std::path::PathBuf;

use git2::{Oid, Repository};
use ssh_key::PublicKey;

pub use openpgp::Certificate;
pub use ssh::GIT_NAMESPACE;

use super::SourceError;

/// The keys whose signatures are trusted.
#[derive(Clone, Debug, Default)]
pub struct Verifier {
    ssh: Vec<PublicKey>,
    openpgp: Vec<Certificate>,
}

impl Verifier {
    /// Reads keys from files, each one of: `authorized_keys`-style lines
    /// (`ssh-ed25519 AAAA... comment`), a git `allowed_signers` file
    /// (`principal [options] ssh-ed25519 AAAA...`), or OpenPGP public keys as
    /// `gpg --export [--armor]` writes them (any number of keys per file).
    pub fn from_files(paths: &[PathBuf]) -> Result<Verifier, SourceError> {
        let mut verifier = Verifier::default();
        for path in paths {
            let bytes = std::fs::read(path).map_err(|e| SourceError::io(path, e))?;
            let named = |e: String| SourceError::Config(format!("{}: {e}", path.display()));
            if openpgp::looks_like_openpgp(&bytes) {
                verifier
                    .openpgp
                    .extend(openpgp::parse_certificates(&bytes).map_err(named)?);
                continue;
            }
            let text = String::from_utf8(bytes)
                .map_err(|_| named("neither ssh public keys nor an OpenPGP key".into()))?;
            if text.contains("PRIVATE KEY-----") {
                return Err(named(
                    "holds a private key; give only the public key (the .pub file)".into(),
                ));
            }
            verifier.ssh.extend(ssh::parse_keys(&text, path)?);
        }
        if verifier.ssh.is_empty() && verifier.openpgp.is_empty() {
            return Err(SourceError::Config(
                "no public keys found in --verify-keys files".into(),
            ));
        }
        Ok(verifier)
    }

    /// A verifier trusting these SSH keys.
    pub fn from_keys(keys: Vec<PublicKey>) -> Verifier {
        Verifier {
            ssh: keys,
            openpgp: Vec::new(),
        }
    }

    /// A verifier trusting these OpenPGP keys.
    pub fn from_certificates(certs: Vec<Certificate>) -> Verifier {
        Verifier {
            ssh: Vec::new(),
            openpgp: certs,
        }
    }

    /// Checks `commit`'s signature; returns the fingerprint of the key that signed it.
    pub fn verify_commit(&self, repo: &Repository, commit: Oid) -> Result<String, SourceError> {
        let unverified = |reason: String| SourceError::Unverified {
            commit: commit.to_string(),
            reason,
        };
        let (signature, signed) = repo
            .extract_signature(&commit, None)
            .map_err(|_| unverified("commit is not signed".into()))?;
        self.verify_signature(&signature, &signed)
            .map_err(unverified)
    }

    /// Verifies an armored signature over `signed_data`.
    pub fn verify_signature(&self, signature: &[u8], signed_data: &[u8]) -> Result<String, String> {
        let text =
            std::str::from_utf8(signature).map_err(|_| "signature is not text".to_string())?;
        let none_configured = |kind: &str| {
            format!("signed with an {kind} key, but no {kind} keys are configured in --verify-keys")
        };
        if text.contains("-----BEGIN SSH SIGNATURE-----") {
            if self.ssh.is_empty() {
                return Err(none_configured("ssh"));
            }
            ssh::verify(&self.ssh, text, signed_data)
        } else if text.contains("-----BEGIN PGP SIGNATURE-----") {
            if self.openpgp.is_empty() {
                return Err(none_configured("OpenPGP"));
            }
            let now = u64::try_from(crate::clock::now_utc().timestamp()).unwrap_or(0);
            openpgp::verify(&self.openpgp, text, signed_data, now)
        } else {
            Err(
                "unsupported signature format (only ssh and OpenPGP signatures are verified)"
                    .into(),
            )
        }
    }
}
