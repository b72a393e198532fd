//! Access tokens: short-lived JWTs signed with the key ring's current key (Ed25519 or P-256).
//!
//! Verification accepts only `EdDSA` and `ES256`, with a known `kid` whose key has the token's
//! algorithm (so `alg: none`, HMAC confusion and foreign keys fail), checks signature, `iss`, `aud`, `exp` and `nbf`, then the database:
//! the client must still be active and the token (`jti`) not revoked.

use diesel::prelude::*;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use super::clients::{self, Client};
use super::keys::KeyRing;
use super::{unix_now, Scopes};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::storage::schema::revoked_tokens;
use crate::storage::AnyConnection;

/// Tolerated clock skew between replicas, in seconds.
const LEEWAY_SECS: u64 = 5;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    /// The client id.
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    /// Space-separated granted scopes (RFC 8693 §4.2 `scope`).
    pub scope: String,
    pub client_id: String,
    /// The partner the client acts for.
    pub partner: String,
}

impl Claims {
    pub fn scopes(&self) -> Scopes {
        self.scope.split_whitespace().map(str::to_owned).collect()
    }
}

/// Why a bearer token was refused; each maps to an RFC 6750 `error_description`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Malformed,
    Algorithm,
    UnknownKey,
    Signature,
    Expired,
    Issuer,
    Audience,
    Revoked,
}

impl Rejection {
    pub fn description(self) -> &'static str {
        match self {
            Rejection::Malformed => "the token is not a well-formed JWT",
            Rejection::Algorithm => "the token's signing algorithm is not accepted",
            Rejection::UnknownKey => "the token's signing key (kid) is unknown",
            Rejection::Signature => "the token's signature is invalid",
            Rejection::Expired => "the token has expired",
            Rejection::Issuer => "the token was issued by another issuer",
            Rejection::Audience => "the token is meant for another audience",
            Rejection::Revoked => "the token or its client has been revoked",
        }
    }
}

/// A freshly issued token.
pub struct Issued {
    pub access_token: String,
    pub expires_in: u64,
    pub scope: String,
}

/// Signs a token for `client` with `scopes` (already checked against the client's).
pub async fn issue(
    config: &Config,
    keys: &KeyRing,
    client: &Client,
    scopes: &Scopes,
) -> Result<Issued> {
    let (kid, algorithm, key) = keys.signing_key().await?;
    let now = unix_now();
    let ttl = config.token_ttl_secs;
    let scope = scopes.iter().cloned().collect::<Vec<_>>().join(" ");
    let claims = Claims {
        iss: config.token_issuer.clone(),
        sub: client.id.clone(),
        aud: config.token_audience.clone(),
        exp: now.saturating_add(i64::try_from(ttl).unwrap_or(0)),
        iat: now,
        nbf: now,
        jti: uuid::Uuid::new_v4().to_string(),
        scope: scope.clone(),
        client_id: client.id.clone(),
        partner: client.partner.clone(),
    };
    let mut header = Header::new(algorithm.jwt());
    header.kid = Some(kid);
    let access_token = jsonwebtoken::encode(&header, &claims, &key)
        .map_err(|e| Error::internal(anyhow::anyhow!("cannot sign a token: {e}")))?;
    Ok(Issued {
        access_token,
        expires_in: ttl,
        scope,
    })
}

