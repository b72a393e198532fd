//! The feed of data changes: which kinds of record other writers (another replica,
//! `passerelle import` or `seed`, psql or sqlite3) wrote since the feed last looked.
//!
//! On PostgreSQL, triggers on every data table notify `passerelle_data_changes` with the kind's
//! plural name and the writer's tag (migration `000008_data_changes`). A notification is
//! delivered at commit, never for a write rolled back, and takes no lock: concurrent writers
//! never wait on each other for it. Each store tags its connections with a tag of its own
//! ([`Store::writer_tag`]), so the feed leaves out the store's own writes: those already
//! invalidated its caches as they committed (`WriteLog::written`).
//!
//! On SQLite, triggers move one counter per kind in the `data_changes` table, in the write's own
//! transaction (SQLite has neither notifications nor statement triggers: once per row written;
//! migration `000008_data_changes`). The store's own connections also move counters of their
//! own in `own_data_changes`, by TEMP triggers that only their writes fire ([`tag_own_writes`]).
//! The feed reads both in one statement and names the kinds whose counter moved by more than
//! the store's own: what other writers wrote. Several processes may serve one file: each feed
//! marks its own counters as alive every [`HEARTBEAT`], and a feed that (re)connects removes
//! only the counters of writers silent for [`SILENT_FOR`] (processes gone; migration
//! `000009_own_data_changes_seen`).
//!
//! The feed reads on a connection of its own; when it has just (re)connected it cannot know
//! what it missed and says [`Changed::Everything`].
//!
//! [`crate::http::cache`] reads the feed a few times a second and drops the cached answers that
//! hold the kinds it names.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{PgConnection, RunQueryDsl, SqliteConnection};

use super::{AnyConnection, EntityKind, Store};
use crate::error::Result;

/// The notification channel the triggers notify on PostgreSQL.
pub const CHANNEL: &str = "passerelle_data_changes";

/// How often a feed on SQLite marks its store's own-write counters as alive.
pub const HEARTBEAT: Duration = Duration::from_secs(60);

/// Own-write counters not marked alive for this long are a gone process's: a feed that
/// (re)connects removes them. If a live process's feed was stopped that long, its counters come
/// back at its next heartbeat; meanwhile it takes its own writes for another's, which only drops
/// cached answers once more.
pub const SILENT_FOR: Duration = Duration::from_secs(600);

/// What the feed learnt since it last looked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// Other writers wrote these kinds (none: nothing was written elsewhere).
    Kinds(BTreeSet<EntityKind>),
    /// Anything may have been written: the feed has just (re)connected.
    Everything,
}

/// The feed's own connection, outside the pool, and what it has read so far.
enum Reader {
    /// Listening on [`CHANNEL`].
    Postgres(PgConnection),
    /// Other writers' share of the `data_changes` counters as last read, by kind, and when the
    /// store's own counters were last marked alive.
    Sqlite(SqliteConnection, BTreeMap<String, i64>, Instant),
}

/// A feed on a connection of its own; blocking, for a thread that may block.
pub struct ChangeFeed {
    store: Store,
    reader: Option<Reader>,
}

impl ChangeFeed {
    pub fn new(store: Store) -> Self {
        ChangeFeed {
            store,
            reader: None,
        }
    }

    /// What other writers wrote since the last call. After an error the connection is dropped,
    /// and the next call opens another and answers [`Changed::Everything`].
    pub fn poll(&mut self) -> Result<Changed> {
        let Some(reader) = self.reader.as_mut() else {
            self.reader = Some(match self.store.side_connection()? {
                AnyConnection::Postgresql(mut c) => {
                    c.batch_execute(&format!("LISTEN {CHANNEL}"))?;
                    Reader::Postgres(c)
                }
                AnyConnection::Sqlite(mut c) => {
                    let own = self.store.writer_tag();
                    // Those of processes gone go; this store's own are counted from now on.
                    c.batch_execute(&format!(
                        "DELETE FROM own_data_changes WHERE writer <> '{own}' \
                         AND seen_at < {NOW} - {};",
                        SILENT_FOR.as_secs()
                    ))?;
                    mark_alive(&mut c, own)?;
                    let counters = counters(&mut c, own)?;
                    Reader::Sqlite(c, counters, Instant::now())
                }
            });
            return Ok(Changed::Everything);
        };
        let read = match reader {
            Reader::Postgres(c) => notified(c, self.store.writer_tag()),
            Reader::Sqlite(c, last, alive) => {
                let own = self.store.writer_tag();
                let marked = if alive.elapsed() >= HEARTBEAT {
                    mark_alive(c, own).map(|()| *alive = Instant::now())
                } else {
                    Ok(())
                };
                marked.and_then(|()| moved(c, own, last))
            }
        };
        match read {
            Ok(kinds) => Ok(Changed::Kinds(kinds)),
            Err(e) => {
                self.reader = None;
                Err(e)
            }
        }
    }
}

/// The tables whose writes change what answers hold, and the kind of record each holds.
const TRACKED: [(&str, &str); 9] = [
    ("partners", "partners"),
    ("actors", "actors"),
    ("actions", "actions"),
    ("action_themes", "actions"),
    ("action_places", "actions"),
    ("outcomes", "outcomes"),
    ("outcome_disaggregations", "outcomes"),
    ("partnerships", "partnerships"),
    ("partnership_members", "partnerships"),
];

