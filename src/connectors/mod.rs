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
pub mod lease;
mod token;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::app::now;
use crate::config::{ConnectorConfig, ConnectorKind};
use crate::domain::RowFilter;
use crate::error::{Error, FieldError, Result};
use crate::ingest::import::{self, ImportReport, Row};
use crate::storage::schema::connector_cursors;
use crate::storage::{AnyConnection, EntityKind, Store};

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
    // Stored with the page: text the database takes on both backends.
    if page.cursor.contains('\0') || page.cursor.chars().count() > 2_000 {
        errors.push(FieldError::new(
            "cursor",
            "must be at most 2000 characters, without NUL",
        ));
    }
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

/// A pass that holds `partner`'s lease: each page renews it in the page's transaction.
struct Held<'a> {
    holder: &'a str,
    ttl_ms: i64,
}

/// One pass: every page after the stored cursor, each committed with its cursor. Use it where
/// nothing else can run the same connector (tests, a single process); `sync_leased` otherwise.
pub async fn sync_once(store: &Store, connector: &impl Connector) -> Result<SyncReport> {
    pass(store, connector, None, None).await
}

/// How a leased pass ended.
#[derive(Debug)]
pub enum Leased {
    /// This process ran the pass (possibly cut short by shutdown).
    Ran(SyncReport),
    /// Another replica holds the lease until `until_ms` (Unix ms): nothing was fetched.
    Busy { holder: String, until_ms: i64 },
}

/// One pass under `partner`'s lease in the database, so that no other replica (or
/// `passerelle sync`) runs the same connector meanwhile: skipped when the lease is taken. The
/// lease is renewed with each page and released at the end. `stop`, when it turns true, ends
/// the pass between pages (a fetch in flight is abandoned; a page being written is finished).
pub async fn sync_leased(
    store: &Store,
    connector: &impl Connector,
    holder: &str,
    ttl: Duration,
    stop: Option<&tokio::sync::watch::Receiver<bool>>,
) -> Result<Leased> {
    let partner = connector.partner().to_owned();
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let (p, h) = (partner.clone(), holder.to_owned());
    let got = store
        .run(move |c| {
            if lease::acquire(c, &p, &h, lease::now_ms(), ttl_ms)? {
                Ok(None)
            } else {
                Ok(Some(lease::holder(c, &p)?.unwrap_or_default()))
            }
        })
        .await?;
    if let Some((holder, until_ms)) = got {
        return Ok(Leased::Busy { holder, until_ms });
    }
    let result = pass(store, connector, Some(Held { holder, ttl_ms }), stop).await;
    let (p, h) = (partner, holder.to_owned());
    if let Err(e) = store.run(move |c| lease::release(c, &p, &h)).await {
        // It expires by itself.
        tracing::warn!(
            partner = connector.partner(),
            code = e.code(),
            "lease not released"
        );
    }
    result.map(Leased::Ran)
}

/// Resolves when `stop` turns true (never without one).
async fn stopped(stop: Option<&tokio::sync::watch::Receiver<bool>>) {
    match stop {
        Some(rx) => {
            let mut rx = rx.clone();
            let _ = rx.wait_for(|s| *s).await;
        }
        None => std::future::pending().await,
    }
}

