//! External identity provider mode (`auth_mode = "external"`): access tokens are JWTs issued
//! by a provider such as Keycloak or Auth0, verified against its JWKS.
//!
//! The JWKS is cached (moka) for `external_jwks_cache_secs` and fetched again, at most once a
//! second, when a token names a `kid` it does not hold (the provider rotated its keys). Only
//! asymmetric algorithms are accepted, and only the one the key itself is for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokio::sync::Mutex;

use super::tokens::Rejection;
use super::Scopes;
use crate::config::Config;
use crate::error::{Error, Result};

const ASYMMETRIC: [Algorithm; 7] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// What an external token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdentity {
    pub client_id: Option<String>,
    pub partner: Option<String>,
    pub scopes: Scopes,
}

/// Extra members of an introspection response: all of them, to read the partner claim.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IntrospectionExtra {
    #[serde(flatten)]
    fields: std::collections::HashMap<String, Value>,
}

impl oauth2::ExtraTokenFields for IntrospectionExtra {}

type IntrospectionResponse =
    oauth2::StandardTokenIntrospectionResponse<IntrospectionExtra, oauth2::basic::BasicTokenType>;

type IntrospectionClient = oauth2::Client<
    oauth2::basic::BasicErrorResponse,
    oauth2::basic::BasicTokenResponse,
    IntrospectionResponse,
    oauth2::StandardRevocableToken,
    oauth2::basic::BasicRevocationErrorResponse,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
>;

/// A JWK set, keeping the keys `jsonwebtoken` can read and skipping the others (an encryption
/// key, a curve or an `alg` name it does not know), so one such key does not hide the rest.
/// `None` when the document has no `keys` list.
pub fn parse_jwks(document: Value) -> Option<JwkSet> {
    let Value::Object(mut document) = document else {
        return None;
    };
    let Some(Value::Array(keys)) = document.remove("keys") else {
        return None;
    };
    let total = keys.len();
    let keys: Vec<_> = keys
        .into_iter()
        .filter_map(|k| serde_json::from_value::<jsonwebtoken::jwk::Jwk>(k).ok())
        .collect();
    if keys.len() < total {
        tracing::debug!(
            skipped = total - keys.len(),
            "JWKS keys of unsupported types were skipped"
        );
    }
    Some(JwkSet { keys })
}

pub struct ExternalVerifier {
    http: reqwest::Client,
    url: String,
    issuer: String,
    audience: String,
    jwt: bool,
    introspection: Option<IntrospectionClient>,
    /// Introspection results by token digest, each kept no longer than its token lives nor
    /// `external_introspection_cache_secs`; `None` when that is 0.
    introspected: Option<moka::future::Cache<String, (ExternalIdentity, i64)>>,
    partner_claim: String,
    scope_claim: String,
    jwks: moka::future::Cache<(), Arc<JwkSet>>,
    last_fetch: Mutex<Option<Instant>>,
}

