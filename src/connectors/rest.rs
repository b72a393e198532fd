//! A partner API speaking JSON over REST.

use std::time::Duration;

use reqwest::StatusCode;

use super::token::TokenSource;
use super::{Connector, Page};
use crate::config::ConnectorConfig;
use crate::error::{Error, Result};

pub struct RestConnector {
    config: ConnectorConfig,
    http: reqwest::Client,
    tokens: TokenSource,
}

/// Whether a failed attempt is worth another try.
enum Failure {
    Transient(String),
    Unauthorized,
    Fatal(Error),
}

impl RestConnector {
    pub fn new(config: ConnectorConfig) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs.max(1)))
            // Never follow redirects with credentials (as the oauth2 crate advises).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(Error::internal)?;
        let tokens = TokenSource::new(&config, http.clone())?;
        Ok(RestConnector {
            config,
            http,
            tokens,
        })
    }

    async fn attempt(&self, cursor: Option<&str>) -> std::result::Result<Page, Failure> {
        let token = self.tokens.token().await.map_err(|e| match e {
            Error::Unavailable(m) => Failure::Transient(m),
            other => Failure::Fatal(other),
        })?;
        let mut url = self.config.base_url.clone();
        url.query_pairs_mut()
            .append_pair("limit", &self.config.page_size.to_string());
        if let Some(c) = cursor {
            url.query_pairs_mut().append_pair("after", c);
        }
        let response = self
            .http
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| Failure::Transient(format!("request failed: {e}")))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            return Err(Failure::Unauthorized);
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(Failure::Transient(format!(
                "the partner API answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(Failure::Fatal(Error::Unavailable(format!(
                "the partner API answered {status}"
            ))));
        }
        response.json::<Page>().await.map_err(|e| {
            Failure::Fatal(Error::Unavailable(format!(
                "the partner API sent a page Passerelle cannot read: {e}"
            )))
        })
    }
}

impl Connector for RestConnector {
    fn partner(&self) -> &str {
        &self.config.partner
    }

    async fn fetch(&self, cursor: Option<&str>) -> Result<Page> {
        let mut delay = Duration::from_millis(self.config.backoff_ms);
        let mut refreshed = false;
        let mut attempt = 1;
        loop {
            let failure = match self.attempt(cursor).await {
                Ok(page) => return Ok(page),
                Err(f) => f,
            };
            match failure {
                Failure::Fatal(e) => return Err(e),
                Failure::Unauthorized if !refreshed => {
                    refreshed = true;
                    self.tokens.invalidate().await;
                    continue;
                }
                Failure::Unauthorized => {
                    return Err(Error::Unavailable(
                        "the partner API refuses Passerelle's token".into(),
                    ))
                }
                Failure::Transient(m) if attempt >= self.config.max_attempts => {
                    return Err(Error::Unavailable(format!(
                        "{m} (gave up after {attempt} attempts)"
                    )))
                }
                Failure::Transient(m) => {
                    tracing::warn!(partner = %self.config.partner, attempt, message = %m, "retrying");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
            }
        }
    }
}
