//! Persisted queries: the automatic persisted query (APQ) store and trusted documents.
//!
//! The store is moka in front of the `persisted_queries` table: a hit never touches the database,
//! a miss reads it (so a query registered on any replica sharing the database is found), and
//! unknown hashes are not cached (so they are found as soon as another replica registers them).
//! Entries live [`CACHE_TTL`]: a document removed with `passerelle pq remove` stops running
//! within that on every replica.
//!
//! Which callers may run only trusted documents: the `persisted_only` setting, and the
//! `persisted_only_callers` table (`passerelle pq only add|remove`), read again every
//! [`ONLY_REFRESH`], so a change needs no restart.

pub mod manifest;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use sha2::{Digest, Sha256};
use tokio::sync::RwLock;

use crate::error::{Error, Result};
use crate::storage::persisted::{self as db, StoredQuery};
use crate::storage::writes::WriteEffect;
use crate::storage::Store;

/// The lowercase hex SHA-256 of a query text, as Apollo clients compute it.
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How long a document stays in memory before it is read again.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// How often the callers held to trusted documents are read again.
pub const ONLY_REFRESH: Duration = Duration::from_secs(1);

type OnlyCallers = Option<(Instant, Arc<BTreeSet<String>>)>;

#[derive(Clone)]
pub struct PersistedQueries {
    store: Store,
    cache: Cache<String, Arc<StoredQuery>>,
    only: Arc<RwLock<OnlyCallers>>,
    /// Whether [`PersistedQueries::watch`] keeps `only` fresh.
    watched: Arc<std::sync::atomic::AtomicBool>,
}

/// Reads the callers held to trusted documents into `only`, on the watch's own connection.
async fn read_only_callers(conn: &mut crate::storage::OwnConnection, only: &RwLock<OnlyCallers>) {
    let started = Instant::now();
    match conn.run(db::only_callers).await {
        Ok(list) => *only.write().await = Some((started, Arc::new(list.into_iter().collect()))),
        Err(e) => tracing::debug!(error = %e.message(), "could not read pq only"),
    }
}

impl PersistedQueries {
    pub fn new(store: Store, capacity: u64) -> Self {
        PersistedQueries {
            store,
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(CACHE_TTL)
                .build(),
            only: Arc::new(RwLock::new(None)),
            watched: Arc::default(),
        }
    }

    /// The callers (client ids, partner slugs) held to trusted documents in the database, as of
    /// at most [`ONLY_REFRESH`] ago.
    pub async fn only_callers(&self) -> Result<Arc<BTreeSet<String>>> {
        // Under `serve`, [`watch`](Self::watch) keeps this fresh off the request path; a
        // request reads the table itself only when the watch fell far behind (or is not running).
        let max_age = if self.watched.load(std::sync::atomic::Ordering::Relaxed) {
            ONLY_REFRESH * 5
        } else {
            ONLY_REFRESH
        };
        if let Some((at, set)) = self.only.read().await.as_ref() {
            if at.elapsed() < max_age {
                return Ok(set.clone());
            }
        }
        let set: Arc<BTreeSet<String>> = Arc::new(
            self.store
                .run(db::only_callers)
                .await?
                .into_iter()
                .collect(),
        );
        *self.only.write().await = Some((Instant::now(), set.clone()));
        Ok(set)
    }

    /// Reads the callers held to trusted documents twice every [`ONLY_REFRESH`], on a connection
    /// of its own rather than the pool's, so requests never wait for that read (nor count its
    /// statement), until aborted. `None` for an in-memory database (read on demand).
    pub async fn watch(&self) -> Option<tokio::task::JoinHandle<()>> {
        if self.store.in_memory() {
            return None;
        }
        let mut conn = crate::storage::OwnConnection::new(
            self.store.clone(),
            crate::storage::Store::side_connection,
        );
        // Read once before serving, so no request has to.
        read_only_callers(&mut conn, &self.only).await;
        self.watched
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let only = Arc::downgrade(&self.only);
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(ONLY_REFRESH / 2);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(only) = only.upgrade() else { return };
                read_only_callers(&mut conn, &only).await;
            }
        }))
    }

    /// Removes a document from the database and this process's memory (other processes
    /// forget it within [`CACHE_TTL`]). False when there was none.
    pub async fn remove(&self, id: &str) -> Result<bool> {
        let key = id.to_owned();
        let removed = self.store.run(move |conn| db::remove(conn, &key)).await?;
        self.cache.invalidate(id).await;
        Ok(removed)
    }

    /// The query registered under `id`, from memory or from the database.
    pub async fn find(&self, id: &str) -> Result<Option<Arc<StoredQuery>>> {
        if let Some(hit) = self.cache.get(id).await {
            return Ok(Some(hit));
        }
        let key = id.to_owned();
        let found = self.store.run(move |conn| db::find(conn, &key)).await?;
        Ok(match found {
            Some(q) => {
                let q = Arc::new(q);
                self.cache.insert(id.to_owned(), q.clone()).await;
                Some(q)
            }
            None => None,
        })
    }

    /// Registers `text` under `hash` (the APQ registration step); the hash must be the text's,
    /// in lowercase hex.
    pub async fn register(
        &self,
        hash: &str,
        text: &str,
        operation_name: Option<&str>,
    ) -> Result<()> {
        if sha256_hex(text) != hash {
            return Err(Error::PersistedQueryHashMismatch);
        }
        if self.cache.contains_key(hash) {
            return Ok(());
        }
        let row = StoredQuery {
            id: hash.to_owned(),
            body: text.to_owned(),
            operation_name: operation_name.map(str::to_owned),
            trusted: false,
            created_at: crate::app::now(),
        };
        self.store.run(move |conn| db::register(conn, &row)).await?;
        // Read back: the row may be a trusted document that was there first.
        self.cache.invalidate(hash).await;
        Ok(())
    }

    /// Imports a manifest's operations as trusted documents.
    pub async fn import(&self, manifest: manifest::Manifest) -> Result<Vec<(String, WriteEffect)>> {
        let now = crate::app::now();
        let rows: Vec<StoredQuery> = manifest
            .operations
            .into_iter()
            .map(|op| StoredQuery {
                id: op.id,
                body: op.body,
                operation_name: Some(op.name),
                trusted: true,
                created_at: now.clone(),
            })
            .collect();
        let effects = self
            .store
            .run(move |conn| {
                rows.iter()
                    .map(|row| Ok((row.id.clone(), db::put_trusted(conn, row)?)))
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
        for (id, _) in &effects {
            self.cache.invalidate(id).await;
        }
        Ok(effects)
    }
}
