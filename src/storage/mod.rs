//! Storage: diesel on SQLite (default) or PostgreSQL, behind one `Store`.
//!
//! Queries are written once against diesel's `MultiConnection` (`AnyConnection`), so both backends
//! run the same code. The reads of a dashboard's hot path, and bulk inserts, are written once too
//! but compiled for each backend and run on its own connection (`natively!`), skipping
//! `MultiBackend`'s cost per statement. Blocking diesel calls run on tokio's blocking pool
//! (`Store::run`), never on the async workers. Migrations for each backend live in
//! `migrations/<backend>/` and are embedded in the binary.

pub mod changes;
mod circuit;
mod connection;
pub mod partners;
pub mod persisted;
pub mod queries;
pub mod reading;
pub mod rows;
pub mod schema;
mod visibility;
pub mod writes;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ManageConnection, Pool};
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use connection::Manager;
pub use connection::{AnyConnection, Backend, DatabaseUrl};

use crate::error::{Error, Result};
use crate::metrics::Stages;

/// A map of one request's records by their ids, hashed with foldhash rather than std's SipHash:
/// hashing ids in such maps and in the request's DataLoader caches was 4.6% of a dashboard's
/// instructions. Its seed is random, as std's is.
pub type RecordMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Counts SQL statements sent to the database, for `/metrics` and for tests that prove
/// resolvers batch their queries.
#[derive(Debug, Default)]
pub struct StatementCounter(AtomicU64);

impl StatementCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    fn add_one(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// The kinds of record a write may change; caches that hold them are invalidated by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityKind {
    Partner,
    Actor,
    Action,
    Outcome,
    Partnership,
}

impl EntityKind {
    pub const ALL: [EntityKind; 5] = [
        EntityKind::Partner,
        EntityKind::Actor,
        EntityKind::Action,
        EntityKind::Outcome,
        EntityKind::Partnership,
    ];

    /// The kind a seed or import report names (`"actors"`...).
    pub fn from_plural(name: &str) -> Option<Self> {
        Some(match name {
            "partners" => EntityKind::Partner,
            "actors" => EntityKind::Actor,
            "actions" => EntityKind::Action,
            "outcomes" => EntityKind::Outcome,
            "partnerships" => EntityKind::Partnership,
            _ => return None,
        })
    }
}

/// One generation counter per entity kind, bumped by every write through this store. A cached
/// answer remembers the generations it was computed at and is stale once any of them moved.
#[derive(Debug, Default)]
pub struct WriteLog([AtomicU64; 5]);

impl WriteLog {
    pub fn generation(&self, kind: EntityKind) -> u64 {
        self.0[kind as usize].load(Ordering::Acquire)
    }

