//! OpenPGP commit signatures: what `git commit -S` writes with gpg (git's default
//! `gpg.format = openpgp`), verified with rPGP.
//!
//! Trusted keys are transferable public keys (RFC 9580 §10.1) as `gpg --export [--armor]`
//! writes them; a file may hold several. A key loads only if at least one of its
//! self-signatures verifies. A commit signature is accepted when, as `git verify-commit` with
//! gpg and Flux (go-crypto) would accept it:
//! - it is a binary or text document signature (RFC 9580 §5.2.1, types 0x00/0x01) whose issuer
//!   fingerprint or key ID names the primary key or a subkey of a trusted key;
//! - that key may sign: a subkey needs a valid binding signature with the sign flag and a valid
//!   embedded primary-key binding ("back") signature (§5.2.1, 0x18 and 0x19); a primary key needs
//!   the sign flag in its newest self-signature, when that signature has key flags at all;
//! - neither the primary key nor the signing subkey has a valid revocation (0x20 / 0x28);
//! - the key had not expired when the signature was made: the key expiration time of the
//!   newest valid self-signature (or subkey binding), counted from the key's creation (§5.2.3.13);
//! - the signature is not older than its key and has not itself expired (§5.2.3.18);
//! - its hash is collision resistant: MD5, SHA-1 and RIPEMD-160 are refused (RFC 9580 §9.5
//!   forbids MD5 and deprecates SHA-1 and RIPEMD-160 for new signatures; a chosen-prefix SHA-1
//!   collision could let a signature over one commit stand for another);
//! - the cryptographic check over the exact signed bytes passes.

use std::io::Cursor;

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey, SignedPublicSubKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{PublicKey, PublicSubkey, Signature, SignatureType, SubpacketData};
use pgp::types::{Fingerprint, KeyDetails, KeyId, Tag, Timestamp};

const PUBLIC_KEY_BLOCK: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
const PRIVATE_KEY_BLOCK: &str = "-----BEGIN PGP PRIVATE KEY BLOCK-----";

/// A trusted OpenPGP key, checked once when it is loaded.
#[derive(Clone, Debug)]
pub struct Certificate {
    fingerprint: Fingerprint,
    revoked: bool,
    expires: Option<u64>,
    signers: Vec<Signer>,
}

/// The primary key or one subkey of a certificate, with what its self-signatures say of it.
#[derive(Clone, Debug)]
struct Signer {
    key: SignerKey,
    fingerprint: Fingerprint,
    key_id: KeyId,
    created: u64,
    can_sign: bool,
    /// A subkey's own revocation and expiry (its binding signature's).
    revoked: bool,
    expires: Option<u64>,
}

#[derive(Clone, Debug)]
enum SignerKey {
    Primary(PublicKey),
    Subkey(PublicSubkey),
}

impl Certificate {
    /// Checks a parsed key's self-signatures and records what may sign with it.
    pub fn new(key: &SignedPublicKey) -> Result<Certificate, String> {
        let primary = &key.primary_key;
        let fingerprint = primary.fingerprint();
        let mut self_sigs: Vec<&Signature> = Vec::new();
        for user in &key.details.users {
            self_sigs.extend(user.signatures.iter().filter(|sig| {
                is_certification(sig)
                    && sig
                        .verify_certification(primary, Tag::UserId, &user.id)
                        .is_ok()
            }));
        }
        self_sigs.extend(
            key.details
                .direct_signatures
                .iter()
                .filter(|sig| sig.verify_key(primary).is_ok()),
        );
        let newest = newest(&self_sigs)
            .ok_or_else(|| format!("key {fingerprint:X} has no valid self-signature"))?;
        let revoked = key.details.revocation_signatures.iter().any(|sig| {
            sig.typ() == Some(SignatureType::KeyRevocation) && sig.verify_key(primary).is_ok()
        });
        let created = secs(primary.created_at());
        let expires = expiry(created, newest);
        let mut signers = vec![Signer {
            key: SignerKey::Primary(primary.clone()),
            fingerprint: fingerprint.clone(),
            key_id: primary.legacy_key_id(),
            created,
            can_sign: !has_key_flags(newest) || newest.key_flags().sign(),
            // The primary key's revocation and expiry are the certificate's, checked for every signer.
            revoked: false,
            expires: None,
        }];
        signers.extend(
            key.public_subkeys
                .iter()
                .filter_map(|sub| subkey_signer(primary, sub)),
        );
        Ok(Certificate {
            fingerprint,
            revoked,
            expires,
            signers,
        })
    }

