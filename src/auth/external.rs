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

pub struct ExternalVerifier {
    http: reqwest::Client,
    url: String,
    issuer: String,
    audience: String,
    partner_claim: String,
    scope_claim: String,
    jwks: moka::future::Cache<(), Arc<JwkSet>>,
    last_fetch: Mutex<Option<Instant>>,
}

impl ExternalVerifier {
    /// `None` in local mode.
    pub fn from_config(config: &Config) -> Result<Option<Self>> {
        let (Some(url), Some(issuer), Some(audience)) = (
            config.external_jwks_url.clone(),
            config.external_issuer.clone(),
            config.external_audience.clone(),
        ) else {
            return Ok(None);
        };
        if config.auth_mode != crate::config::AuthMode::External {
            return Ok(None);
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(Error::internal)?;
        Ok(Some(ExternalVerifier {
            http,
            url,
            issuer,
            audience,
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
        let set: JwkSet = self
            .http
            .get(&self.url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)?;
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

    /// Verifies `token`: signature by a JWKS key, `iss`, `aud`, `exp`.
    pub async fn verify(
        &self,
        token: &str,
    ) -> Result<std::result::Result<ExternalIdentity, Rejection>> {
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return Ok(Err(Rejection::Malformed));
        };
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
        // Only the scopes Passerelle knows mean anything here.
        let scopes = scopes
            .into_iter()
            .filter(|s| super::ALL_SCOPES.contains(&s.as_str()))
            .collect();
        let text = |name: &str| claims[name].as_str().map(str::to_owned);
        Ok(Ok(ExternalIdentity {
            client_id: text("client_id")
                .or_else(|| text("azp"))
                .or_else(|| text("sub")),
            partner: text(&self.partner_claim),
            scopes,
        }))
    }
}