    pub fn written(&self, kinds: impl IntoIterator<Item = EntityKind>) {
        for kind in kinds {
            self.0[kind as usize].fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// The database: a connection pool and the backend it talks to. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool<Manager>,
    backend: Backend,
    statements: Arc<StatementCounter>,
    writes: Arc<WriteLog>,
    /// Where requests' time goes, this store's stages and the others' ([`crate::metrics`]).
    stages: Arc<Stages>,
    /// One permit per pooled connection, taken before a blocking thread is: waiting for the
    /// database happens on the async side, so a burst of requests never parks hundreds of
    /// blocking threads (each with its stack and allocator arena) on the pool.
    slots: Arc<tokio::sync::Semaphore>,
    slot_wait: Duration,
    url: DatabaseUrl,
    /// Tags this store's PostgreSQL connections ([`changes`]).
    writer: Arc<str>,
    /// Whether the database is known to be down, or its disk full ([`circuit`]).
    circuit: Arc<circuit::Circuit>,
}

/// A background task's connection of its own, outside the pool ([`Store::side_connection`] or
/// [`Store::unflushed_commits_connection`]): opened at first use, kept while it works, dropped
/// after an error and opened again at the next use.
pub struct OwnConnection {
    store: Store,
    open: fn(&Store) -> Result<AnyConnection>,
    conn: Option<AnyConnection>,
}

impl OwnConnection {
    pub fn new(store: Store, open: fn(&Store) -> Result<AnyConnection>) -> Self {
        OwnConnection {
            store,
            open,
            conn: None,
        }
    }

    /// Runs blocking database work on it, on this thread: for a thread of its own, never on
    /// the runtime's.
    pub fn run_here<T>(&mut self, f: impl FnOnce(&mut AnyConnection) -> Result<T>) -> Result<T> {
        // A connection the server closed meanwhile (a restart) is opened again before use.
        let mut conn = match self.conn.take() {
            Some(mut c) => {
                if connection::is_alive(&mut c) {
                    c
                } else {
                    (self.open)(&self.store)?
                }
            }
            None => (self.open)(&self.store)?,
        };
        let result = f(&mut conn);
        match &result {
            Ok(_) => self.conn = Some(conn),
            Err(Error::StorageFull) => self.store.circuit.note_full(),
            Err(_) => {}
        }
        result
    }

    /// Runs blocking database work on it, on tokio's blocking pool.
    pub async fn run<T, F>(&mut self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    {
        let mut own = OwnConnection {
            store: self.store.clone(),
            open: self.open,
            conn: self.conn.take(),
        };
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let result = own.run_here(f);
            (own.conn, result)
        })
        .await
        .unwrap_or_else(|e| (None, Err(Error::internal(e))));
        self.conn = conn;
        result
    }
}

/// Runs `f` in a transaction that writes, committed if it returns `Ok`, rolled back otherwise.
///
/// On SQLite it takes the write lock as it begins (`BEGIN IMMEDIATE`), waiting its turn behind
/// other writers (`busy_timeout`). A transaction begun as a plain `BEGIN` that reads before it
/// writes fails at its first write, at once, whenever another writer committed since its read
/// began (WAL mode's `SQLITE_BUSY_SNAPSHOT`): two clients writing at the same moment got an
/// internal error. On PostgreSQL, `BEGIN`: rows are locked as they are written.
pub fn write_transaction<T, E>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> std::result::Result<T, E>,
) -> std::result::Result<T, E>
where
    E: From<diesel::result::Error>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    fn on_sqlite(
        conn: &mut AnyConnection,
        step: impl FnOnce(&mut diesel::SqliteConnection) -> diesel::QueryResult<()>,
    ) -> diesel::QueryResult<()> {
        match conn {
            AnyConnection::Sqlite(c) => step(c),
            AnyConnection::Postgresql(_) => Ok(()),
        }
    }
    // Nested in another transaction (a savepoint), or on PostgreSQL: diesel's own.
    let outermost_on_sqlite = match conn {
        AnyConnection::Sqlite(c) => AnsiTransactionManager::transaction_manager_status_mut(c)
            .transaction_depth()?
            .is_none(),
        AnyConnection::Postgresql(_) => false,
    };
    if !outermost_on_sqlite {
        return conn.transaction(f);
    }
    on_sqlite(conn, |c| {
        AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
    })?;
    match f(conn) {
        Ok(value) => {
            on_sqlite(conn, AnsiTransactionManager::commit_transaction)?;
            Ok(value)
        }
        // As diesel's own: the caller's error, unless rolling back failed otherwise than by a
        // connection already known to be broken.
        Err(e) => match on_sqlite(conn, AnsiTransactionManager::rollback_transaction) {
            Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => Err(e),
            Err(rollback) => Err(rollback.into()),
        },
    }
}

/// Pool settings, from `Config`.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_connections: u32,
    pub connect_timeout: Duration,
    /// How often a probe tries the database once it is known to be down ([`circuit`]).
    pub probe_interval: Duration,
}

