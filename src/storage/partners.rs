//! Partner management (`passerelle partner ...`, the `createPartner` mutations): registering,
//! renaming and retiring the organisations whose data Passerelle holds.
//!
//! A partner's slug is the prefix of every record id it writes (`{slug}-...`), so slugs are
//! kept from overlapping: a slug that is a `-`-prefix of another (`cara` and `cara-van`) is
//! refused, as `cara-van-12` would otherwise read as a record of either.

use diesel::prelude::*;

use crate::error::{Error, FieldError, Result};
use crate::storage::schema::{oauth_clients, partners};
use crate::storage::AnyConnection;

/// A partner as the administration sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartnerEntry {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub created_at: String,
    pub retired_at: Option<String>,
}

/// The longest name and description accepted.
const MAX_NAME: usize = 200;
const MAX_DESCRIPTION: usize = 2000;

/// Why `slug` is not a valid partner slug: 2-40 characters of lower-case ASCII letters, digits
/// and `-`, starting with a letter and not ending with `-`.
pub fn slug_problem(slug: &str) -> Option<String> {
    let n = slug.chars().count();
    if !(2..=40).contains(&n) {
        return Some(format!("a slug has 2 to 40 characters, not {n}"));
    }
    if !slug
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Some("a slug has only lower-case letters a-z, digits and `-`".into());
    }
    if !slug.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Some("a slug starts with a letter".into());
    }
    if slug.ends_with('-') {
        return Some("a slug does not end with `-`".into());
    }
    None
}

/// Whether one slug is a `-`-prefix of the other (`cara` and `cara-van`): their record id
/// namespaces would overlap.
pub fn overlaps(a: &str, b: &str) -> bool {
    let prefix_of = |short: &str, long: &str| {
        long.strip_prefix(short)
            .is_some_and(|rest| rest.starts_with('-'))
    };
    prefix_of(a, b) || prefix_of(b, a)
}

fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::Invalid(vec![FieldError::new(field, message)])
}