/// Checks signature and claims (no database access beyond the key ring).
pub async fn verify_jwt(
    config: &Config,
    keys: &KeyRing,
    token: &str,
) -> Result<std::result::Result<Claims, Rejection>> {
    let header = match jsonwebtoken::decode_header(token) {
        Ok(h) => h,
        // An unknown `alg` such as `none` fails here too.
        Err(e) => {
            return Ok(Err(match e.kind() {
                jsonwebtoken::errors::ErrorKind::Json(_) => Rejection::Algorithm,
                _ => Rejection::Malformed,
            }))
        }
    };
    if !matches!(header.alg, Algorithm::EdDSA | Algorithm::ES256) {
        return Ok(Err(Rejection::Algorithm));
    }
    let Some(kid) = header.kid else {
        return Ok(Err(Rejection::UnknownKey));
    };
    let Some((algorithm, key)) = keys.decoding_key(&kid).await? else {
        return Ok(Err(Rejection::UnknownKey));
    };
    // The key decides the algorithm, never the token.
    if header.alg != algorithm.jwt() {
        return Ok(Err(Rejection::Algorithm));
    }
    let mut validation = Validation::new(algorithm.jwt());
    validation.set_issuer(&[&config.token_issuer]);
    validation.set_audience(&[&config.token_audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
    validation.validate_nbf = true;
    validation.leeway = LEEWAY_SECS;
    use jsonwebtoken::errors::ErrorKind as K;
    Ok(
        match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(match e.kind() {
                K::InvalidSignature => Rejection::Signature,
                K::ExpiredSignature | K::ImmatureSignature => Rejection::Expired,
                K::InvalidIssuer => Rejection::Issuer,
                K::InvalidAudience => Rejection::Audience,
                K::InvalidAlgorithm | K::InvalidAlgorithmName => Rejection::Algorithm,
                _ => Rejection::Malformed,
            }),
        },
    )
}

/// Tokens whose signature and claims were verified, by the SHA-256 of the token: a client
/// sending the same token again is not verified again (Ed25519 verification and JWT decoding
/// were about 6% of a dashboard request's CPU). The expiry is still checked on every use, and
/// the client and revocation as [`super::sessions`] says (within `session_recheck_ms` of a
/// revocation anywhere). Bounded in entries and time.
#[derive(Clone)]
pub struct VerifiedTokens(moka::future::Cache<[u8; 32], std::sync::Arc<Claims>>);

impl Default for VerifiedTokens {
    fn default() -> Self {
        VerifiedTokens(
            moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(std::time::Duration::from_secs(300))
                .build(),
        )
    }
}

impl VerifiedTokens {
    /// [`verify_jwt`], remembered for tokens that pass.
    pub async fn verify(
        &self,
        config: &Config,
        keys: &KeyRing,
        token: &str,
    ) -> Result<std::result::Result<Claims, Rejection>> {
        use sha2::Digest;
        let key: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.0.get(&key).await {
            // The same leeway as verification's.
            if claims.exp.saturating_add(LEEWAY_SECS as i64) > unix_now() {
                return Ok(Ok((*claims).clone()));
            }
            self.0.invalidate(&key).await;
            return Ok(Err(Rejection::Expired));
        }
        let verified = verify_jwt(config, keys, token).await?;
        if let Ok(claims) = &verified {
            self.0
                .insert(key, std::sync::Arc::new(claims.clone()))
                .await;
        }
        Ok(verified)
    }
}

/// The active client behind verified claims, or `None` when the client or the token has been
/// revoked since.
pub fn still_valid(conn: &mut AnyConnection, claims: &Claims) -> Result<Option<Client>> {
    let revoked: i64 = revoked_tokens::table
        .filter(revoked_tokens::jti.eq(&claims.jti))
        .count()
        .get_result(conn)?;
    if revoked > 0 {
        return Ok(None);
    }
    Ok(clients::active(conn, &claims.client_id)?.filter(|c| c.partner == claims.partner))
}

/// Records `claims`' token as revoked until it expires; purges revocations of expired tokens.
pub fn revoke(conn: &mut AnyConnection, claims: &Claims) -> Result<()> {
    crate::storage::write_transaction(conn, |conn| {
        diesel::delete(revoked_tokens::table.filter(revoked_tokens::expires_at.lt(unix_now())))
            .execute(conn)?;
        let known: i64 = revoked_tokens::table
            .filter(revoked_tokens::jti.eq(&claims.jti))
            .count()
            .get_result(conn)?;
        if known == 0 {
            diesel::insert_into(revoked_tokens::table)
                .values((
                    revoked_tokens::jti.eq(&claims.jti),
                    revoked_tokens::client_id.eq(&claims.client_id),
                    revoked_tokens::expires_at.eq(claims.exp),
                ))
                .execute(conn)?;
        }
        Ok(())
    })
}