impl Store {
    /// Opens a pool on `url` without touching the schema. Fails fast when the database cannot be
    /// reached.
    pub fn connect(url: &DatabaseUrl, options: &PoolOptions) -> Result<Self> {
        let statements = Arc::new(StatementCounter::default());
        // Random, so that two stores (two replicas, or a replica and the CLI) never share one.
        let writer: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
        let manager = Manager::new(url.clone(), statements.clone(), writer.clone());
        let max = match url.backend() {
            // One writer at a time in SQLite; readers share the rest.
            Backend::Sqlite => options.max_connections.clamp(1, 8),
            Backend::Postgres => options.max_connections.max(1),
        };
        // On a SQLite file, no pooled connection is opened before `migrate`: each then counts
        // its own writes from the start (`changes::tag_own_writes` needs the migrated table).
        // One is opened and closed now, to fail fast.
        let sqlite_file = url.backend() == Backend::Sqlite && url.target() != ":memory:";
        if sqlite_file {
            manager
                .connect()
                .map_err(|e| Error::Unavailable(format!("cannot open the database: {e}")))?;
        }
        let pool = Pool::builder()
            .max_size(max)
            .min_idle(Some(u32::from(!sqlite_file)))
            // Checked without a round trip (`connection::is_alive`): a connection the server
            // closed (a restart) is replaced before a request uses it.
            .test_on_check_out(true)
            .connection_timeout(options.connect_timeout)
            .build(manager)
            .map_err(|e| Error::Unavailable(format!("cannot open the database: {e}")))?;
        Ok(Store {
            pool,
            backend: url.backend(),
            statements,
            writes: Arc::default(),
            stages: Arc::default(),
            slots: Arc::new(tokio::sync::Semaphore::new(max as usize)),
            slot_wait: options.connect_timeout,
            url: url.clone(),
            writer,
            circuit: Arc::new(circuit::Circuit::new(options.probe_interval)),
        })
    }

    /// Whether this is an in-memory SQLite database, which only the pool's one connection sees.
    pub fn in_memory(&self) -> bool {
        self.url.backend() == Backend::Sqlite && self.url.target() == ":memory:"
    }

    /// A connection of its own, outside the pool, for a background task that reads a little
    /// and often: it never waits behind requests for a slot, and its statements are not
    /// counted as theirs. Not for an in-memory database ([`Store::in_memory`]).
    pub fn side_connection(&self) -> Result<AnyConnection> {
        Manager::new(self.url.clone(), Arc::default(), self.writer.clone())
            .connect()
            .map_err(|e| Error::Unavailable(format!("cannot open the database: {e}")))
    }

    /// On PostgreSQL, a connection of its own whose commits do not wait for the WAL flush
    /// (`synchronous_commit = off`: committed and visible at once, on disk within three
    /// `wal_writer_delay`s), for the audit writer's entries of reads. Its statements are counted
    /// like the pool's. PostgreSQL only: SQLite's commits never wait for a flush.
    pub fn unflushed_commits_connection(&self) -> Result<AnyConnection> {
        if self.backend != Backend::Postgres {
            return Err(Error::internal(std::io::Error::other(
                "unflushed commits are for PostgreSQL",
            )));
        }
        let mut conn = self.side_connection()?;
        conn.batch_execute(
            "SET synchronous_commit = off; SET application_name = 'passerelle audit'",
        )
        .map_err(|e| Error::Unavailable(format!("cannot set up the audit connection: {e}")))?;
        conn.set_instrumentation(connection::CountStatements(self.statements.clone()));
        Ok(conn)
    }

