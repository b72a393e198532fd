//! Pull connectors: Passerelle fetches a partner's records from the partner's own API and writes
//! them through the same path as push and import.
//!
//! A pass reads page after page from the stored cursor. Each page is checked, then written
//! together with the new cursor in ONE transaction: a crash or restart mid-pass loses nothing
//! and duplicates nothing (the next pass resumes after the last committed page, and a page
//! fetched twice is `UNCHANGED` anyway). Requests carry an OAuth2 client-credentials token
//! (the `oauth2` crate), cached until shortly before it expires; transient failures (network,
//! 429, 5xx) are retried with exponential backoff, and a 401 refreshes the token once.

mod http;
mod token;

use std::time::Duration;

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::app::now;
use crate::config::{ConnectorConfig, ConnectorKind};
use crate::domain::RowFilter;
use crate::error::{Error, FieldError, Result};
use crate::ingest::import::{self, ImportReport, Row};
use crate::storage::schema::connector_cursors;
use crate::storage::{AnyConnection, Store};

pub use http::{HttpConnector, DEFAULT_QUERY};

/// One page from a partner's API.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Page {
    /// Records in the import format (`ingest::format`).
    pub records: Vec<serde_json::Value>,
    /// The position after this page, to resume from.
    pub cursor: String,
    #[serde(default)]
    pub has_more: bool,
}

/// A partner source Passerelle can read pages from.
pub trait Connector: Send + Sync {
    fn partner(&self) -> &str;
    /// The page after `cursor` (from the start when `None`).
    fn fetch(&self, cursor: Option<&str>)
        -> impl std::future::Future<Output = Result<Page>> + Send;
}

/// The connector a configuration describes.
pub fn build(config: &ConnectorConfig) -> Result<HttpConnector> {
    match config.kind {
        ConnectorKind::Rest | ConnectorKind::Graphql => HttpConnector::new(config.clone()),
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub partner: String,
    pub pages: usize,
    pub records: usize,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
}

pub fn load_cursor(conn: &mut AnyConnection, partner: &str) -> Result<Option<String>> {
    Ok(connector_cursors::table
        .find(partner)
        .select(connector_cursors::cursor)
        .first(conn)
        .optional()?)
}

fn save_cursor(conn: &mut AnyConnection, partner: &str, cursor: &str, now: &str) -> Result<()> {
    let updated = diesel::update(connector_cursors::table.find(partner))
        .set((
            connector_cursors::cursor.eq(cursor),
            connector_cursors::updated_at.eq(now),
        ))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(connector_cursors::table)
            .values((
                connector_cursors::partner_id.eq(partner),
                connector_cursors::cursor.eq(cursor),
                connector_cursors::updated_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Checks a page's records; every problem is reported with the record's position in the page.
fn check_page(partner: &str, page: &Page) -> Result<Vec<Row>> {
    let source = format!("sync:{partner}");
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (i, value) in page.records.iter().enumerate() {
        match import::check_value(value.clone(), partner, &source) {
            Ok(record) => rows.push(Row {
                line: i + 1,
                record,
            }),
            Err(fields) => errors.extend(fields.into_iter().map(|f| {
                let field = if f.field.is_empty() {
                    format!("records[{i}]")
                } else {
                    format!("records[{i}].{}", f.field)
                };
                FieldError::new(field, f.message)
            })),
        }
    }
    if errors.is_empty() {
        Ok(import::order(rows))
    } else {
        Err(Error::Invalid(errors))
    }
}

/// One pass: every page after the stored cursor, each committed with its cursor.
pub async fn sync_once(store: &Store, connector: &impl Connector) -> Result<SyncReport> {
    let partner = connector.partner().to_owned();
    let mut report = SyncReport {
        partner: partner.clone(),
        ..SyncReport::default()
    };
    let p = partner.clone();
    let mut cursor = store.run(move |c| load_cursor(c, &p)).await?;
    loop {
        let page = connector.fetch(cursor.as_deref()).await?;
        let rows = check_page(&partner, &page)?;
        let (p, next) = (partner.clone(), page.cursor.clone());
        let written: ImportReport = store
            .run(move |c| {
                c.transaction(|c| {
                    let writer = RowFilter {
                        own: Some(p.clone()),
                        shared_by: Vec::new(),
                    };
                    let now = now();
                    let written = import::write_all(c, &writer, &rows, &now, |_| {})?;
                    save_cursor(c, &p, &next, &now)?;
                    Ok(written)
                })
            })
            .await?;
        report.pages += 1;
        report.records += written.rows;
        report.created += written.created;
        report.updated += written.updated;
        report.unchanged += written.unchanged;
        let moved = cursor.as_deref() != Some(page.cursor.as_str());
        cursor = Some(page.cursor);
        // A source that does not move its cursor would loop for ever.
        if !page.has_more || !moved {
            return Ok(report);
        }
    }
}

/// One pass for each configured connector (or only `partner`'s).
pub async fn sync_all(
    store: &Store,
    connectors: &[ConnectorConfig],
    partner: Option<&str>,
) -> Result<Vec<SyncReport>> {
    let chosen: Vec<&ConnectorConfig> = connectors
        .iter()
        .filter(|c| partner.is_none_or(|p| p == c.partner))
        .collect();
    if chosen.is_empty() {
        return Err(Error::NotFound(match partner {
            Some(p) => format!("a connector for partner `{p}`"),
            None => "a configured connector".into(),
        }));
    }
    let mut reports = Vec::new();
    for c in chosen {
        reports.push(sync_once(store, &build(c)?).await?);
    }
    Ok(reports)
}

/// Runs every connector with an interval on its schedule, for `serve`. Each keeps its token
/// cache between passes; a failed pass is logged and retried at the next tick.
pub fn schedule(store: Store, connectors: &[ConnectorConfig]) {
    for config in connectors.iter().filter(|c| c.interval_secs > 0) {
        let connector = match build(config) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(partner = %config.partner, code = e.code(), "connector not started");
                continue;
            }
        };
        let store = store.clone();
        let every = Duration::from_secs(config.interval_secs);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match sync_once(&store, &connector).await {
                    Ok(r) => tracing::info!(
                        partner = %r.partner, pages = r.pages, created = r.created,
                        updated = r.updated, unchanged = r.unchanged, "sync pass done"
                    ),
                    Err(e) => tracing::warn!(
                        partner = connector.partner(), code = e.code(), message = %e.message(),
                        "sync pass failed; retrying at the next tick"
                    ),
                }
            }
        });
    }
}
