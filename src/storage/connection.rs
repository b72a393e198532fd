//! Which backend a URL names, and how a pooled connection to it is opened.

use std::fmt;
use std::sync::Arc;

use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
use diesel::pg::PgConnection;
use diesel::r2d2::{ManageConnection, R2D2Connection};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, ConnectionError};

use super::StatementCounter;

/// One connection to either backend; queries written against it run on both.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// Runs `$body` on the backend's own connection, `$c`, with `$db` naming its backend type
/// (`Pg` or `Sqlite`): the body is written once and compiled for each. A query built there
/// skips `MultiBackend`, which serialises a query's SQL again on each walk of it (its cache key
/// and its binds) and decodes every value through a dispatch; here its SQL is written once per
/// execution, as the key of the connection's prepared statements. The statement counter is the backend connection's own instrumentation, so counts are unchanged.
macro_rules! natively {
    ($conn:expr, |$c:ident: $db:ident| $body:expr) => {
        match $conn {
            $crate::storage::AnyConnection::Postgresql($c) => {
                #[allow(dead_code)]
                type $db = diesel::pg::Pg;
                $body
            }
            $crate::storage::AnyConnection::Sqlite($c) => {
                #[allow(dead_code)]
                type $db = diesel::sqlite::Sqlite;
                $body
            }
        }
    };
}

pub(crate) use natively;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

/// A database URL whose backend is decided by its scheme, never by trial: `postgres://` or
/// `postgresql://` for PostgreSQL; `sqlite://PATH`, `sqlite:PATH` or `sqlite::memory:` for SQLite.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    backend: Backend,
    /// What the driver receives: the PostgreSQL URL, or the SQLite file path.
    target: String,
}

impl DatabaseUrl {
    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn target(&self) -> &str {
        &self.target
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(DatabaseUrl {
                backend: Backend::Postgres,
                target: s.to_owned(),
            });
        }
        let path = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"));
        match path {
            Some(p) if !p.is_empty() => Ok(DatabaseUrl {
                backend: Backend::Sqlite,
                target: p.to_owned(),
            }),
            _ => Err(format!(
                "`{}` is not a database URL: use sqlite://FILE or postgres://USER@HOST/DB",
                redact(s)
            )),
        }
    }
}

/// The URL with any password replaced, for logs and error messages.
pub fn redact(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => s.to_owned(),
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.backend, redact(&self.target))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.backend {
            Backend::Sqlite => write!(f, "sqlite://{}", self.target),
            Backend::Postgres => f.write_str(&redact(&self.target)),
        }
    }
}

/// Counts every statement a connection starts.
pub(super) struct CountStatements(pub(super) Arc<StatementCounter>);

impl Instrumentation for CountStatements {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { .. } = event {
            self.0.add_one();
        }
    }
}

/// Opens connections for the r2d2 pool, set up for the backend.
pub struct Manager {
    url: DatabaseUrl,
    statements: Arc<StatementCounter>,
    /// The store's writer tag (`storage::changes`), set on each PostgreSQL connection.
    writer: Arc<str>,
}

impl Manager {
    pub fn new(url: DatabaseUrl, statements: Arc<StatementCounter>, writer: Arc<str>) -> Self {
        Self {
            url,
            statements,
            writer,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = ManagerError;

    fn connect(&self) -> Result<AnyConnection, ManagerError> {
        let mut conn = match self.url.backend {
            Backend::Postgres => {
                let mut c = PgConnection::establish(&self.url.target)?;
                // Every statement diesel sends is prepared once per connection with its values
                // as parameters. PostgreSQL would re-plan a dashboard's page (an equality on
                // the owner, a LIMIT) at each execution, because the plan it gets from the
                // values looks cheaper than the generic one; both read the same index, and the
                // planning was two thirds of the statement's time. Generic plans are made once
                // per connection. deploy/bench/README.md has the measurement.
                // The writer tag: the feed of data changes tells this store's own writes (which
                // invalidate its caches as they commit) from everyone else's. Hexadecimal.
                c.batch_execute(&format!(
                    "SET plan_cache_mode = force_generic_plan; SET passerelle.writer = '{}'",
                    self.writer
                ))?;
                AnyConnection::Postgresql(c)
            }
            Backend::Sqlite => {
                let mut c = SqliteConnection::establish(&self.url.target)?;
                // WAL lets readers run beside the writer; busy_timeout makes writers queue instead
                // of failing; foreign keys are off by default in SQLite.
                c.batch_execute(
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                )?;
                // Its writes told from other writers' by the feed of data changes.
                super::changes::tag_own_writes(&mut c, &self.writer)?;
                AnyConnection::Sqlite(c)
            }
        };
        conn.set_instrumentation(CountStatements(self.statements.clone()));
        Ok(conn)
    }

    /// At checkout: no round trip (a ping per checkout would double a request's statements),
    /// only whether the server has closed the connection ([`is_alive`]).
    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), ManagerError> {
        if is_alive(conn) {
            Ok(())
        } else {
            Err(ManagerError::Query(
                diesel::result::Error::BrokenTransactionManager,
            ))
        }
    }

    /// Not [`is_alive`] here too: the checkout after this one checks it, and a request's
    /// hot path would pay for it twice.
    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        conn.is_broken()
    }
}

/// Whether a connection is still open as far as can be told without a round trip. On PostgreSQL,
/// libpq reads whatever the server sent without waiting (`PQconsumeInput`): after a restart or
/// `pg_terminate_backend` that is an error and the end of the stream, and the connection is
/// dead. Otherwise every connection the pool held before a PostgreSQL restart failed each request
/// that drew it, for as long as the pool kept it. A SQLite connection is a file: always alive.
/// Pooled connections do not `LISTEN`, so no notification is lost by reading.
pub fn is_alive(conn: &mut AnyConnection) -> bool {
    match conn {
        // Twice: a server that closes first sends why (`FATAL: terminating connection`), which
        // one read takes without an error; the end of the stream comes with the next.
        AnyConnection::Postgresql(c) => (0..2).all(|_| {
            let mut notifications = c.notifications_iter();
            !matches!(notifications.next(), Some(Err(_)))
        }),
        AnyConnection::Sqlite(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_comes_from_the_scheme() {
        let pg: DatabaseUrl = "postgres://u:secret@localhost/db".parse().unwrap();
        assert_eq!(pg.backend(), Backend::Postgres);
        assert!(!format!("{pg} {pg:?}").contains("secret"));
        let lite: DatabaseUrl = "sqlite://data/hub.db".parse().unwrap();
        assert_eq!(
            (lite.backend(), lite.target()),
            (Backend::Sqlite, "data/hub.db")
        );
        let mem: DatabaseUrl = "sqlite::memory:".parse().unwrap();
        assert_eq!(mem.target(), ":memory:");
        assert!("mysql://x".parse::<DatabaseUrl>().is_err());
        assert!("hub.db".parse::<DatabaseUrl>().is_err());
    }
}