    /// The tag of this store's writes in the feed of data changes ([`changes`]).
    pub fn writer_tag(&self) -> &str {
        &self.writer
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn statements(&self) -> &StatementCounter {
        &self.statements
    }

    /// Where requests' time goes: this store times its waits and its work, the layers above
    /// time theirs here too, and `/metrics` shows them.
    pub fn stages(&self) -> &Stages {
        &self.stages
    }

    /// What this store has written, by kind; call `written` after every committed write.
    pub fn write_log(&self) -> &WriteLog {
        &self.writes
    }

    /// `Some` while the database is known to be down: the error to answer requests with.
    pub fn down(&self) -> Option<Error> {
        self.circuit.refusal()
    }

    /// Whether a write failed on a full disk lately ([`circuit::FULL_HOLD`]).
    pub fn storage_full(&self) -> bool {
        self.circuit.full_recently()
    }

    /// Opens the circuit, and starts the probe that closes it once a connection opens again.
    fn trip(&self) {
        if !self.circuit.trip() {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(store.circuit.probe_interval()).await;
                let s = store.clone();
                let connected = tokio::task::spawn_blocking(move || s.side_connection().is_ok())
                    .await
                    .unwrap_or(false);
                if connected {
                    store.circuit.close();
                    return;
                }
            }
        });
    }

    /// Runs blocking database work on tokio's blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    {
        let asked = Instant::now();
        if let Some(down) = self.circuit.refusal() {
            return Err(down);
        }
        let slot = tokio::time::timeout(self.slot_wait, self.slots.clone().acquire_owned()).await;
        let got_slot = Instant::now();
        self.stages.database_slot.observe(got_slot - asked);
        let slot = slot
            .map_err(|_| {
                tracing::warn!("every database connection stayed busy");
                Error::Unavailable("the database is busy; try again shortly".into())
            })?
            .map_err(Error::internal)?;
        let store = self.clone();
        let result = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let started = Instant::now();
            store.stages.blocking_thread.observe(started - got_slot);
            // A connection could not be had within the connect timeout: the database is down.
            let result: std::result::Result<T, Option<Error>> = match store.pool.get() {
                Ok(mut conn) => f(&mut conn).map_err(Some),
                Err(e) => {
                    tracing::warn!(error = %e, "no database connection within the connect timeout");
                    Err(None)
                }
            };
            store.stages.database_work.observe(started.elapsed());
            result
        })
        .await?;
        match result {
            Ok(value) => Ok(value),
            Err(Some(Error::StorageFull)) => {
                self.circuit.note_full();
                Err(Error::StorageFull)
            }
            Err(Some(e)) => Err(e),
            Err(None) => {
                self.trip();
                Err(self.circuit.refusal().unwrap_or_else(|| {
                    Error::Unavailable("the database is not reachable; try again shortly".into())
                }))
            }
        }
    }

    /// Applies pending migrations; returns how many ran.
    pub async fn migrate(&self) -> Result<usize> {
        let writer = self.writer.clone();
        self.run(move |conn| {
            let applied = match conn {
                AnyConnection::Sqlite(c) => c
                    .run_pending_migrations(SQLITE_MIGRATIONS)
                    .map(|v| v.len())
                    .and_then(|applied| {
                        // This connection may predate the table its own writes are counted in.
                        changes::tag_own_writes(c, &writer)?;
                        Ok(applied)
                    }),
                AnyConnection::Postgresql(c) => c
                    .run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map(|v| v.len()),
            };
            applied.map_err(|e| Error::internal(anyhow::anyhow!("migration failed: {e}")))
        })
        .await
    }

    /// True when the database answers and no migration is pending (for `/readyz`).
    pub async fn is_ready(&self) -> Result<bool> {
        if let Some(down) = self.circuit.refusal() {
            return Err(down);
        }
        self.run(|conn| {
            let pending = match conn {
                AnyConnection::Sqlite(c) => c.has_pending_migration(SQLITE_MIGRATIONS),
                AnyConnection::Postgresql(c) => c.has_pending_migration(POSTGRES_MIGRATIONS),
            };
            pending
                .map(|p| !p)
                .map_err(|e| Error::Unavailable(format!("cannot read migrations: {e}")))
        })
        .await
    }
}
