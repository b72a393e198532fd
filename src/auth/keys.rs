//! The keys that sign access tokens: Ed25519 (`EdDSA`, the default) or P-256 (`ES256`, for
//! verifiers without Ed25519, set by `token_signing_algorithm`), persisted in the database so
//! every replica sharing it signs and verifies the same tokens.
//!
//! Changing `token_signing_algorithm` rotates the key at the next start: the old algorithm's
//! key is retired, so both algorithms' keys are in the JWKS until the old key's tokens have
//! expired, and those tokens are still accepted until then.
//!
//! The newest unretired key signs. `rotate` adds a new key and retires the others in one
//! transaction; a retired key stays published in the JWKS (and accepted) until every token it
//! signed has expired, so rotation needs no downtime. Each replica caches the key set for
//! `key_cache_secs` and reloads it early when a token names a `kid` it does not know.
//!
//! With `key_encryption_key` set, private keys are stored AES-256-GCM-encrypted
//! (`enc:v1:` + base64 of nonce, ciphertext and tag, with the `kid` as associated data, so a
//! sealed key cannot be moved to another row). Plaintext keys from before still load, and are
//! sealed at start.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use diesel::prelude::*;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use tokio::sync::RwLock;

use super::unix_now;
use crate::error::{Error, Result};
use crate::storage::schema::signing_keys;
use crate::storage::{AnyConnection, Store};

/// The algorithm of new access tokens (`token_signing_algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
pub enum SigningAlgorithm {
    /// Ed25519.
    #[default]
    EdDSA,
    /// ECDSA with P-256 and SHA-256.
    ES256,
}

impl SigningAlgorithm {
    /// The JOSE name, as stored in `signing_keys.algorithm` and sent as the JWT `alg`.
    pub fn name(self) -> &'static str {
        match self {
            SigningAlgorithm::EdDSA => "EdDSA",
            SigningAlgorithm::ES256 => "ES256",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "EdDSA" => Some(SigningAlgorithm::EdDSA),
            "ES256" => Some(SigningAlgorithm::ES256),
            _ => None,
        }
    }

    pub fn jwt(self) -> Algorithm {
        match self {
            SigningAlgorithm::EdDSA => Algorithm::EdDSA,
            SigningAlgorithm::ES256 => Algorithm::ES256,
        }
    }
}

/// Every algorithm a stored key may have.
const KNOWN: [&str; 2] = ["EdDSA", "ES256"];
/// The prefix of an encrypted private key (never the start of base64 text).
const SEALED: &str = "enc:v1:";
const NONCE_LEN: usize = 12;
/// An unknown `kid` reloads the key table at most this often.
const MIN_RELOAD: Duration = Duration::from_secs(1);

/// Encrypts private keys at rest when a key encryption key is configured. Cheap to clone.
#[derive(Clone, Default)]
pub struct KeyCipher {
    key: Option<Arc<ring::aead::LessSafeKey>>,
}

impl KeyCipher {
    /// From a raw 32-byte key; `None` stores keys in plaintext.
    pub fn new(key: Option<&[u8]>) -> Result<Self> {
        let Some(key) = key else {
            return Ok(KeyCipher::default());
        };
        let unbound = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, key)
            .map_err(|_| Error::internal(anyhow::anyhow!("key_encryption_key must be 32 bytes")))?;
        Ok(KeyCipher {
            key: Some(Arc::new(ring::aead::LessSafeKey::new(unbound))),
        })
    }

    /// From `key_encryption_key` (base64, checked when the configuration was loaded).
    pub fn from_config(config: &crate::config::Config) -> Result<Self> {
        match &config.key_encryption_key {
            None => Self::new(None),
            Some(secret) => {
                let raw = STANDARD.decode(secret.0.trim()).map_err(|_| {
                    Error::internal(anyhow::anyhow!("key_encryption_key is not base64"))
                })?;
                Self::new(Some(&raw))
            }
        }
    }

    pub fn encrypts(&self) -> bool {
        self.key.is_some()
    }

    /// The stored form of `kid`'s private key: sealed when a key is configured.
    pub fn seal(&self, kid: &str, plaintext: &str) -> Result<String> {
        let Some(key) = &self.key else {
            return Ok(plaintext.to_owned());
        };
        let mut nonce = [0u8; NONCE_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| Error::internal(anyhow::anyhow!("no randomness for a nonce")))?;
        let mut sealed = plaintext.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::from(kid.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| Error::internal(anyhow::anyhow!("cannot encrypt a signing key")))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("{SEALED}{}", STANDARD.encode(out)))
    }

    /// The plaintext of a stored private key (one stored in plaintext is returned as it is).
    pub fn open(&self, kid: &str, stored: &str) -> Result<String> {
        let Some(encoded) = stored.strip_prefix(SEALED) else {
            return Ok(stored.to_owned());
        };
        let unreadable = || Error::SigningKeyUnreadable(kid.to_owned());
        let key = self.key.as_ref().ok_or_else(unreadable)?;
        let mut bytes = STANDARD.decode(encoded).map_err(|_| unreadable())?;
        if bytes.len() < NONCE_LEN {
            return Err(unreadable());
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[..NONCE_LEN]);
        let plain = key
            .open_in_place(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::from(kid.as_bytes()),
                &mut bytes[NONCE_LEN..],
            )
            .map_err(|_| unreadable())?;
        String::from_utf8(plain.to_vec()).map_err(|_| unreadable())
    }
}

