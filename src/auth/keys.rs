//! The keys that sign access tokens: Ed25519 (`EdDSA`), persisted in the database so every
//! replica sharing it signs and verifies the same tokens.
//!
//! The newest unretired key signs. `rotate` adds a new key and retires the others in one
//! transaction; a retired key stays published in the JWKS (and accepted) until every token it
//! signed has expired, so rotation needs no downtime. Each replica caches the key set for
//! `key_cache_secs` and reloads it early when a token names a `kid` it does not know.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use diesel::prelude::*;
use jsonwebtoken::{DecodingKey, EncodingKey};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};
use tokio::sync::RwLock;

use super::unix_now;
use crate::error::{Error, Result};
use crate::storage::schema::signing_keys;
use crate::storage::{AnyConnection, Store};

const ALGORITHM: &str = "EdDSA";
/// An unknown `kid` reloads the key table at most this often.
const MIN_RELOAD: Duration = Duration::from_secs(1);

/// One loaded key set.
pub struct KeySet {
    loaded: Instant,
    signing: Option<(String, EncodingKey)>,
    verifying: HashMap<String, DecodingKey>,
    jwks: Vec<Value>,
}

impl KeySet {
    pub fn decoding_key(&self, kid: &str) -> Option<&DecodingKey> {
        self.verifying.get(kid)
    }
}

/// The cached view of `signing_keys`. Cheap to clone.
#[derive(Clone)]
pub struct KeyRing {
    store: Store,
    /// How long a retired key stays published: token lifetime plus cache lifetime.
    keep_retired_secs: i64,
    refresh: Duration,
    cache: Arc<RwLock<Option<Arc<KeySet>>>>,
}

#[derive(Queryable)]
struct KeyRow {
    kid: String,
    private_key: String,
    public_key: String,
    retired_at: Option<i64>,
}

/// A fresh Ed25519 key: (kid, PKCS#8 base64, public key base64url).
fn generate() -> Result<(String, String, String)> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| Error::internal(anyhow::anyhow!("cannot generate an Ed25519 key")))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|e| Error::internal(anyhow::anyhow!("generated key rejected: {e}")))?;
    let public = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    let kid = format!("k{}", uuid::Uuid::new_v4().simple());
    Ok((kid, STANDARD.encode(pkcs8.as_ref()), public))
}

fn insert_key(conn: &mut AnyConnection, now: i64) -> Result<String> {
    let (kid, private, public) = generate()?;
    diesel::insert_into(signing_keys::table)
        .values((
            signing_keys::kid.eq(&kid),
            signing_keys::algorithm.eq(ALGORITHM),
            signing_keys::private_key.eq(private),
            signing_keys::public_key.eq(public),
            signing_keys::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(kid)
}

/// Adds a new signing key and retires the others, atomically. Returns the new `kid`.
pub fn rotate(conn: &mut AnyConnection) -> Result<String> {
    let now = unix_now();
    conn.transaction(|conn| {
        diesel::update(signing_keys::table.filter(signing_keys::retired_at.is_null()))
            .set(signing_keys::retired_at.eq(now))
            .execute(conn)?;
        insert_key(conn, now)
    })
}

/// Creates a signing key when none is active (first start). Returns whether it did.
pub fn ensure_signing_key(conn: &mut AnyConnection) -> Result<bool> {
    conn.transaction(|conn| {
        let active: i64 = signing_keys::table
            .filter(signing_keys::retired_at.is_null())
            .count()
            .get_result(conn)?;
        if active > 0 {
            return Ok(false);
        }
        insert_key(conn, unix_now())?;
        Ok(true)
    })
}

/// Every key as (kid, created_at, retired_at), newest first, for `passerelle keys list`.
pub fn list(conn: &mut AnyConnection) -> Result<Vec<(String, i64, Option<i64>)>> {
    Ok(signing_keys::table
        .select((
            signing_keys::kid,
            signing_keys::created_at,
            signing_keys::retired_at,
        ))
        .order((signing_keys::created_at.desc(), signing_keys::kid.desc()))
        .load(conn)?)
}

impl KeyRing {
    pub fn new(store: Store, token_ttl_secs: u64, key_cache_secs: u64) -> Self {
        let ttl = i64::try_from(token_ttl_secs).unwrap_or(i64::MAX / 4);
        let cache = i64::try_from(key_cache_secs).unwrap_or(i64::MAX / 4);
        KeyRing {
            store,
            keep_retired_secs: ttl.saturating_add(cache),
            refresh: Duration::from_secs(key_cache_secs),
            cache: Arc::new(RwLock::new(None)),
        }
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

    /// The verification key for `kid`, reloading once (rate-limited) if it is unknown.
    pub async fn decoding_key(&self, kid: &str) -> Result<Option<DecodingKey>> {
        let set = self.current().await?;
        if let Some(k) = set.decoding_key(kid) {
            return Ok(Some(k.clone()));
        }
        if set.loaded.elapsed() < MIN_RELOAD {
            return Ok(None);
        }
        Ok(self.reload().await?.decoding_key(kid).cloned())
    }

    /// The key that signs new tokens, as (kid, key).
    pub async fn signing_key(&self) -> Result<(String, EncodingKey)> {
        let set = self.current().await?;
        match &set.signing {
            Some((kid, key)) => Ok((kid.clone(), key.clone())),
            None => Err(Error::Unavailable(
                "no signing key is active; run `passerelle keys rotate`".into(),
            )),
        }
    }

    /// The public keys as a JWK Set (RFC 7517).
    pub async fn jwks(&self) -> Result<Value> {
        Ok(json!({ "keys": self.current().await?.jwks }))
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
                    .filter(signing_keys::algorithm.eq(ALGORITHM))
                    .order((signing_keys::created_at.desc(), signing_keys::kid.desc()))
                    .select((
                        signing_keys::kid,
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
        };
        for row in rows {
            let decoding = DecodingKey::from_ed_components(&row.public_key).map_err(|e| {
                Error::internal(anyhow::anyhow!("key {} is unreadable: {e}", row.kid))
            })?;
            if set.signing.is_none() && row.retired_at.is_none() {
                let der = STANDARD.decode(&row.private_key).map_err(|e| {
                    Error::internal(anyhow::anyhow!("key {} is unreadable: {e}", row.kid))
                })?;
                set.signing = Some((row.kid.clone(), EncodingKey::from_ed_der(&der)));
            }
            set.jwks.push(json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "alg": ALGORITHM,
                "use": "sig",
                "kid": row.kid,
                "x": row.public_key,
            }));
            set.verifying.insert(row.kid, decoding);
        }
        let set = Arc::new(set);
        *self.cache.write().await = Some(set.clone());
        Ok(set)
    }
}
