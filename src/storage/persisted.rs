//! Persisted queries: automatic ones registered by clients (id = SHA-256 of the text) and trusted
//! documents imported from a manifest (id = the manifest's id). Shared by every replica that
//! uses the same database.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::schema::persisted_queries;
use super::writes::WriteEffect;
use super::AnyConnection;
use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = persisted_queries)]
pub struct StoredQuery {
    pub id: String,
    pub body: String,
    pub operation_name: Option<String>,
    /// From a manifest: runnable by `persisted_only` clients.
    pub trusted: bool,
    pub created_at: String,
}

pub fn find(conn: &mut AnyConnection, id: &str) -> Result<Option<StoredQuery>> {
    Ok(persisted_queries::table
        .find(id)
        .select(StoredQuery::as_select())
        .first(conn)
        .optional()?)
}

/// Registers an automatic persisted query. Registering it again, or racing another replica that
/// registers it, changes nothing; an existing trusted document is never replaced.
pub fn register(conn: &mut AnyConnection, query: &StoredQuery) -> Result<()> {
    if find(conn, &query.id)?.is_some() {
        return Ok(());
    }
    let insert = diesel::insert_into(persisted_queries::table)
        .values(StoredQuery {
            trusted: false,
            ..query.clone()
        })
        .execute(conn);
    match insert {
        Ok(_) | Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Writes a trusted document: created, updated (body or name changed, or it was only an
/// automatic persisted query so far) or unchanged.
pub fn put_trusted(conn: &mut AnyConnection, query: &StoredQuery) -> Result<WriteEffect> {
    crate::storage::write_transaction(conn, |c| match find(c, &query.id)? {
        None => {
            diesel::insert_into(persisted_queries::table)
                .values(StoredQuery {
                    trusted: true,
                    ..query.clone()
                })
                .execute(c)?;
            Ok(WriteEffect::Created)
        }
        Some(old)
            if old.trusted
                && old.body == query.body
                && old.operation_name == query.operation_name =>
        {
            Ok(WriteEffect::Unchanged)
        }
        Some(_) => {
            diesel::update(persisted_queries::table.find(&query.id))
                .set((
                    persisted_queries::body.eq(&query.body),
                    persisted_queries::operation_name.eq(&query.operation_name),
                    persisted_queries::trusted.eq(true),
                ))
                .execute(c)?;
            Ok(WriteEffect::Updated)
        }
    })
}