/// Encrypts the private keys still stored in plaintext, when a key is configured. Returns how
/// many it sealed.
pub fn seal_plaintext_keys(conn: &mut AnyConnection, cipher: &KeyCipher) -> Result<usize> {
    if !cipher.encrypts() {
        return Ok(0);
    }
    crate::storage::write_transaction(conn, |conn| {
        let rows: Vec<(String, String)> = signing_keys::table
            .select((signing_keys::kid, signing_keys::private_key))
            .load(conn)?;
        let mut sealed = 0;
        for (kid, private) in rows {
            if private.starts_with(SEALED) {
                continue;
            }
            let stored = cipher.seal(&kid, &private)?;
            diesel::update(signing_keys::table.filter(signing_keys::kid.eq(&kid)))
                .set(signing_keys::private_key.eq(stored))
                .execute(conn)?;
            sealed += 1;
        }
        Ok(sealed)
    })
}

/// One loaded key set.
pub struct KeySet {
    loaded: Instant,
    signing: Option<(String, SigningAlgorithm, EncodingKey)>,
    verifying: HashMap<String, (SigningAlgorithm, DecodingKey)>,
    jwks: Vec<Value>,
    /// The algorithms of the published keys, the signing key's first.
    algorithms: Vec<SigningAlgorithm>,
}

impl KeySet {
    pub fn decoding_key(&self, kid: &str) -> Option<&(SigningAlgorithm, DecodingKey)> {
        self.verifying.get(kid)
    }
}

/// The cached view of `signing_keys`. Cheap to clone.
#[derive(Clone)]
pub struct KeyRing {
    store: Store,
    cipher: KeyCipher,
    /// How long a retired key stays published: token lifetime plus cache lifetime.
    keep_retired_secs: i64,
    refresh: Duration,
    /// The algorithm of the keys `rotate` makes.
    algorithm: SigningAlgorithm,
    cache: Arc<RwLock<Option<Arc<KeySet>>>>,
}

#[derive(Queryable)]
struct KeyRow {
    kid: String,
    algorithm: String,
    private_key: String,
    public_key: String,
    retired_at: Option<i64>,
}

/// A fresh key: (kid, PKCS#8 base64, public key base64url). The public key is Ed25519's 32
/// bytes, or P-256's uncompressed point (`04 || x || y`).
fn generate(algorithm: SigningAlgorithm) -> Result<(String, String, String)> {
    let rng = ring::rand::SystemRandom::new();
    let failed = |what: &str| Error::internal(anyhow::anyhow!("cannot generate a key: {what}"));
    let (pkcs8, public) = match algorithm {
        SigningAlgorithm::EdDSA => {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| failed("Ed25519"))?;
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
                .map_err(|e| Error::internal(anyhow::anyhow!("generated key rejected: {e}")))?;
            (pkcs8.as_ref().to_vec(), pair.public_key().as_ref().to_vec())
        }
        SigningAlgorithm::ES256 => {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| failed("P-256"))?;
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .map_err(|e| Error::internal(anyhow::anyhow!("generated key rejected: {e}")))?;
            (pkcs8.as_ref().to_vec(), pair.public_key().as_ref().to_vec())
        }
    };
    let kid = format!("k{}", uuid::Uuid::new_v4().simple());
    Ok((kid, STANDARD.encode(pkcs8), URL_SAFE_NO_PAD.encode(public)))
}

