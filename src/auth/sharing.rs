//! Data-sharing agreements: a grantor partner opens its `partners`-visible records to a grantee
//! partner over a period. Active agreements become the grantee's `Viewer::shared_by`; `private`
//! records are never shared.

use std::collections::BTreeSet;

use diesel::prelude::*;

use crate::app::now;
use crate::domain::PartialDate;
use crate::error::{Error, FieldError, Result};
use crate::storage::schema::{partners, sharing_agreements};
use crate::storage::AnyConnection;

/// One agreement as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, serde::Serialize)]
pub struct Agreement {
    pub id: String,
    pub grantor: String,
    pub grantee: String,
    pub starts_on: String,
    pub ends_on: Option<String>,
}

/// Today's date (UTC) as `YYYY-MM-DD`.
pub fn today() -> String {
    now().chars().take(10).collect()
}

fn check_date(field: &str, value: &str) -> Result<()> {
    match value.parse::<PartialDate>() {
        Ok(_) if value.len() == 10 => Ok(()),
        _ => Err(Error::Invalid(vec![FieldError::new(
            field,
            "expected a full date such as 2026-01-31",
        )])),
    }
}

/// Records that `grantor` shares with `grantee` from `starts_on` to `ends_on` (inclusive,
/// open-ended when `None`). Returns the agreement id.
pub fn grant(
    conn: &mut AnyConnection,
    grantor: &str,
    grantee: &str,
    starts_on: &str,
    ends_on: Option<&str>,
) -> Result<String> {
    let mut errors = Vec::new();
    if grantor == grantee {
        errors.push(FieldError::new(
            "grantee",
            "a partner cannot share with itself",
        ));
    }
    for (field, value) in [("starts_on", Some(starts_on)), ("ends_on", ends_on)] {
        if let Some(v) = value {
            if let Err(Error::Invalid(mut e)) = check_date(field, v) {
                errors.append(&mut e);
            }
        }
    }
    if ends_on.is_some_and(|e| e < starts_on) {
        errors.push(FieldError::new("ends_on", "ends before it starts"));
    }
    for (field, partner) in [("grantor", grantor), ("grantee", grantee)] {
        let n: i64 = partners::table
            .filter(partners::id.eq(partner))
            .count()
            .get_result(conn)?;
        if n == 0 {
            errors.push(FieldError::new(field, format!("no partner `{partner}`")));
        }
    }
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    let id = uuid::Uuid::new_v4().to_string();
    diesel::insert_into(sharing_agreements::table)
        .values((
            sharing_agreements::id.eq(&id),
            sharing_agreements::grantor_partner_id.eq(grantor),
            sharing_agreements::grantee_partner_id.eq(grantee),
            sharing_agreements::starts_on.eq(starts_on),
            sharing_agreements::ends_on.eq(ends_on),
            sharing_agreements::created_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(id)
}

/// Ends an agreement from `on` (it stays on record): from that day on it is no longer in force,
/// so ending it today takes effect at once (`ends_on`, inclusive, becomes the day before).
/// Returns false when there was none.
pub fn end(conn: &mut AnyConnection, id: &str, on: &str) -> Result<bool> {
    check_date("ends_on", on)?;
    let last_day = on
        .parse::<PartialDate>()
        .ok()
        .and_then(|d| d.first_day().previous_day())
        .map(crate::domain::dates::iso_day)
        .ok_or_else(|| {
            Error::Invalid(vec![FieldError::new(
                "ends_on",
                "expected a full date such as 2026-01-31",
            )])
        })?;
    let n = diesel::update(sharing_agreements::table.filter(sharing_agreements::id.eq(id)))
        .set(sharing_agreements::ends_on.eq(last_day))
        .execute(conn)?;
    Ok(n > 0)
}

/// Every agreement, oldest first.
pub fn list(conn: &mut AnyConnection) -> Result<Vec<Agreement>> {
    Ok(sharing_agreements::table
        .select((
            sharing_agreements::id,
            sharing_agreements::grantor_partner_id,
            sharing_agreements::grantee_partner_id,
            sharing_agreements::starts_on,
            sharing_agreements::ends_on,
        ))
        .order((
            sharing_agreements::created_at.asc(),
            sharing_agreements::id.asc(),
        ))
        .load(conn)?)
}

/// The SQL condition that an agreement is in force on `day` (`YYYY-MM-DD`): the one rule for
/// [`grantors_for`] and `clients::session`.
macro_rules! in_force_on {
    ($day:expr) => {{
        use $crate::storage::schema::sharing_agreements as sa;
        let day: &str = $day;
        sa::starts_on
            .le(day)
            .and(sa::ends_on.is_null().or(sa::ends_on.ge(day)))
    }};
}
pub(crate) use in_force_on;

/// The partners sharing with `grantee` on `day` (`YYYY-MM-DD`).
pub fn grantors_for(
    conn: &mut AnyConnection,
    grantee: &str,
    day: &str,
) -> Result<BTreeSet<String>> {
    let rows: Vec<String> = sharing_agreements::table
        .filter(sharing_agreements::grantee_partner_id.eq(grantee))
        .filter(in_force_on!(day))
        .select(sharing_agreements::grantor_partner_id)
        .load(conn)?;
    Ok(rows.into_iter().collect())
}
