//! Leases: which replica runs a connector's pass, until when (table `connector_leases`).
//!
//! A replica takes a lease with one conditional UPDATE (the row is free, expired or already its
//! own) or, when there is no row yet, one INSERT that the primary key lets only one replica win.
//! Both are single statements, atomic on SQLite and PostgreSQL. Each page of a pass renews the
//! lease inside the page's own transaction, so a replica that lost its lease cannot commit.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::error::Result;
use crate::storage::schema::connector_leases as leases;
use crate::storage::AnyConnection;

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

/// Takes (or extends) the lease on `partner`'s connector for `holder` until `now_ms + ttl_ms`.
/// False when another holder's lease has not expired.
pub fn acquire(
    conn: &mut AnyConnection,
    partner: &str,
    holder: &str,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<bool> {
    let until = now_ms.saturating_add(ttl_ms);
    let taken = diesel::update(
        leases::table
            .find(partner)
            .filter(leases::expires_at.le(now_ms).or(leases::holder.eq(holder))),
    )
    .set((leases::holder.eq(holder), leases::expires_at.eq(until)))
    .execute(conn)?;
    if taken == 1 {
        return Ok(true);
    }
    match diesel::insert_into(leases::table)
        .values((
            leases::partner_id.eq(partner),
            leases::holder.eq(holder),
            leases::expires_at.eq(until),
        ))
        .execute(conn)
    {
        Ok(_) => Ok(true),
        // Someone holds it (or took it between the two statements).
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Extends `holder`'s lease; false when it is no longer `holder`'s (it expired and another
/// replica took it, or it was released). Used inside each page's transaction.
pub fn renew(
    conn: &mut AnyConnection,
    partner: &str,
    holder: &str,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<bool> {
    let renewed = diesel::update(
        leases::table
            .find(partner)
            .filter(leases::holder.eq(holder)),
    )
    .set(leases::expires_at.eq(now_ms.saturating_add(ttl_ms)))
    .execute(conn)?;
    Ok(renewed == 1)
}

/// Gives the lease up, if `holder` still has it.
pub fn release(conn: &mut AnyConnection, partner: &str, holder: &str) -> Result<()> {
    diesel::delete(
        leases::table
            .find(partner)
            .filter(leases::holder.eq(holder)),
    )
    .execute(conn)?;
    Ok(())
}

/// Who holds `partner`'s lease and until when (Unix ms), if anyone.
pub fn holder(conn: &mut AnyConnection, partner: &str) -> Result<Option<(String, i64)>> {
    Ok(leases::table
        .find(partner)
        .select((leases::holder, leases::expires_at))
        .first(conn)
        .optional()?)
}
