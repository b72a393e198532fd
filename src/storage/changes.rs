//! The feed of data changes, on PostgreSQL: which kinds of record other writers (another
//! replica, `passerelle import` or `seed`, psql) wrote since the feed last looked.
//!
//! Triggers on every data table notify `passerelle_data_changes` with the kind's plural name and
//! the writer's tag (migration `000008_data_changes`). A notification is delivered at commit,
//! never for a write rolled back, and takes no lock: concurrent writers never wait on each other
//! for it. Each store tags its connections with a tag of its own ([`Store::writer_tag`]), so the
//! feed leaves out the store's own writes: those already invalidated its caches as they
//! committed (`WriteLog::written`). The feed listens on a connection of its own; when it has just
//! (re)connected it cannot know what it missed and says [`Changed::Everything`].
//!
//! SQLite has no such feed: one process serves a file, and a write into it by another process
//! (the CLI) shows once the answers cached before it age out.
//!
//! [`crate::http::cache`] reads the feed a few times a second and drops the cached answers that
//! hold the kinds it names.

use std::collections::BTreeSet;

use diesel::connection::SimpleConnection;
use diesel::PgConnection;

use super::{AnyConnection, EntityKind, Store};
use crate::error::{Error, Result};

/// The notification channel the triggers notify.
pub const CHANNEL: &str = "passerelle_data_changes";

/// What the feed learnt since it last looked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// Other writers wrote these kinds (none: nothing was written elsewhere).
    Kinds(BTreeSet<EntityKind>),
    /// Anything may have been written: the feed has just (re)connected.
    Everything,
}

/// A feed on a connection of its own, outside the pool; blocking, for a thread that may block.
pub struct ChangeFeed {
    store: Store,
    conn: Option<PgConnection>,
}

impl ChangeFeed {
    pub fn new(store: Store) -> Self {
        ChangeFeed { store, conn: None }
    }

    /// What other writers wrote since the last call. After an error the connection is dropped,
    /// and the next call opens another and answers [`Changed::Everything`].
    pub fn poll(&mut self) -> Result<Changed> {
        let Some(conn) = self.conn.as_mut() else {
            let AnyConnection::Postgresql(mut conn) = self.store.side_connection()? else {
                return Err(Error::internal(std::io::Error::other(
                    "the feed of data changes is for PostgreSQL",
                )));
            };
            conn.batch_execute(&format!("LISTEN {CHANNEL}"))?;
            self.conn = Some(conn);
            return Ok(Changed::Everything);
        };
        match notified(conn, self.store.writer_tag()) {
            Ok(kinds) => Ok(Changed::Kinds(kinds)),
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }
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
