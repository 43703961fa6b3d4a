//! OpenPGP keys for tests, made with rPGP from a seed: a primary key that signs, or a
//! certification-only primary key with a signing subkey (gpg's RSA layout).

use pgp::composed::{
    ArmorOptions, DetachedSignature, KeyType, SecretKeyParamsBuilder, SignedSecretKey,
    SubkeyParamsBuilder,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::types::Password;
use rand_08::SeedableRng;
use rand_08::rngs::StdRng;

pub struct PgpKey {
    secret: SignedSecretKey,
    seed: u64,
}

impl PgpKey {
    /// An Ed25519 key whose primary key signs.
    pub fn new(seed: u64, user: &str) -> PgpKey {
        let mut params = SecretKeyParamsBuilder::default();
        params
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id(user.into());
        PgpKey::generate(seed, params)
    }

    /// A certification-only primary key with an Ed25519 signing subkey.
    pub fn with_signing_subkey(seed: u64, user: &str) -> PgpKey {
        let subkey = SubkeyParamsBuilder::default()
            .key_type(KeyType::Ed25519Legacy)
            .can_sign(true)
            .build()
            .unwrap();
        let mut params = SecretKeyParamsBuilder::default();
        params
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(false)
            .primary_user_id(user.into())
            .subkey(subkey);
        PgpKey::generate(seed, params)
    }

    fn generate(seed: u64, params: SecretKeyParamsBuilder) -> PgpKey {
        let secret = params
            .build()
            .unwrap()
            .generate(StdRng::seed_from_u64(seed))
            .unwrap();
        PgpKey { secret, seed }
    }

    /// The public key, armored as `gpg --armor --export` writes it.
    pub fn public_armored(&self) -> String {
        self.secret
            .to_public_key()
            .to_armored_string(ArmorOptions::default())
            .unwrap()
    }

    /// A detached, armored signature by the primary key, as git stores it in `gpgsig`.
    pub fn sign_with_primary(&self, data: &[u8]) -> String {
        let sig = DetachedSignature::sign_binary_data(
            StdRng::seed_from_u64(self.seed ^ 1),
            &self.secret.primary_key,
            &Password::empty(),
            HashAlgorithm::Sha256,
            data,
        )
        .unwrap();
        sig.to_armored_string(ArmorOptions::default()).unwrap()
    }

    /// A detached signature by the first subkey (or the primary key when there is none).
    pub fn sign(&self, data: &[u8]) -> String {
        let Some(subkey) = self.secret.secret_subkeys.first() else {
            return self.sign_with_primary(data);
        };
        let sig = DetachedSignature::sign_binary_data(
            StdRng::seed_from_u64(self.seed ^ 2),
            &subkey.key,
            &Password::empty(),
            HashAlgorithm::Sha256,
            data,
        )
        .unwrap();
        sig.to_armored_string(ArmorOptions::default()).unwrap()
    }
}
