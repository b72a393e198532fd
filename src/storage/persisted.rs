//! Persisted queries: automatic ones registered by clients (id = SHA-256 of the text) and trusted
//! documents imported from a manifest (id = the manifest's id). Shared by every replica that
//! uses the same database.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::schema::{audit_log, persisted_only_callers, persisted_queries};
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

/// Every stored document: trusted ones first, then by operation name and id.
pub fn list(conn: &mut AnyConnection) -> Result<Vec<StoredQuery>> {
    Ok(persisted_queries::table
        .select(StoredQuery::as_select())
        .order((
            persisted_queries::trusted.desc(),
            persisted_queries::operation_name.asc(),
            persisted_queries::id.asc(),
        ))
        .load(conn)?)
}

/// Removes a document; false when there was none with this id.
pub fn remove(conn: &mut AnyConnection, id: &str) -> Result<bool> {
    Ok(diesel::delete(persisted_queries::table.find(id)).execute(conn)? > 0)
}

/// One caller of one operation: (operation, client id, partner, requests, last time).
pub type Usage = (String, Option<String>, Option<String>, i64, Option<String>);

/// Who ran operations of these names, from the audit log, by operation and client. Only
/// authenticated requests are audited.
pub fn usage(conn: &mut AnyConnection, names: &[String]) -> Result<Vec<Usage>> {
    use diesel::dsl::{count_star, max};
    Ok(audit_log::table
        .filter(audit_log::operation.eq_any(names))
        .group_by((
            audit_log::operation,
            audit_log::client_id,
            audit_log::partner_id,
        ))
        .select((
            audit_log::operation,
            audit_log::client_id,
            audit_log::partner_id,
            count_star(),
            max(audit_log::at),
        ))
        .order((audit_log::operation.asc(), audit_log::client_id.asc()))
        .load(conn)?)
}

/// The callers held to trusted documents in the database (`passerelle pq only add`).
pub fn only_callers(conn: &mut AnyConnection) -> Result<Vec<String>> {
    Ok(persisted_only_callers::table
        .select(persisted_only_callers::caller)
        .order(persisted_only_callers::caller.asc())
        .load(conn)?)
}

/// Holds `caller` (a client id or partner slug) to trusted documents; false if it was already.
pub fn add_only(conn: &mut AnyConnection, caller: &str, now: &str) -> Result<bool> {
    let insert = diesel::insert_into(persisted_only_callers::table)
        .values((
            persisted_only_callers::caller.eq(caller),
            persisted_only_callers::created_at.eq(now),
        ))
        .execute(conn);
    match insert {
        Ok(_) => Ok(true),
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Lets `caller` send query text again; false if it was not held.
pub fn remove_only(conn: &mut AnyConnection, caller: &str) -> Result<bool> {
    Ok(diesel::delete(persisted_only_callers::table.find(caller)).execute(conn)? > 0)
}