/// Makes this SQLite connection's writes move writer `own`'s counters in `own_data_changes`
/// too: TEMP triggers, which only this connection's writes fire. Nothing before the migration
/// that creates the table (called again once it has run). `own` is a writer tag (hexadecimal).
pub fn tag_own_writes(c: &mut SqliteConnection, own: &str) -> diesel::QueryResult<()> {
    debug_assert!(own.chars().all(|ch| ch.is_ascii_hexdigit()));
    #[derive(diesel::QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let found: Found = diesel::sql_query(
        "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'own_data_changes'",
    )
    .get_result(c)?;
    if found.n == 0 {
        return Ok(());
    }
    let mut sql = String::new();
    for (table, kind) in TRACKED {
        for (op, past) in [
            ("INSERT", "inserted"),
            ("UPDATE", "updated"),
            ("DELETE", "deleted"),
        ] {
            sql += &format!(
                "CREATE TEMP TRIGGER IF NOT EXISTS own_{table}_{past} AFTER {op} ON {table} \
                 BEGIN UPDATE own_data_changes SET n = n + 1 \
                 WHERE writer = '{own}' AND kind = '{kind}'; END;\n"
            );
        }
    }
    c.batch_execute(&sql)
}

/// Now, in unix seconds, as SQLite tells it.
const NOW: &str = "CAST(strftime('%s', 'now') AS INTEGER)";

/// Writer `own`'s counters exist (from 0 when they did not), marked alive now.
fn mark_alive(c: &mut SqliteConnection, own: &str) -> Result<()> {
    c.batch_execute(&format!(
        "INSERT OR IGNORE INTO own_data_changes (writer, kind, n, seen_at) \
         SELECT '{own}', kind, 0, {NOW} FROM data_changes; \
         UPDATE own_data_changes SET seen_at = {NOW} WHERE writer = '{own}';"
    ))?;
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct Counter {
    #[diesel(sql_type = diesel::sql_types::Text)]
    kind: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Other writers' share of the `data_changes` counters now (SQLite): each counter less what the
/// connections of writer `own` added to it. One read, which sees every write committed before
/// it began, and a write's two counters together.
fn counters(c: &mut SqliteConnection, own: &str) -> Result<BTreeMap<String, i64>> {
    let rows: Vec<Counter> = diesel::sql_query(
        "SELECT d.kind AS kind, d.n - coalesce(o.n, 0) AS n FROM data_changes d \
         LEFT JOIN own_data_changes o ON o.kind = d.kind AND o.writer = ?",
    )
    .bind::<diesel::sql_types::Text, _>(own)
    .load(c)?;
    Ok(rows.into_iter().map(|r| (r.kind, r.n)).collect())
}

/// The kinds other writers wrote since `last`, which then holds the counters read now.
fn moved(
    c: &mut SqliteConnection,
    own: &str,
    last: &mut BTreeMap<String, i64>,
) -> Result<BTreeSet<EntityKind>> {
    let now = counters(c, own)?;
    let kinds = changed_kinds(last, &now);
    *last = now;
    Ok(kinds)
}

/// The kinds whose counter differs between two readings; every kind for a name it cannot read.
fn changed_kinds(
    before: &BTreeMap<String, i64>,
    now: &BTreeMap<String, i64>,
) -> BTreeSet<EntityKind> {
    let mut kinds = BTreeSet::new();
    for (name, n) in now {
        if before.get(name) != Some(n) {
            match EntityKind::from_plural(name) {
                Some(kind) => {
                    kinds.insert(kind);
                }
                None => kinds.extend(EntityKind::ALL),
            }
        }
    }
    kinds
}

/// The kinds named by the notifications received so far, other than those of writer `own`. The
/// round trip first: every notification committed before it started has arrived once it is
/// answered.
fn notified(c: &mut PgConnection, own: &str) -> Result<BTreeSet<EntityKind>> {
    c.batch_execute("SELECT 1")?;
    let mut kinds = BTreeSet::new();
    for n in c.notifications_iter() {
        kinds.extend(named(&n?.payload, own));
    }
    Ok(kinds)
}

/// The kinds a notification's payload names: none for a write of `own` (the store's tag),
/// every kind for a payload it cannot read.
fn named(payload: &str, own: &str) -> Vec<EntityKind> {
    let (kind, tag) = payload.split_once(' ').unwrap_or((payload, ""));
    if tag == own {
        return Vec::new();
    }
    match EntityKind::from_plural(kind) {
        Some(kind) => vec![kind],
        None => EntityKind::ALL.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_name_the_kinds_that_moved() {
        let reading = |pairs: &[(&str, i64)]| -> BTreeMap<String, i64> {
            pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
        };
        let before = reading(&[("actions", 3), ("outcomes", 7), ("partners", 1)]);
        assert!(changed_kinds(&before, &before).is_empty());
        let now = reading(&[("actions", 4), ("outcomes", 7), ("partners", 1)]);
        assert_eq!(
            changed_kinds(&before, &now),
            BTreeSet::from([EntityKind::Action])
        );
        let unknown = reading(&[("actions", 3), ("outcomes", 7), ("partners", 1), ("x", 0)]);
        assert_eq!(
            changed_kinds(&before, &unknown),
            BTreeSet::from(EntityKind::ALL)
        );
    }

    #[test]
    fn payloads_name_other_writers_kinds() {
        let own = "0123abcd";
        assert_eq!(named("actions someone-else", own), [EntityKind::Action]);
        assert_eq!(
            named("outcomes ", own),
            [EntityKind::Outcome],
            "psql: untagged"
        );
        assert!(named(&format!("actions {own}"), own).is_empty(), "our own");
        assert_eq!(named("gibberish", own), EntityKind::ALL, "unreadable");
    }
}