/// A stored public key as its JWK and its verification key.
fn public_jwk(
    kid: &str,
    algorithm: SigningAlgorithm,
    public: &str,
) -> Result<(Value, DecodingKey)> {
    let unreadable = |e: String| Error::internal(anyhow::anyhow!("key {kid} is unreadable: {e}"));
    match algorithm {
        SigningAlgorithm::EdDSA => {
            let decoding =
                DecodingKey::from_ed_components(public).map_err(|e| unreadable(e.to_string()))?;
            let jwk = json!({
                "kty": "OKP", "crv": "Ed25519", "alg": algorithm.name(), "use": "sig",
                "kid": kid, "x": public,
            });
            Ok((jwk, decoding))
        }
        SigningAlgorithm::ES256 => {
            let point = URL_SAFE_NO_PAD
                .decode(public)
                .map_err(|e| unreadable(e.to_string()))?;
            if point.len() != 65 || point[0] != 4 {
                return Err(unreadable("not an uncompressed P-256 point".into()));
            }
            let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
            let y = URL_SAFE_NO_PAD.encode(&point[33..]);
            let decoding =
                DecodingKey::from_ec_components(&x, &y).map_err(|e| unreadable(e.to_string()))?;
            let jwk = json!({
                "kty": "EC", "crv": "P-256", "alg": algorithm.name(), "use": "sig",
                "kid": kid, "x": x, "y": y,
            });
            Ok((jwk, decoding))
        }
    }
}

