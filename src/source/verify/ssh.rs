//! SSH commit signatures: what git writes with `gpg.format = ssh`.
//!
//! Git signs in the SSHSIG format with namespace `git` (what `ssh-keygen -Y verify -n git`
//! checks). Keys come from `authorized_keys`-style lines (`ssh-ed25519 AAAA... comment`) or git
//! `allowed_signers` lines (`principal [options] ssh-ed25519 AAAA...`).

use std::path::Path;

use ssh_key::{HashAlg, PublicKey, SshSig};

use crate::source::SourceError;

/// SSHSIG namespace git uses for commits and tags.
pub const GIT_NAMESPACE: &str = "git";

/// Verifies an armored SSHSIG over `signed_data` against `keys`; returns the SHA-256
/// fingerprint of the key that signed.
pub fn verify(keys: &[PublicKey], armored: &str, signed_data: &[u8]) -> Result<String, String> {
    let sig =
        SshSig::from_pem(armored.trim()).map_err(|e| format!("malformed ssh signature: {e}"))?;
    let key = keys
        .iter()
        .find(|k| k.key_data() == sig.public_key())
        .ok_or_else(|| {
            let fp = PublicKey::from(sig.public_key().clone()).fingerprint(HashAlg::Sha256);
            format!("signed by ssh key {fp}, which is not a trusted key")
        })?;
    key.verify(GIT_NAMESPACE, signed_data, &sig)
        .map_err(|e| format!("signature does not verify: {e}"))?;
    Ok(key.fingerprint(HashAlg::Sha256).to_string())
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

    fn sign(key: &PrivateKey, namespace: &str, data: &[u8]) -> String {
        let sig = key.sign(namespace, HashAlg::Sha512, data).unwrap();
        sig.to_pem(LineEnding::LF).unwrap()
    }

    #[test]
    fn a_signature_by_a_trusted_key_verifies() {
        let k = key(1);
        let keys = [k.public_key().clone()];
        let sig = sign(&k, GIT_NAMESPACE, b"tree abc\n\nmsg\n");
        let fp = verify(&keys, &sig, b"tree abc\n\nmsg\n").unwrap();
        assert!(fp.starts_with("SHA256:"));
    }

    #[test]
    fn tampered_data_an_untrusted_key_or_another_namespace_are_rejected() {
        let trusted = key(1);
        let keys = [trusted.public_key().clone()];
        let sig = sign(&trusted, GIT_NAMESPACE, b"original");
        let err = verify(&keys, &sig, b"tampered").unwrap_err();
        assert!(err.contains("does not verify"), "{err}");
        let other = sign(&key(2), GIT_NAMESPACE, b"original");
        let err = verify(&keys, &other, b"original").unwrap_err();
        assert!(err.contains("not a trusted key"), "{err}");
        let file_ns = sign(&trusted, "file", b"original");
        assert!(verify(&keys, &file_ns, b"original").is_err());
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
