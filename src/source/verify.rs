//! Commit signature verification against configured SSH public keys.
//!
//! Git signs SSH-signed commits in the SSHSIG format with namespace `git` (what
//! `ssh-keygen -Y verify -n git` checks); libgit2's `extract_signature` yields the armored
//! signature and the exact signed bytes. OpenPGP signatures are refused with a clear message:
//! verifying them needs a full OpenPGP implementation (rpgp pulls in RSA, several ciphers and
//! packet parsers), which is too heavy for this crate; sign with `gpg.format = ssh` instead.

use std::path::{Path, PathBuf};

use git2::{Oid, Repository};
use ssh_key::{HashAlg, PublicKey, SshSig};

use super::SourceError;

/// SSHSIG namespace git uses for commits and tags.
pub const GIT_NAMESPACE: &str = "git";

/// The set of keys whose signatures are trusted.
#[derive(Clone, Debug)]
pub struct Verifier {
    keys: Vec<PublicKey>,
}

impl Verifier {
    /// Reads keys from `authorized_keys`-style files (`ssh-ed25519 AAAA... comment`) or git
    /// `allowed_signers` files (`principal [options] ssh-ed25519 AAAA...`).
    pub fn from_files(paths: &[PathBuf]) -> Result<Verifier, SourceError> {
        let mut keys = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(path).map_err(|e| SourceError::io(path, e))?;
            keys.extend(parse_keys(&text, path)?);
        }
        if keys.is_empty() {
            return Err(SourceError::Config(
                "no public keys found in --verify-keys files".into(),
            ));
        }
        Ok(Verifier { keys })
    }

    pub fn from_keys(keys: Vec<PublicKey>) -> Verifier {
        Verifier { keys }
    }

    /// Checks `commit`'s signature; returns the SHA-256 fingerprint of the key that signed it.
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
        if text.contains("BEGIN PGP SIGNATURE") {
            return Err(
                "openpgp signatures are not supported; sign commits with an ssh key \
                        (git config gpg.format ssh)"
                    .into(),
            );
        }
        let sig =
            SshSig::from_pem(text.trim()).map_err(|e| format!("malformed ssh signature: {e}"))?;
        let key = self
            .keys
            .iter()
            .find(|k| k.key_data() == sig.public_key())
            .ok_or_else(|| {
                let fp = PublicKey::from(sig.public_key().clone()).fingerprint(HashAlg::Sha256);
                format!("signed by {fp}, which is not a trusted key")
            })?;
        key.verify(GIT_NAMESPACE, signed_data, &sig)
            .map_err(|e| format!("signature does not verify: {e}"))?;
        Ok(key.fingerprint(HashAlg::Sha256).to_string())
    }
}

/// Parses every key line of a keys file; errors name `file:line`.
pub fn parse_keys(text: &str, origin: &Path) -> Result<Vec<PublicKey>, SourceError> {
    let mut keys = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let start = tokens.iter().position(|t| {
            t.starts_with("ssh-") || t.starts_with("ecdsa-sha2-") || t.starts_with("sk-")
        });
        let parsed = start.and_then(|i| PublicKey::from_openssh(&tokens[i..].join(" ")).ok());
        match parsed {
            Some(key) => keys.push(key),
            None => {
                return Err(SourceError::Config(format!(
                    "{}:{}: not an ssh public key line",
                    origin.display(),
                    index + 1
                )));
            }
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::LineEnding;
    use ssh_key::private::{Ed25519Keypair, PrivateKey};

    fn key(seed: u8) -> PrivateKey {
        PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
    }

    fn sign(key: &PrivateKey, namespace: &str, data: &[u8]) -> Vec<u8> {
        let sig = key.sign(namespace, HashAlg::Sha512, data).unwrap();
        sig.to_pem(LineEnding::LF).unwrap().into_bytes()
    }

    #[test]
    fn a_signature_by_a_trusted_key_verifies() {
        let k = key(1);
        let verifier = Verifier::from_keys(vec![k.public_key().clone()]);
        let sig = sign(&k, GIT_NAMESPACE, b"tree abc\n\nmsg\n");
        let fp = verifier
            .verify_signature(&sig, b"tree abc\n\nmsg\n")
            .unwrap();
        assert!(fp.starts_with("SHA256:"));
    }

    #[test]
    fn tampered_data_an_untrusted_key_or_another_namespace_are_rejected() {
        let trusted = key(1);
        let verifier = Verifier::from_keys(vec![trusted.public_key().clone()]);
        let sig = sign(&trusted, GIT_NAMESPACE, b"original");
        assert!(verifier.verify_signature(&sig, b"tampered").is_err());
        let other = sign(&key(2), GIT_NAMESPACE, b"original");
        let err = verifier.verify_signature(&other, b"original").unwrap_err();
        assert!(err.contains("not a trusted key"), "{err}");
        let file_ns = sign(&trusted, "file", b"original");
        assert!(verifier.verify_signature(&file_ns, b"original").is_err());
    }

    #[test]
    fn pgp_signatures_are_refused_with_a_hint() {
        let verifier = Verifier::from_keys(vec![key(1).public_key().clone()]);
        let err = verifier
            .verify_signature(b"-----BEGIN PGP SIGNATURE-----\nabc\n", b"data")
            .unwrap_err();
        assert!(err.contains("gpg.format ssh"), "{err}");
    }

    #[test]
    fn keys_files_accept_authorized_keys_and_allowed_signers_lines() {
        let public = key(3).public_key().to_openssh().unwrap();
        let text = format!("# team\n{public}\nalice@example.com namespaces=\"git\" {public}\n");
        let keys = parse_keys(&text, Path::new("keys")).unwrap();
        assert_eq!(keys.len(), 2);
        let err = parse_keys("garbage here\n", Path::new("keys")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid source configuration: keys:1: not an ssh public key line"
        );
    }
}
