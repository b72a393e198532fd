//! OAuth2 client-credentials tokens for a partner's API, cached until shortly before expiry.

use std::time::{Duration, Instant};

use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, ClientId, ClientSecret, EndpointNotSet, EndpointSet, Scope, TokenResponse, TokenUrl,
};
use tokio::sync::Mutex;

use crate::config::ConnectorConfig;
use crate::error::{Error, Result};

/// Tokens are renewed this long before they expire.
const MARGIN: Duration = Duration::from_secs(30);
/// Lifetime assumed when the token endpoint does not say.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

pub struct TokenSource {
    client: Client,
    scopes: Vec<String>,
    http: reqwest::Client,
    cached: Mutex<Option<(String, Instant)>>,
}

impl TokenSource {
    pub fn new(config: &ConnectorConfig, http: reqwest::Client) -> Result<Self> {
        let bad = |m: String| Error::Invalid(vec![crate::error::FieldError::new("connectors", m)]);
        let token_url = TokenUrl::new(config.token_url.to_string())
            .map_err(|e| bad(format!("token_url: {e}")))?;
        // The client-credentials flow never uses the authorization endpoint.
        let auth_url = AuthUrl::new(config.token_url.to_string())
            .map_err(|e| bad(format!("token_url: {e}")))?;
        let client = BasicClient::new(ClientId::new(config.client_id.clone()))
            .set_client_secret(ClientSecret::new(config.client_secret.0.clone()))
            .set_auth_uri(auth_url)
            .set_token_uri(token_url);
        Ok(TokenSource {
            client,
            scopes: config.scopes.clone(),
            http,
            cached: Mutex::new(None),
        })
    }

    /// A valid access token: the cached one, or a new one from the token endpoint.
    pub async fn token(&self) -> Result<String> {
        let mut cached = self.cached.lock().await;
        if let Some((token, expires)) = cached.as_ref() {
            if Instant::now() + MARGIN < *expires {
                return Ok(token.clone());
            }
        }
        let mut request = self.client.exchange_client_credentials();
        for s in &self.scopes {
            request = request.add_scope(Scope::new(s.clone()));
        }
        let response = request.request_async(&self.http).await.map_err(|e| {
            tracing::warn!(error = %e, "partner token request failed");
            Error::Unavailable("the partner's token endpoint refused or failed".into())
        })?;
        let token = response.access_token().secret().clone();
        let lifetime = response.expires_in().unwrap_or(DEFAULT_LIFETIME);
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    /// Forgets the cached token (after the API refused it).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}