    /// The primary key's fingerprint, as gpg prints it.
    pub fn fingerprint(&self) -> String {
        format!("{:X}", self.fingerprint)
    }
}

/// A subkey counts as a signer only through a valid binding signature.
fn subkey_signer(primary: &PublicKey, sub: &SignedPublicSubKey) -> Option<Signer> {
    let bindings: Vec<&Signature> = sub
        .signatures
        .iter()
        .filter(|sig| {
            sig.typ() == Some(SignatureType::SubkeyBinding)
                && sig.verify_subkey_binding(primary, &sub.key).is_ok()
        })
        .collect();
    let binding = newest(&bindings)?;
    let back_signed = binding
        .embedded_signature()
        .is_some_and(|back| back.verify_primary_key_binding(&sub.key, primary).is_ok());
    let revoked = sub.signatures.iter().any(|sig| {
        sig.typ() == Some(SignatureType::SubkeyRevocation)
            && sig.verify_subkey_binding(primary, &sub.key).is_ok()
    });
    let created = secs(sub.key.created_at());
    Some(Signer {
        key: SignerKey::Subkey(sub.key.clone()),
        fingerprint: sub.key.fingerprint(),
        key_id: sub.key.legacy_key_id(),
        created,
        can_sign: binding.key_flags().sign() && back_signed,
        revoked,
        expires: expiry(created, binding),
    })
}

fn is_certification(sig: &Signature) -> bool {
    matches!(
        sig.typ(),
        Some(
            SignatureType::CertGeneric
                | SignatureType::CertPersona
                | SignatureType::CertCasual
                | SignatureType::CertPositive
        )
    )
}

fn newest<'a>(sigs: &[&'a Signature]) -> Option<&'a Signature> {
    sigs.iter()
        .copied()
        .max_by_key(|sig| sig.created().map(secs).unwrap_or(0))
}

fn has_key_flags(sig: &Signature) -> bool {
    sig.config().is_some_and(|config| {
        config
            .hashed_subpackets()
            .any(|p| matches!(p.data, SubpacketData::KeyFlags(_)))
    })
}

/// Key expiration is relative to the key's creation; zero means "never" (RFC 9580 §5.2.3.13).
fn expiry(created: u64, sig: &Signature) -> Option<u64> {
    sig.key_expiration_time()
        .map(|d| u64::from(d.as_secs()))
        .filter(|d| *d > 0)
        .map(|d| created + d)
}

fn secs(t: Timestamp) -> u64 {
    u64::from(t.as_secs())
}

fn date(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| secs.to_string())
}

/// Whether a keys file holds OpenPGP material: armored, or binary packets starting with a
/// Public-Key packet (tag 6), as a transferable public key must (RFC 9580 §10.1). Its first
/// octet is 0x98–0x9B in the legacy packet format or 0xC6 in the current one (§4.2).
pub fn looks_like_openpgp(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64 * 1024)]);
    text.contains("-----BEGIN PGP ")
        || bytes
            .first()
            .is_some_and(|b| (0x98..=0x9b).contains(b) || *b == 0xc6)
}

/// Parses every public key in a keys file: any number of armored blocks, or binary packets.
pub fn parse_certificates(bytes: &[u8]) -> Result<Vec<Certificate>, String> {
    let keys: Vec<SignedPublicKey> = match std::str::from_utf8(bytes) {
        Ok(text) if text.contains(PRIVATE_KEY_BLOCK) => {
            return Err("holds an OpenPGP secret key; give only the public key \
                        (gpg --armor --export KEYID)"
                .into());
        }
        Ok(text) if text.contains(PUBLIC_KEY_BLOCK) => {
            let mut keys = Vec::new();
            for block in text.split(PUBLIC_KEY_BLOCK).skip(1) {
                let armored = format!("{PUBLIC_KEY_BLOCK}{block}");
                let (parsed, _headers) = SignedPublicKey::from_armor_many(armored.as_bytes())
                    .map_err(|e| format!("not a valid OpenPGP public key block: {e}"))?;
                for key in parsed {
                    keys.push(key.map_err(|e| format!("not a valid OpenPGP public key: {e}"))?);
                }
            }
            keys
        }
        _ => SignedPublicKey::from_bytes_many(Cursor::new(bytes))
            .map_err(|e| format!("not a valid OpenPGP public key: {e}"))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("not a valid OpenPGP public key: {e}"))?,
    };
    if keys.is_empty() {
        return Err("holds no OpenPGP public key".into());
    }
    keys.iter().map(Certificate::new).collect()
}

