//! Sessions checked recently: for an access token, what `clients::session` answered (the client
//! still active, the token not revoked, the partners sharing with the client's partner that
//! day), kept until something it depends on may have changed.
//!
//! Every write that can change a session moves the `auth_changes` counter, by trigger, in the
//! write's own transaction: a client revoked, updated or removed, a token revoked, a sharing
//! agreement granted, changed or ended, whoever writes it (this replica, another one,
//! `passerelle client revoke`, an operator in `psql`). Under `serve`, each replica reads the
//! counter every half `session_recheck_ms` ([`Sessions::watch`]). A remembered session is used
//! only if it was checked under the counter's latest reading, and that reading started less than
//! `session_recheck_ms` ago. So a revocation reaches every replica within `session_recheck_ms`,
//! and the replica that made it at once (it reads the counter again before answering). When the
//! counter cannot be read in time (the database slow or down), nothing remembered is used and
//! each request checks the database, as with `session_recheck_ms = 0`.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use diesel::prelude::*;

use super::clients::Client;
use crate::error::Result;
use crate::storage::reading::LatestReading;
use crate::storage::schema::auth_changes;
use crate::storage::{AnyConnection, OwnConnection, Store};

/// What a request takes from a checked session.
#[derive(Debug)]
pub struct Session {
    pub client: Client,
    /// The partners sharing with the client's partner on the day of the check.
    pub shared_by: BTreeSet<String>,
    /// The `auth_changes` counter it was checked under.
    counter: i64,
}

/// The `auth_changes` counter.
pub fn counter(conn: &mut AnyConnection) -> Result<i64> {
    Ok(auth_changes::table.select(auth_changes::n).first(conn)?)
}

/// Remembered sessions by token id and day. Cheap to clone.
#[derive(Clone)]
pub struct Sessions(Arc<Inner>);

struct Inner {
    /// `None` when nothing is remembered (`session_recheck_ms = 0`).
    cache: Option<moka::future::Cache<(String, String), Arc<Session>>>,
    /// The counter's latest reading.
    reading: LatestReading<i64>,
    store: Store,
}

impl Sessions {
    pub fn new(store: Store, recheck: Duration, entries: u64) -> Self {
        let cache = (!recheck.is_zero() && entries > 0).then(|| {
            moka::future::Cache::builder()
                .max_capacity(entries)
                // Only to let idle tokens go: freshness is the counter's business.
                .time_to_idle(Duration::from_secs(300))
                .build()
        });
        Sessions(Arc::new(Inner {
            cache,
            reading: LatestReading::new(recheck),
            store,
        }))
    }

    /// The counter, if its latest reading is recent enough to rely on.
    fn counter_now(&self) -> Option<i64> {
        self.0.reading.relied_on(Instant::now())
    }

    /// The session checked for token `jti` on `day`, if nothing has changed since.
    pub async fn get(&self, jti: &str, day: &str) -> Option<Arc<Session>> {
        let cache = self.0.cache.as_ref()?;
        let current = self.counter_now()?;
        let session = cache.get(&(jti.to_owned(), day.to_owned())).await?;
        (session.counter == current).then_some(session)
    }

    /// Call before checking a session in the database; pass the result to [`Sessions::put`].
    /// A change committed after this reading makes what is checked now stale, and it is.
    pub fn ticket(&self) -> Option<i64> {
        self.0.cache.as_ref()?;
        self.counter_now()
    }

    /// Remembers a session checked after `ticket` was taken.
    pub async fn put(
        &self,
        ticket: Option<i64>,
        jti: String,
        day: String,
        client: Client,
        shared_by: BTreeSet<String>,
    ) {
        if let (Some(cache), Some(counter)) = (&self.0.cache, ticket) {
            let session = Session {
                client,
                shared_by,
                counter,
            };
            cache.insert((jti, day), Arc::new(session)).await;
        }
    }

    /// After this replica changed a session, before answering: nothing checked before the
    /// change is used from now on (the counter is read again; failing that, nothing
    /// remembered before now is used).
    pub async fn changed(&self) {
        if self.0.cache.is_none() {
            return;
        }
        let started = Instant::now();
        match self.0.store.run(counter).await {
            Ok(counter) => self.0.reading.record(started, counter),
            Err(e) => {
                tracing::warn!(error = %e.message(), "could not read auth_changes after a change");
                // A reading that started now, of a value the counter never takes: it matches
                // no session remembered before, and no slower read that started earlier
                // replaces it.
                self.0.reading.record(started, -1);
            }
        }
    }

    /// Reads the counter every half `recheck`, on a connection of its own (so it never waits
    /// behind requests), until these sessions are dropped; abort the task to stop sooner.
    /// `None` when nothing is remembered, or for an in-memory database (no one else can write
    /// it, and nothing is remembered without a watch).
    pub fn watch(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.0.cache.as_ref()?;
        if self.0.store.in_memory() {
            return None;
        }
        let every = self.0.reading.recheck() / 2;
        let weak: Weak<Inner> = Arc::downgrade(&self.0);
        // A connection that failed is dropped, and opened again at the next tick.
        let mut conn = OwnConnection::new(self.0.store.clone(), Store::side_connection);
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let sessions = Sessions(inner);
                let started = Instant::now();
                match conn.run(counter).await {
                    Ok(counter) => sessions.0.reading.record(started, counter),
                    Err(e) => {
                        tracing::debug!(error = %e.message(), "could not read auth_changes");
                    }
                }
            }
        }))
    }
}