fn check_text(name: &str, description: Option<&str>) -> Result<()> {
    let mut errors = Vec::new();
    let name_len = name.trim().chars().count();
    if name_len == 0 || name_len > MAX_NAME {
        errors.push(FieldError::new(
            "name",
            format!("a name has 1 to {MAX_NAME} characters"),
        ));
    }
    if description.is_some_and(|d| d.chars().count() > MAX_DESCRIPTION) {
        errors.push(FieldError::new(
            "description",
            format!("a description has at most {MAX_DESCRIPTION} characters"),
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(errors))
    }
}

type Row = (String, String, Option<String>, String, Option<String>);

const COLUMNS: (
    partners::id,
    partners::name,
    partners::description,
    partners::created_at,
    partners::retired_at,
) = (
    partners::id,
    partners::name,
    partners::description,
    partners::created_at,
    partners::retired_at,
);

fn entry(row: Row) -> PartnerEntry {
    let (id, name, description, created_at, retired_at) = row;
    PartnerEntry {
        id,
        name,
        description,
        created_at,
        retired_at,
    }
}

/// Registers a partner. Refused (`BAD_USER_INPUT` on `slug`) when the slug is malformed, taken,
/// or overlaps an existing one.
pub fn create(
    conn: &mut AnyConnection,
    slug: &str,
    name: &str,
    description: Option<&str>,
    now: &str,
) -> Result<PartnerEntry> {
    if let Some(problem) = slug_problem(slug) {
        return Err(invalid("slug", format!("`{slug}`: {problem}")));
    }
    check_text(name, description)?;
    crate::storage::write_transaction(conn, |conn| {
        // Two concurrent creations of `cara` and `cara-van` must not both pass the check.
        if let AnyConnection::Postgresql(c) = conn {
            diesel::sql_query("LOCK TABLE partners IN SHARE ROW EXCLUSIVE MODE").execute(c)?;
        }
        let existing: Vec<String> = partners::table.select(partners::id).load(conn)?;
        if existing.iter().any(|e| e == slug) {
            return Err(invalid(
                "slug",
                format!("a partner `{slug}` exists already"),
            ));
        }
        if let Some(other) = existing.iter().find(|e| overlaps(e, slug)) {
            return Err(invalid(
                "slug",
                format!(
                    "`{slug}` overlaps the partner `{other}`: record ids start with the slug and `-`, so neither slug may be the other's prefix followed by `-`"
                ),
            ));
        }
        diesel::insert_into(partners::table)
            .values((
                partners::id.eq(slug),
                partners::name.eq(name.trim()),
                partners::description.eq(description),
                partners::created_at.eq(now),
            ))
            .execute(conn)?;
        Ok(PartnerEntry {
            id: slug.to_owned(),
            name: name.trim().to_owned(),
            description: description.map(str::to_owned),
            created_at: now.to_owned(),
            retired_at: None,
        })
    })
}

/// Every partner, by slug, retired ones included.
pub fn list(conn: &mut AnyConnection) -> Result<Vec<PartnerEntry>> {
    let rows: Vec<Row> = partners::table
        .select(COLUMNS)
        .order(partners::id.asc())
        .load(conn)?;
    Ok(rows.into_iter().map(entry).collect())
}

/// One partner, retired or not.
pub fn get(conn: &mut AnyConnection, slug: &str) -> Result<Option<PartnerEntry>> {
    let row: Option<Row> = partners::table
        .find(slug)
        .select(COLUMNS)
        .first(conn)
        .optional()?;
    Ok(row.map(entry))
}

/// Changes a partner's name and/or description (`Some(None)` clears the description).
/// `NOT_FOUND` for an unknown slug.
pub fn update(
    conn: &mut AnyConnection,
    slug: &str,
    name: Option<&str>,
    description: Option<Option<&str>>,
) -> Result<PartnerEntry> {
    crate::storage::write_transaction(conn, |conn| {
        let Some(current) = get(conn, slug)? else {
            return Err(Error::NotFound(format!("partner `{slug}`")));
        };
        let name = name.map(str::trim).unwrap_or(&current.name).to_owned();
        let description = match description {
            Some(d) => d.map(str::to_owned),
            None => current.description.clone(),
        };
        check_text(&name, description.as_deref())?;
        if name != current.name || description != current.description {
            diesel::update(partners::table.find(slug))
                .set((
                    partners::name.eq(&name),
                    partners::description.eq(&description),
                ))
                .execute(conn)?;
        }
        Ok(PartnerEntry {
            name,
            description,
            ..current
        })
    })
}

/// What retiring a partner did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retired {
    /// False when it was retired already.
    pub newly: bool,
    /// Its clients revoked now.
    pub clients_revoked: usize,
}

/// Retires a partner: its clients are revoked (no new tokens; their tokens stop working) and
/// no client can be created for it. Its records stay. `NOT_FOUND` for an unknown slug.
pub fn retire(conn: &mut AnyConnection, slug: &str, now: &str) -> Result<Retired> {
    crate::storage::write_transaction(conn, |conn| {
        let Some(current) = get(conn, slug)? else {
            return Err(Error::NotFound(format!("partner `{slug}`")));
        };
        let newly = current.retired_at.is_none();
        if newly {
            diesel::update(partners::table.find(slug))
                .set(partners::retired_at.eq(now))
                .execute(conn)?;
        }
        let clients_revoked = diesel::update(
            oauth_clients::table
                .filter(oauth_clients::partner_id.eq(slug))
                .filter(oauth_clients::revoked_at.is_null()),
        )
        .set(oauth_clients::revoked_at.eq(now))
        .execute(conn)?;
        Ok(Retired {
            newly,
            clients_revoked,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_the_rule() {
        for ok in ["ca", "caravan", "cara-van", "a1", "x-2-y"] {
            assert_eq!(slug_problem(ok), None, "{ok}");
        }
        for bad in [
            "c",
            "Caravan",
            "1cara",
            "-cara",
            "cara-",
            "cara_van",
            "caré",
            "cara van",
            &"a".repeat(41),
        ] {
            assert!(slug_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn dash_prefixes_overlap_and_plain_prefixes_do_not() {
        assert!(overlaps("cara", "cara-van"));
        assert!(overlaps("cara-van", "cara"));
        assert!(overlaps("a-b", "a-b-c-d"));
        assert!(!overlaps("cara", "caravan"));
        assert!(!overlaps("cara", "cara"));
        assert!(!overlaps("cara-van", "cara-vane"));
    }
}