async fn pass(
    store: &Store,
    connector: &impl Connector,
    held: Option<Held<'_>>,
    stop: Option<&tokio::sync::watch::Receiver<bool>>,
) -> Result<SyncReport> {
    let partner = connector.partner().to_owned();
    let mut report = SyncReport {
        partner: partner.clone(),
        ..SyncReport::default()
    };
    let p = partner.clone();
    let mut cursor = store.run(move |c| load_cursor(c, &p)).await?;
    let lease = held.map(|h| (h.holder.to_owned(), h.ttl_ms));
    loop {
        if stop.is_some_and(|s| *s.borrow()) {
            return Ok(report);
        }
        let page = tokio::select! {
            page = connector.fetch(cursor.as_deref()) => page?,
            () = stopped(stop) => return Ok(report),
        };
        let rows = check_page(&partner, &page)?;
        let (p, next, lease) = (partner.clone(), page.cursor.clone(), lease.clone());
        let written: ImportReport = store
            .run(move |c| {
                crate::storage::write_transaction(c, |c| {
                    if let Some((holder, ttl_ms)) = &lease {
                        if !lease::renew(c, &p, holder, lease::now_ms(), *ttl_ms)? {
                            return Err(Error::Unavailable(format!(
                                "the lease on `{p}`'s connector expired and another replica took it"
                            )));
                        }
                    }
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
        if written.created + written.updated > 0 {
            store.write_log().written([
                EntityKind::Actor,
                EntityKind::Action,
                EntityKind::Outcome,
                EntityKind::Partnership,
            ]);
        }
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

/// One pass for each configured connector (or only `partner`'s), each under its lease: a
/// connector another process is running is refused with `SERVICE_UNAVAILABLE`.
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
    let holder = holder_id("sync");
    let mut reports = Vec::new();
    for c in chosen {
        let ttl = Duration::from_secs(c.lease_secs);
        match sync_leased(store, &build(c)?, &holder, ttl, None).await? {
            Leased::Ran(report) => reports.push(report),
            Leased::Busy { holder, .. } => {
                return Err(Error::Unavailable(format!(
                    "the connector for `{}` is running elsewhere ({holder}); try again later",
                    c.partner
                )))
            }
        }
    }
    Ok(reports)
}

/// A name for this process's leases: its role, host and a random part (two apps in one process
/// are two holders).
fn holder_id(role: &str) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
    format!(
        "{role}@{host}/{}/{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Outcomes of scheduled passes, for `/metrics`.
#[derive(Debug, Default)]
pub struct SyncStats(std::sync::Mutex<BTreeMap<String, PartnerStats>>);

/// One connector's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PartnerStats {
    pub ok: u64,
    pub failed: u64,
    /// Skipped: another replica held the lease.
    pub busy: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
}

impl SyncStats {
    fn record(&self, partner: &str, update: impl FnOnce(&mut PartnerStats)) {
        if let Ok(mut map) = self.0.lock() {
            update(map.entry(partner.to_owned()).or_default());
        }
    }

    /// A copy of every connector's counters.
    pub fn snapshot(&self) -> BTreeMap<String, PartnerStats> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Prometheus text for the counters.
    pub fn render(&self) -> String {
        let stats = self.snapshot();
        let mut out = String::new();
        if stats.is_empty() {
            return out;
        }
        out.push_str(
            "# HELP passerelle_connector_passes_total Scheduled connector passes by outcome (busy: another replica held the lease).\n\
             # TYPE passerelle_connector_passes_total counter\n",
        );
        for (p, s) in &stats {
            for (outcome, n) in [("ok", s.ok), ("failed", s.failed), ("busy", s.busy)] {
                out.push_str(&format!(
                    "passerelle_connector_passes_total{{partner=\"{p}\",outcome=\"{outcome}\"}} {n}\n"
                ));
            }
        }
        out.push_str(
            "# HELP passerelle_connector_records_total Records written by scheduled connector passes.\n\
             # TYPE passerelle_connector_records_total counter\n",
        );
        for (p, s) in &stats {
            for (effect, n) in [
                ("created", s.created),
                ("updated", s.updated),
                ("unchanged", s.unchanged),
            ] {
                out.push_str(&format!(
                    "passerelle_connector_records_total{{partner=\"{p}\",effect=\"{effect}\"}} {n}\n"
                ));
            }
        }
        out
    }
}

/// The connectors `serve` runs on their schedule (`interval_secs`), until `stop`.
pub struct Scheduler {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Scheduler {
    /// Starts one task per connector with an interval. Each keeps its token cache between
    /// passes; a pass runs only under the connector's lease; a failed pass is logged, counted
    /// and retried at the next tick.
    pub fn start(store: Store, connectors: &[ConnectorConfig], stats: Arc<SyncStats>) -> Self {
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let holder = holder_id("serve");
        let mut tasks = Vec::new();
        for config in connectors.iter().filter(|c| c.interval_secs > 0) {
            let connector = match build(config) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(partner = %config.partner, code = e.code(), "connector not started");
                    continue;
                }
            };
            let (store, stats, holder) = (store.clone(), stats.clone(), holder.clone());
            let every = Duration::from_secs(config.interval_secs);
            let ttl = Duration::from_secs(config.lease_secs);
            let mut stopping = stopping.clone();
            tasks.push(tokio::spawn(async move {
                let mut ticks = tokio::time::interval(every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = ticks.tick() => {}
                        _ = stopping.wait_for(|s| *s) => return,
                    }
                    let partner = connector.partner();
                    match sync_leased(&store, &connector, &holder, ttl, Some(&stopping)).await {
                        Ok(Leased::Ran(r)) => {
                            stats.record(partner, |s| {
                                s.ok += 1;
                                s.created += r.created as u64;
                                s.updated += r.updated as u64;
                                s.unchanged += r.unchanged as u64;
                            });
                            tracing::info!(
                                partner, pages = r.pages, created = r.created,
                                updated = r.updated, unchanged = r.unchanged, "sync pass done"
                            );
                        }
                        Ok(Leased::Busy { holder, until_ms }) => {
                            stats.record(partner, |s| s.busy += 1);
                            tracing::debug!(partner, %holder, until_ms, "sync pass skipped: another replica runs it");
                        }
                        Err(e) => {
                            stats.record(partner, |s| s.failed += 1);
                            tracing::warn!(
                                partner, code = e.code(), message = %e.message(),
                                "sync pass failed; retrying at the next tick"
                            );
                        }
                    }
                }
            }));
        }
        Scheduler { stop, tasks }
    }

    /// How many connectors are scheduled.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Stops every task: a pass in progress ends after the page it is writing, and its lease is
    /// released. Waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a connector task failed");
            }
        }
    }
}