fn insert_key(
    conn: &mut AnyConnection,
    cipher: &KeyCipher,
    algorithm: SigningAlgorithm,
    now: i64,
) -> Result<String> {
    let (kid, private, public) = generate(algorithm)?;
    let private = cipher.seal(&kid, &private)?;
    diesel::insert_into(signing_keys::table)
        .values((
            signing_keys::kid.eq(&kid),
            signing_keys::algorithm.eq(algorithm.name()),
            signing_keys::private_key.eq(private),
            signing_keys::public_key.eq(public),
            signing_keys::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(kid)
}

/// Adds a new `algorithm` signing key and retires the others, atomically. Returns the new `kid`.
pub fn rotate(
    conn: &mut AnyConnection,
    cipher: &KeyCipher,
    algorithm: SigningAlgorithm,
) -> Result<String> {
    let now = unix_now();
    crate::storage::write_transaction(conn, |conn| {
        diesel::update(signing_keys::table.filter(signing_keys::retired_at.is_null()))
            .set(signing_keys::retired_at.eq(now))
            .execute(conn)?;
        insert_key(conn, cipher, algorithm, now)
    })
}

/// Creates an `algorithm` signing key when none is active (first start). Returns whether it did.
pub fn ensure_signing_key(
    conn: &mut AnyConnection,
    cipher: &KeyCipher,
    algorithm: SigningAlgorithm,
) -> Result<bool> {
    crate::storage::write_transaction(conn, |conn| {
        let active: i64 = signing_keys::table
            .filter(signing_keys::retired_at.is_null())
            .count()
            .get_result(conn)?;
        if active > 0 {
            return Ok(false);
        }
        insert_key(conn, cipher, algorithm, unix_now())?;
        Ok(true)
    })
}

/// Makes sure the active signing key has `algorithm`, rotating to a new key when the setting
/// changed (the old key keeps verifying its tokens until they expire). Only `serve` calls it:
/// another command run with another configuration must not rotate the server's key. Returns
/// whether it made a key.
pub fn switch_algorithm(
    conn: &mut AnyConnection,
    cipher: &KeyCipher,
    algorithm: SigningAlgorithm,
) -> Result<bool> {
    crate::storage::write_transaction(conn, |conn| {
        let newest: Option<String> = signing_keys::table
            .filter(signing_keys::retired_at.is_null())
            .order((signing_keys::created_at.desc(), signing_keys::kid.desc()))
            .select(signing_keys::algorithm)
            .first(conn)
            .optional()?;
        if newest.as_deref() == Some(algorithm.name()) {
            return Ok(false);
        }
        let now = unix_now();
        diesel::update(signing_keys::table.filter(signing_keys::retired_at.is_null()))
            .set(signing_keys::retired_at.eq(now))
            .execute(conn)?;
        insert_key(conn, cipher, algorithm, now)?;
        Ok(true)
    })
}

/// A stored key as `passerelle keys list` shows it: (kid, algorithm, created_at, retired_at).
pub type KeyListing = (String, String, i64, Option<i64>);

/// Every key, the active one first, then newest first, for `passerelle keys list`.
pub fn list(conn: &mut AnyConnection) -> Result<Vec<KeyListing>> {
    Ok(signing_keys::table
        .select((
            signing_keys::kid,
            signing_keys::algorithm,
            signing_keys::created_at,
            signing_keys::retired_at,
        ))
        .order((
            // The active key first: keys made within one second have the same `created_at`.
            signing_keys::retired_at.is_not_null().asc(),
            signing_keys::created_at.desc(),
            signing_keys::kid.desc(),
        ))
        .load(conn)?)
}

impl KeyRing {
    pub fn new(
        store: Store,
        cipher: KeyCipher,
        algorithm: SigningAlgorithm,
        token_ttl_secs: u64,
        key_cache_secs: u64,
    ) -> Self {
        let ttl = i64::try_from(token_ttl_secs).unwrap_or(i64::MAX / 4);
        let cache = i64::try_from(key_cache_secs).unwrap_or(i64::MAX / 4);
        KeyRing {
            store,
            cipher,
            keep_retired_secs: ttl.saturating_add(cache),
            refresh: Duration::from_secs(key_cache_secs),
            algorithm,
            cache: Arc::new(RwLock::new(None)),
        }
    }

    /// Adds a new signing key and retires the others (see [`rotate`]); reload to use it here.
    pub async fn rotate(&self) -> Result<String> {
        let (cipher, algorithm) = (self.cipher.clone(), self.algorithm);
        self.store
            .run(move |conn| rotate(conn, &cipher, algorithm))
            .await
    }

    /// Rotates to a key of the configured algorithm if the active key has another (see
    /// [`switch_algorithm`]), and reloads. Returns whether it rotated.
    pub async fn use_configured_algorithm(&self) -> Result<bool> {
        let (cipher, algorithm) = (self.cipher.clone(), self.algorithm);
        let switched = self
            .store
            .run(move |conn| switch_algorithm(conn, &cipher, algorithm))
            .await?;
        if switched {
            self.reload().await?;
        }
        Ok(switched)
    }

    /// The key set, reloaded when older than `key_cache_secs`.
    pub async fn current(&self) -> Result<Arc<KeySet>> {
        if let Some(set) = self.cache.read().await.as_ref() {
            if set.loaded.elapsed() < self.refresh {
                return Ok(set.clone());
            }
        }
        self.reload().await
    }

    /// The verification key for `kid` and its algorithm, reloading once (rate-limited) if it
    /// is unknown.
    pub async fn decoding_key(&self, kid: &str) -> Result<Option<(SigningAlgorithm, DecodingKey)>> {
        let set = self.current().await?;
        if let Some(k) = set.decoding_key(kid) {
            return Ok(Some(k.clone()));
        }
        if set.loaded.elapsed() < MIN_RELOAD {
            return Ok(None);
        }
        Ok(self.reload().await?.decoding_key(kid).cloned())
    }

    /// The key that signs new tokens, as (kid, algorithm, key).
    pub async fn signing_key(&self) -> Result<(String, SigningAlgorithm, EncodingKey)> {
        let set = self.current().await?;
        match &set.signing {
            Some((kid, algorithm, key)) => Ok((kid.clone(), *algorithm, key.clone())),
            None => Err(Error::Unavailable(
                "no signing key is active; run `passerelle keys rotate`".into(),
            )),
        }
    }

    /// The public keys as a JWK Set (RFC 7517).
    pub async fn jwks(&self) -> Result<Value> {
        Ok(json!({ "keys": self.current().await?.jwks }))
    }

    /// The JOSE names of the published keys' algorithms, the signing key's first.
    pub async fn algorithms(&self) -> Result<Vec<&'static str>> {
        Ok(self
            .current()
            .await?
            .algorithms
            .iter()
            .map(|a| a.name())
            .collect())
    }

    /// Reads the key table again.
    pub async fn reload(&self) -> Result<Arc<KeySet>> {
        let keep = self.keep_retired_secs;
        let rows: Vec<KeyRow> = self
            .store
            .run(move |conn| {
                let oldest = unix_now().saturating_sub(keep);
                Ok(signing_keys::table
                    .filter(
                        signing_keys::retired_at
                            .is_null()
                            .or(signing_keys::retired_at.gt(oldest)),
                    )
                    .filter(signing_keys::algorithm.eq_any(KNOWN))
                    .order((signing_keys::created_at.desc(), signing_keys::kid.desc()))
                    .select((
                        signing_keys::kid,
                        signing_keys::algorithm,
                        signing_keys::private_key,
                        signing_keys::public_key,
                        signing_keys::retired_at,
                    ))
                    .load(conn)?)
            })
            .await?;
        let mut set = KeySet {
            loaded: Instant::now(),
            signing: None,
            verifying: HashMap::new(),
            jwks: Vec::new(),
            algorithms: Vec::new(),
        };
        for row in rows {
            let Some(algorithm) = SigningAlgorithm::from_name(&row.algorithm) else {
                continue;
            };
            let (jwk, decoding) = public_jwk(&row.kid, algorithm, &row.public_key)?;
            if set.signing.is_none() && row.retired_at.is_none() {
                let private = self.cipher.open(&row.kid, &row.private_key)?;
                let der = STANDARD.decode(&private).map_err(|e| {
                    Error::internal(anyhow::anyhow!("key {} is unreadable: {e}", row.kid))
                })?;
                let key = match algorithm {
                    SigningAlgorithm::EdDSA => EncodingKey::from_ed_der(&der),
                    SigningAlgorithm::ES256 => EncodingKey::from_ec_der(&der),
                };
                set.signing = Some((row.kid.clone(), algorithm, key));
                set.algorithms.insert(0, algorithm);
            }
            if !set.algorithms.contains(&algorithm) {
                set.algorithms.push(algorithm);
            }
            set.jwks.push(jwk);
            set.verifying.insert(row.kid, (algorithm, decoding));
        }
        let set = Arc::new(set);
        *self.cache.write().await = Some(set.clone());
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_their_key_and_kid() {
        let cipher = KeyCipher::new(Some(&[7u8; 32])).unwrap();
        let sealed = cipher.seal("k1", "MFMCAQEwBQYDK2VwBCIEI").unwrap();
        assert!(sealed.starts_with(SEALED));
        assert!(!sealed.contains("MFMCAQEw"));
        assert_eq!(cipher.open("k1", &sealed).unwrap(), "MFMCAQEwBQYDK2VwBCIEI");
        // Two seals of one key differ (fresh nonces).
        assert_ne!(sealed, cipher.seal("k1", "MFMCAQEwBQYDK2VwBCIEI").unwrap());
        let code = |r: Result<String>| r.unwrap_err().code();
        assert_eq!(code(cipher.open("k2", &sealed)), "SIGNING_KEY_UNREADABLE");
        let other = KeyCipher::new(Some(&[8u8; 32])).unwrap();
        assert_eq!(code(other.open("k1", &sealed)), "SIGNING_KEY_UNREADABLE");
        assert_eq!(
            code(KeyCipher::default().open("k1", &sealed)),
            "SIGNING_KEY_UNREADABLE"
        );
        assert_eq!(
            code(cipher.open("k1", "enc:v1:AAAA")),
            "SIGNING_KEY_UNREADABLE"
        );
        // Plaintext keys from before still load, with or without a cipher.
        assert_eq!(cipher.open("k1", "MFMCAQEw").unwrap(), "MFMCAQEw");
        assert!(KeyCipher::new(Some(&[1u8; 16])).is_err());
    }
}
