//! A partner API speaking JSON over REST, or GraphQL.
//!
//! - REST: `GET base_url?limit=N[&after=CURSOR]` answers a `Page` as JSON.
//! - GraphQL: `POST base_url` with `graphql_query` (default [`DEFAULT_QUERY`]) and the variables
//!   `after` and `first`; the query's single root field answers `{records, cursor, hasMore}`.

use std::time::Duration;

use reqwest::StatusCode;

use super::token::TokenSource;
use super::{Connector, Page};
use crate::config::ConnectorConfig;
use crate::config::ConnectorKind;
use crate::error::{Error, Result};

/// The query sent to GraphQL sources that do not configure their own.
pub const DEFAULT_QUERY: &str = "query PasserelleSync($after: String, $first: Int!) { passerelleRecords(after: $after, first: $first) { records cursor hasMore } }";

/// A GraphQL source's page, as its root field answers it.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphqlPage {
    records: Vec<serde_json::Value>,
    cursor: String,
    #[serde(default)]
    has_more: bool,
}

fn graphql_page(body: serde_json::Value) -> std::result::Result<Page, String> {
    if let Some(errors) = body.get("errors").filter(|e| !e.is_null()) {
        return Err(format!("the partner API answered errors: {errors}"));
    }
    let root = body
        .get("data")
        .and_then(|d| d.as_object())
        .and_then(|d| d.values().next())
        .cloned()
        .ok_or("no data in the partner API's answer")?;
    let page: GraphqlPage = serde_json::from_value(root).map_err(|e| e.to_string())?;
    Ok(Page {
        records: page.records,
        cursor: page.cursor,
        has_more: page.has_more,
    })
}

pub struct HttpConnector {
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

impl HttpConnector {
    pub fn new(config: ConnectorConfig) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs.max(1)))
            // Never follow redirects with credentials (as the oauth2 crate advises).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(Error::internal)?;
        let tokens = TokenSource::new(&config, http.clone())?;
        Ok(HttpConnector {
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
        let request = match self.config.kind {
            ConnectorKind::Rest => {
                let mut url = self.config.base_url.clone();
                url.query_pairs_mut()
                    .append_pair("limit", &self.config.page_size.to_string());
                if let Some(c) = cursor {
                    url.query_pairs_mut().append_pair("after", c);
                }
                self.http.get(url)
            }
            ConnectorKind::Graphql => {
                self.http
                    .post(self.config.base_url.clone())
                    .json(&serde_json::json!({
                        "query": self.config.graphql_query.as_deref().unwrap_or(DEFAULT_QUERY),
                        "variables": { "after": cursor, "first": self.config.page_size },
                    }))
            }
        };
        let response = request
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
        let unreadable = |e: String| {
            Failure::Fatal(Error::Unavailable(format!(
                "the partner API sent a page Passerelle cannot read: {e}"
            )))
        };
        match self.config.kind {
            ConnectorKind::Rest => response
                .json::<Page>()
                .await
                .map_err(|e| unreadable(e.to_string())),
            ConnectorKind::Graphql => {
                let body: serde_json::Value = response
                    .json()
                    .await
                    .map_err(|e| unreadable(e.to_string()))?;
                graphql_page(body).map_err(unreadable)
            }
        }
    }
}

impl Connector for HttpConnector {
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