/// Verifies an armored OpenPGP signature over `signed_data` made at any time up to `now`
/// (seconds since the epoch); returns `openpgp:` and the fingerprint of the key that signed.
pub fn verify(
    certs: &[Certificate],
    armored: &str,
    signed_data: &[u8],
    now: u64,
) -> Result<String, String> {
    let (detached, _headers) = DetachedSignature::from_armor_single(armored.as_bytes())
        .map_err(|e| format!("malformed OpenPGP signature: {e}"))?;
    let sig = detached.signature;
    if !matches!(sig.typ(), Some(SignatureType::Binary | SignatureType::Text)) {
        return Err(format!(
            "not a document signature (OpenPGP signature type {:?})",
            sig.typ()
        ));
    }
    let (cert, signer) = find(certs, &sig).ok_or_else(|| {
        format!(
            "signed by OpenPGP key {}, which is not a trusted key",
            issuer(&sig)
        )
    })?;
    if let Some(hash) = sig.hash_alg()
        && matches!(
            hash,
            HashAlgorithm::None
                | HashAlgorithm::Md5
                | HashAlgorithm::Sha1
                | HashAlgorithm::Ripemd160
        )
    {
        return Err(format!(
            "signature uses {hash}, which is not collision resistant; sign with SHA-256 or stronger"
        ));
    }
    let checked = match &signer.key {
        SignerKey::Primary(key) => sig.verify(key, signed_data),
        SignerKey::Subkey(key) => sig.verify(key, signed_data),
    };
    checked.map_err(|e| format!("signature does not verify: {e}"))?;

    let primary = cert.fingerprint();
    let by = format!("{:X}", signer.fingerprint);
    if cert.revoked {
        return Err(format!("OpenPGP key {primary} is revoked"));
    }
    if signer.revoked {
        return Err(format!("OpenPGP subkey {by} of {primary} is revoked"));
    }
    if !signer.can_sign {
        return Err(format!("OpenPGP key {by} is not certified for signing"));
    }
    let created = sig
        .created()
        .map(secs)
        .ok_or("signature has no creation time")?;
    if created < signer.created {
        return Err(format!(
            "signature ({}) is older than the key {by} that made it ({})",
            date(created),
            date(signer.created)
        ));
    }
    for expires in [cert.expires, signer.expires].into_iter().flatten() {
        if created >= expires {
            return Err(format!(
                "OpenPGP key {by} expired on {}, before the commit was signed on {}",
                date(expires),
                date(created)
            ));
        }
    }
    if let Some(valid) = sig.signature_expiration_time().filter(|d| d.as_secs() > 0)
        && now >= created + u64::from(valid.as_secs())
    {
        return Err(format!(
            "signature expired on {}",
            date(created + u64::from(valid.as_secs()))
        ));
    }
    Ok(format!("openpgp:{by}"))
}

/// The trusted certificate and key the signature's issuer subpackets name.
fn find<'a>(certs: &'a [Certificate], sig: &Signature) -> Option<(&'a Certificate, &'a Signer)> {
    let fingerprints = sig.issuer_fingerprint();
    let key_ids = sig.issuer_key_id();
    certs.iter().find_map(|cert| {
        cert.signers
            .iter()
            .find(|s| {
                if fingerprints.is_empty() {
                    key_ids.contains(&&s.key_id)
                } else {
                    fingerprints.contains(&&s.fingerprint)
                }
            })
            .map(|signer| (cert, signer))
    })
}

fn issuer(sig: &Signature) -> String {
    if let Some(fp) = sig.issuer_fingerprint().first() {
        format!("{fp:X}")
    } else if let Some(id) = sig.issuer_key_id().first() {
        id.to_string().to_uppercase()
    } else {
        "(no issuer)".into()
    }
}