impl ExternalVerifier {
    /// `None` in local mode.
    pub fn from_config(config: &Config) -> Result<Option<Self>> {
        if config.auth_mode != crate::config::AuthMode::External {
            return Ok(None);
        }
        let (url, issuer, audience) = (
            config.external_jwks_url.clone(),
            config.external_issuer.clone(),
            config.external_audience.clone(),
        );
        let jwt = url.is_some() && issuer.is_some() && audience.is_some();
        let introspection = match (
            &config.external_introspection_url,
            &config.external_client_id,
            &config.external_client_secret,
        ) {
            (Some(url), Some(id), Some(secret)) => Some(
                oauth2::Client::new(oauth2::ClientId::new(id.clone()))
                    .set_client_secret(oauth2::ClientSecret::new(secret.clone()))
                    .set_introspection_url(
                        oauth2::IntrospectionUrl::new(url.clone()).map_err(Error::internal)?,
                    ),
            ),
            _ => None,
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(Error::internal)?;
        Ok(Some(ExternalVerifier {
            http,
            url: url.unwrap_or_default(),
            issuer: issuer.unwrap_or_default(),
            audience: audience.unwrap_or_default(),
            jwt,
            introspection,
            introspected: (config.external_introspection_cache_secs > 0).then(|| {
                moka::future::Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(Duration::from_secs(
                        config.external_introspection_cache_secs,
                    ))
                    .build()
            }),
            partner_claim: config.external_partner_claim.clone(),
            scope_claim: config.external_scope_claim.clone(),
            jwks: moka::future::Cache::builder()
                .max_capacity(1)
                .time_to_live(Duration::from_secs(config.external_jwks_cache_secs.max(1)))
                .build(),
            last_fetch: Mutex::new(None),
        }))
    }

    async fn fetch(&self) -> Result<Arc<JwkSet>> {
        *self.last_fetch.lock().await = Some(Instant::now());
        let unavailable = |e: reqwest::Error| {
            tracing::warn!(error = %e, url = %self.url, "cannot fetch the identity provider's JWKS");
            Error::Unavailable("the identity provider's keys cannot be fetched".into())
        };
        let document: Value = self
            .http
            .get(&self.url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)?;
        let Some(set) = parse_jwks(document) else {
            tracing::warn!(url = %self.url, "the identity provider's JWKS is not a JWK set");
            return Err(Error::Unavailable(
                "the identity provider's keys cannot be read".into(),
            ));
        };
        let set = Arc::new(set);
        self.jwks.insert((), set.clone()).await;
        Ok(set)
    }

    async fn key(&self, kid: &str) -> Result<Option<jsonwebtoken::jwk::Jwk>> {
        let set = match self.jwks.get(&()).await {
            Some(s) => s,
            None => self.fetch().await?,
        };
        if let Some(k) = set.find(kid) {
            return Ok(Some(k.clone()));
        }
        let recent = self
            .last_fetch
            .lock()
            .await
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1));
        if recent {
            return Ok(None);
        }
        Ok(self.fetch().await?.find(kid).cloned())
    }

    /// Verifies `token`: a JWT against the JWKS when one is configured, anything else by
    /// introspection when that is configured.
    pub async fn verify(
        &self,
        token: &str,
    ) -> Result<std::result::Result<ExternalIdentity, Rejection>> {
        let header = jsonwebtoken::decode_header(token).ok();
        match (header, &self.introspection) {
            (Some(header), _) if self.jwt => self.verify_jwt(token, header).await,
            (_, Some(client)) => self.introspect(client, token).await,
            _ => Ok(Err(Rejection::Malformed)),
        }
    }

    fn identity(&self, scopes: Scopes, text: impl Fn(&str) -> Option<String>) -> ExternalIdentity {
        // Only the scopes Passerelle knows mean anything here.
        let scopes = scopes
            .into_iter()
            .filter(|s| super::ALL_SCOPES.contains(&s.as_str()))
            .collect();
        ExternalIdentity {
            client_id: text("client_id")
                .or_else(|| text("azp"))
                .or_else(|| text("sub")),
            partner: text(&self.partner_claim),
            scopes,
        }
    }

    /// RFC 7662 introspection with the `oauth2` crate; active results cached for
    /// `external_introspection_cache_secs`, and until the token's `exp` at the latest (never when
    /// it has none), so a revocation at the provider takes effect here within that bound.
    async fn introspect(
        &self,
        client: &IntrospectionClient,
        token: &str,
    ) -> Result<std::result::Result<ExternalIdentity, Rejection>> {
        use oauth2::TokenIntrospectionResponse;
        use sha2::Digest;
        let now = super::unix_now();
        let digest = format!("{:x}", sha2::Sha256::digest(token.as_bytes()));
        if let Some(cache) = &self.introspected {
            if let Some((identity, exp)) = cache.get(&digest).await {
                if exp > now {
                    return Ok(Ok(identity));
                }
                cache.invalidate(&digest).await;
            }
        }
        let access = oauth2::AccessToken::new(token.to_owned());
        let response = client
            .introspect(&access)
            .request_async(&self.http)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "token introspection failed");
                Error::Unavailable("the identity provider cannot introspect tokens now".into())
            })?;
        if !response.active() {
            return Ok(Err(Rejection::Revoked));
        }
        // An introspection answer says who the token is for, like a JWT's claims: a token the
        // provider issued for another resource server is refused here too.
        if !self.audience.is_empty()
            && !response
                .aud()
                .is_some_and(|aud| aud.contains(&self.audience))
        {
            return Ok(Err(Rejection::Audience));
        }
        if !self.issuer.is_empty() && response.iss().is_some_and(|iss| iss != self.issuer) {
            return Ok(Err(Rejection::Issuer));
        }
        let exp = response.exp().map(|d| d.timestamp());
        if exp.is_some_and(|e| e <= now) {
            return Ok(Err(Rejection::Expired));
        }
        let scopes: Scopes = response
            .scopes()
            .map(|s| s.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        let extra = &response.extra_fields().fields;
        let client_id = response.client_id().map(|c| c.to_string());
        let sub = response.sub().map(str::to_owned);
        let identity = self.identity(scopes, |name| match name {
            "client_id" => client_id.clone(),
            "sub" => sub.clone(),
            other => extra.get(other).and_then(|v| v.as_str()).map(str::to_owned),
        });
        if let (Some(exp), Some(cache)) = (exp, &self.introspected) {
            cache.insert(digest, (identity.clone(), exp)).await;
        }
        Ok(Ok(identity))
    }

    async fn verify_jwt(
        &self,
        token: &str,
        header: jsonwebtoken::Header,
    ) -> Result<std::result::Result<ExternalIdentity, Rejection>> {
        if !ASYMMETRIC.contains(&header.alg) {
            return Ok(Err(Rejection::Algorithm));
        }
        let Some(kid) = header.kid else {
            return Ok(Err(Rejection::UnknownKey));
        };
        let Some(jwk) = self.key(&kid).await? else {
            return Ok(Err(Rejection::UnknownKey));
        };
        if let Some(alg) = jwk.common.key_algorithm {
            if format!("{alg:?}") != format!("{:?}", header.alg) {
                return Ok(Err(Rejection::Algorithm));
            }
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            return Ok(Err(Rejection::UnknownKey));
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = 5;
        use jsonwebtoken::errors::ErrorKind as K;
        let claims: Value = match jsonwebtoken::decode::<Value>(token, &key, &validation) {
            Ok(d) => d.claims,
            Err(e) => {
                return Ok(Err(match e.kind() {
                    K::InvalidSignature => Rejection::Signature,
                    K::ExpiredSignature | K::ImmatureSignature => Rejection::Expired,
                    K::InvalidIssuer => Rejection::Issuer,
                    K::InvalidAudience => Rejection::Audience,
                    K::InvalidAlgorithm | K::InvalidAlgorithmName => Rejection::Algorithm,
                    _ => Rejection::Malformed,
                }))
            }
        };
        let scopes: Scopes = match &claims[&self.scope_claim] {
            Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Scopes::new(),
        };
        let text = |name: &str| claims[name].as_str().map(str::to_owned);
        Ok(Ok(self.identity(scopes, text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_jwks_with_keys_jsonwebtoken_cannot_read_keeps_the_others() {
        let ed = json!({ "kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "alg": "EdDSA", "use": "sig",
            "x": "5vYhWe3Nm9s9T9OZE4o6hkkov0-N9lALgMbT1qbLX7M" });
        let document = json!({ "keys": [
            // The fully specified algorithm name of RFC 9864, a P-521 key and an unknown type.
            { "kty": "OKP", "crv": "Ed25519", "kid": "new-alg", "alg": "Ed25519",
              "x": "5vYhWe3Nm9s9T9OZE4o6hkkov0-N9lALgMbT1qbLX7M" },
            { "kty": "EC", "crv": "P-521", "kid": "p521", "alg": "ES512", "x": "AA", "y": "AA" },
            { "kty": "PQC", "kid": "future" },
            ed,
        ]});
        // `jsonwebtoken` alone refuses the whole set.
        assert!(serde_json::from_value::<JwkSet>(document.clone()).is_err());
        let set = parse_jwks(document).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert!(set.find("ed-1").is_some());
        assert!(DecodingKey::from_jwk(set.find("ed-1").unwrap()).is_ok());
        assert!(parse_jwks(json!({ "keys": "none" })).is_none());
        assert!(parse_jwks(json!([])).is_none());
    }
}
