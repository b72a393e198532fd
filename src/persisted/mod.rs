//! Persisted queries: the automatic persisted query (APQ) store and trusted documents.
//!
//! The store is moka in front of the `persisted_queries` table: a hit never touches the database,
//! a miss reads it (so a query registered on any replica sharing the database is found), and
//! unknown hashes are not cached (so they are found as soon as another replica registers them).

pub mod manifest;

use std::sync::Arc;

use moka::future::Cache;
use sha2::{Digest, Sha256};

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

#[derive(Clone)]
pub struct PersistedQueries {
    store: Store,
    cache: Cache<String, Arc<StoredQuery>>,
}

impl PersistedQueries {
    pub fn new(store: Store, capacity: u64) -> Self {
        PersistedQueries {
            store,
            cache: Cache::new(capacity),
        }
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
