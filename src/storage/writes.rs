//! Writes. Every record goes through `upsert_*`: validated, checked against what the writer may
//! reference, then written with its child rows in one transaction. Imports write in chunks
//! ([`write_chunk`]): the same checks made once per chunk, with the same effects. Writing the same content
//! again changes nothing (not even `updated_at`), so seeds, imports and retried client writes are
//! idempotent. A record id owned by another partner is refused.

use std::fmt::Debug;

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use sha2::{Digest, Sha256};

use super::connection::natively;
use super::rows::*;
use super::schema::*;
use super::visibility::visible_to;
use super::AnyConnection;
use crate::domain::{self, write as check, RowFilter};
use crate::error::{Error, FieldError, Result};

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WriteEffect {
    Created,
    Updated,
    Unchanged,
}

/// A digest of a record's content, provenance timestamps left out.
fn fingerprint<T: Debug>(record: &T) -> String {
    let digest = Sha256::digest(format!("{record:?}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn blank_times(p: &domain::Provenance) -> domain::Provenance {
    domain::Provenance {
        imported_at: String::new(),
        updated_at: String::new(),
        ..p.clone()
    }
}

/// What is stored under an id already.
struct Existing {
    owner: String,
    hash: String,
    imported_at: String,
    retired: bool,
}

fn decide(
    existing: Option<Existing>,
    owner: &str,
    hash: &str,
) -> Result<(WriteEffect, Option<String>)> {
    match existing {
        None => Ok((WriteEffect::Created, None)),
        // Only for ids stored before ids were namespaced by owner (`domain::write`).
        Some(e) if e.owner != owner => Err(Error::Invalid(vec![FieldError::new(
            "id",
            "cannot be used: choose another id",
        )])),
        Some(e) if e.hash == hash && !e.retired => Ok((WriteEffect::Unchanged, None)),
        Some(e) => Ok((WriteEffect::Updated, Some(e.imported_at))),
    }
}

/// Runs `f` in a transaction, once more if a concurrent writer inserted the same id first.
fn in_transaction<T>(
    conn: &mut AnyConnection,
    mut f: impl FnMut(&mut AnyConnection) -> Result<T>,
) -> Result<T> {
    match crate::storage::write_transaction(conn, &mut f) {
        Err(Error::Internal(e))
            if matches!(
                e.downcast_ref::<DieselError>(),
                Some(DieselError::DatabaseError(
                    DatabaseErrorKind::UniqueViolation,
                    _
                ))
            ) =>
        {
            crate::storage::write_transaction(conn, f)
        }
        other => other,
    }
}

fn unknown(field: &str, what: &str) -> Error {
    Error::Invalid(vec![FieldError::new(
        field,
        format!("no {what} with this id that you may reference"),
    )])
}

fn partner_exists(conn: &mut AnyConnection, id: &str) -> Result<()> {
    let n: i64 = partners::table
        .filter(partners::id.eq(id))
        .count()
        .get_result(conn)?;
    if n == 0 {
        return Err(Error::Invalid(vec![FieldError::new(
            "owner",
            format!("unknown partner `{id}`"),
        )]));
    }
    Ok(())
}

/// Registers a partner, or updates its name and description.
pub fn upsert_partner(
    conn: &mut AnyConnection,
    p: &domain::Partner,
    now: &str,
) -> Result<WriteEffect> {
    in_transaction(conn, |c| {
        let existing: Option<(String, Option<String>)> = partners::table
            .find(&p.id)
            .select((partners::name, partners::description))
            .first(c)
            .optional()?;
        match existing {
            None => {
                diesel::insert_into(partners::table)
                    .values(PartnerRow {
                        id: p.id.clone(),
                        name: p.name.clone(),
                        description: p.description.clone(),
                        created_at: now.into(),
                    })
                    .execute(c)?;
                Ok(WriteEffect::Created)
            }
            Some((name, description)) if name == p.name && description == p.description => {
                Ok(WriteEffect::Unchanged)
            }
            Some(_) => {
                diesel::update(partners::table.find(&p.id))
                    .set((
                        partners::name.eq(&p.name),
                        partners::description.eq(&p.description),
                    ))
                    .execute(c)?;
                Ok(WriteEffect::Updated)
            }
        }
    })
}

pub fn upsert_actor(
    conn: &mut AnyConnection,
    writer: &RowFilter,
    a: &domain::Actor,
    now: &str,
) -> Result<WriteEffect> {
    check::validate_actor(a)?;
    let hash = fingerprint(&domain::Actor {
        provenance: blank_times(&a.provenance),
        ..a.clone()
    });
    in_transaction(conn, |c| {
        partner_exists(c, &a.owner)?;
        if let Some(parent) = &a.parent_actor_id {
            let n: i64 = actors::table
                .filter(visible_to!(actors, writer))
                .filter(actors::id.eq(parent))
                .count()
                .get_result(c)?;
            if n == 0 {
                return Err(unknown("parentActorId", "actor"));
            }
        }
        let existing = actors::table
            .find(&a.id)
            .select((
                actors::owner_partner_id,
                actors::content_hash,
                actors::imported_at,
                actors::retired_at,
            ))
            .first::<(String, String, String, Option<String>)>(c)
            .optional()?
            .map(|(owner, hash, imported_at, retired)| Existing {
                owner,
                hash,
                imported_at,
                retired: retired.is_some(),
            });
        let (effect, imported_at) = decide(existing, &a.owner, &hash)?;
        let mut row = ActorRow::from_domain(a, hash.clone(), now);
        match effect {
            WriteEffect::Created => {
                diesel::insert_into(actors::table).values(&row).execute(c)?;
            }
            WriteEffect::Updated => {
                row.imported_at = imported_at.unwrap_or_else(|| now.into());
                diesel::update(actors::table.find(&a.id))
                    .set(&row)
                    .execute(c)?;
            }
            WriteEffect::Unchanged => {}
        }
        Ok(effect)
    })
}

pub fn upsert_action(
    conn: &mut AnyConnection,
    writer: &RowFilter,
    a: &domain::Action,
    now: &str,
) -> Result<WriteEffect> {
    check::validate_action(a)?;
    let hash = fingerprint(&domain::Action {
        provenance: blank_times(&a.provenance),
        ..a.clone()
    });
    in_transaction(conn, |c| {
        partner_exists(c, &a.owner)?;
        if let Some(parent) = &a.parent_action_id {
            let n: i64 = actions::table
                .filter(visible_to!(actions, writer))
                .filter(actions::id.eq(parent))
                .count()
                .get_result(c)?;
            if n == 0 {
                return Err(unknown("parentActionId", "action"));
            }
        }
        let existing = actions::table
            .find(&a.id)
            .select((
                actions::owner_partner_id,
                actions::content_hash,
                actions::imported_at,
                actions::retired_at,
            ))
            .first::<(String, String, String, Option<String>)>(c)
            .optional()?
            .map(|(owner, hash, imported_at, retired)| Existing {
                owner,
                hash,
                imported_at,
                retired: retired.is_some(),
            });
        let (effect, imported_at) = decide(existing, &a.owner, &hash)?;
        let mut row = ActionRow::from_domain(a, hash.clone(), now);
        match effect {
            WriteEffect::Created => {
                diesel::insert_into(actions::table)
                    .values(&row)
                    .execute(c)?;
            }
            WriteEffect::Updated => {
                row.imported_at = imported_at.unwrap_or_else(|| now.into());
                diesel::update(actions::table.find(&a.id))
                    .set(&row)
                    .execute(c)?;
                diesel::delete(action_themes::table.filter(action_themes::action_id.eq(&a.id)))
                    .execute(c)?;
                diesel::delete(action_places::table.filter(action_places::action_id.eq(&a.id)))
                    .execute(c)?;
            }
            WriteEffect::Unchanged => return Ok(effect),
        }
        let mut themes = a.themes.clone();
        themes.sort();
        themes.dedup();
        for theme in themes {
            diesel::insert_into(action_themes::table)
                .values(ThemeRow {
                    action_id: a.id.clone(),
                    theme,
                })
                .execute(c)?;
        }
        for (i, p) in a.places.iter().enumerate() {
            diesel::insert_into(action_places::table)
                .values(PlaceRow {
                    action_id: a.id.clone(),
                    position: i as i32,
                    name: p.name.clone(),
                    level: p.level.as_str().into(),
                    insee_code: p.insee_code.clone(),
                })
                .execute(c)?;
        }
        Ok(effect)
    })
}

pub fn upsert_outcome(
    conn: &mut AnyConnection,
    writer: &RowFilter,
    o: &domain::Outcome,
    now: &str,
) -> Result<WriteEffect> {
    check::validate_outcome(o)?;
    let hash = fingerprint(&domain::Outcome {
        provenance: blank_times(&o.provenance),
        ..o.clone()
    });
    in_transaction(conn, |c| {
        partner_exists(c, &o.owner)?;
        // Outcomes report on the owner's own actions.
        let n: i64 = actions::table
            .filter(visible_to!(actions, writer))
            .filter(actions::id.eq(&o.action_id))
            .filter(actions::owner_partner_id.eq(&o.owner))
            .count()
            .get_result(c)?;
        if n == 0 {
            return Err(unknown("actionId", "action of yours"));
        }
        let existing = outcomes::table
            .find(&o.id)
            .select((
                outcomes::owner_partner_id,
                outcomes::content_hash,
                outcomes::imported_at,
                outcomes::retired_at,
            ))
            .first::<(String, String, String, Option<String>)>(c)
            .optional()?
            .map(|(owner, hash, imported_at, retired)| Existing {
                owner,
                hash,
                imported_at,
                retired: retired.is_some(),
            });
        let (effect, imported_at) = decide(existing, &o.owner, &hash)?;
        let mut row = OutcomeRow::from_domain(o, hash.clone(), now);
        match effect {
            WriteEffect::Created => {
                diesel::insert_into(outcomes::table)
                    .values(&row)
                    .execute(c)?;
            }
            WriteEffect::Updated => {
                row.imported_at = imported_at.unwrap_or_else(|| now.into());
                diesel::update(outcomes::table.find(&o.id))
                    .set(&row)
                    .execute(c)?;
                diesel::delete(
                    outcome_disaggregations::table
                        .filter(outcome_disaggregations::outcome_id.eq(&o.id)),
                )
                .execute(c)?;
            }
            WriteEffect::Unchanged => return Ok(effect),
        }
        for (i, d) in o.disaggregations.iter().enumerate() {
            diesel::insert_into(outcome_disaggregations::table)
                .values(DisaggregationRow {
                    outcome_id: o.id.clone(),
                    position: i as i32,
                    dimension: d.dimension.clone(),
                    category: d.category.clone(),
                    value: d.value,
                })
                .execute(c)?;
        }
        Ok(effect)
    })
}

pub fn upsert_partnership(
    conn: &mut AnyConnection,
    writer: &RowFilter,
    p: &domain::Partnership,
    now: &str,
) -> Result<WriteEffect> {
    check::validate_partnership(p)?;
    let hash = fingerprint(&domain::Partnership {
        provenance: blank_times(&p.provenance),
        ..p.clone()
    });
    in_transaction(conn, |c| {
        partner_exists(c, &p.owner)?;
        if let Some(action) = &p.action_id {
            let n: i64 = actions::table
                .filter(visible_to!(actions, writer))
                .filter(actions::id.eq(action))
                .filter(actions::owner_partner_id.eq(&p.owner))
                .count()
                .get_result(c)?;
            if n == 0 {
                return Err(unknown("actionId", "action of yours"));
            }
        }
        let mut member_ids: Vec<&String> = p.members.iter().map(|m| &m.actor_id).collect();
        member_ids.sort();
        member_ids.dedup();
        let found: Vec<String> = actors::table
            .filter(visible_to!(actors, writer))
            .filter(actors::id.eq_any(&member_ids))
            .select(actors::id)
            .load(c)?;
        let missing: Vec<FieldError> = p
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| !found.contains(&m.actor_id))
            .map(|(i, _)| {
                FieldError::new(
                    format!("members[{i}].actorId"),
                    "no actor with this id that you may reference",
                )
            })
            .collect();
        if !missing.is_empty() {
            return Err(Error::Invalid(missing));
        }
        let existing = partnerships::table
            .find(&p.id)
            .select((
                partnerships::owner_partner_id,
                partnerships::content_hash,
                partnerships::imported_at,
                partnerships::retired_at,
            ))
            .first::<(String, String, String, Option<String>)>(c)
            .optional()?
            .map(|(owner, hash, imported_at, retired)| Existing {
                owner,
                hash,
                imported_at,
                retired: retired.is_some(),
            });
        let (effect, imported_at) = decide(existing, &p.owner, &hash)?;
        let mut row = PartnershipRow::from_domain(p, hash.clone(), now);
        match effect {
            WriteEffect::Created => {
                diesel::insert_into(partnerships::table)
                    .values(&row)
                    .execute(c)?;
            }
            WriteEffect::Updated => {
                row.imported_at = imported_at.unwrap_or_else(|| now.into());
                diesel::update(partnerships::table.find(&p.id))
                    .set(&row)
                    .execute(c)?;
                diesel::delete(
                    partnership_members::table
                        .filter(partnership_members::partnership_id.eq(&p.id)),
                )
                .execute(c)?;
            }
            WriteEffect::Unchanged => return Ok(effect),
        }
        for (i, m) in p.members.iter().enumerate() {
            diesel::insert_into(partnership_members::table)
                .values(MemberRow {
                    partnership_id: p.id.clone(),
                    position: i as i32,
                    actor_id: m.actor_id.clone(),
                    role: m.role.as_str().into(),
                })
                .execute(c)?;
        }
        Ok(effect)
    })
}

/// Many rows in one INSERT. `MultiConnection` does not offer batch inserts, so this runs on the
/// backend's own connection; the rows are the same on both.
macro_rules! bulk_insert {
    ($conn:expr, $table:expr, $rows:expr) => {
        natively!($conn, |c: Db| diesel::insert_into($table)
            .values($rows)
            .execute(c))
    };
}

/// Inserts one synthetic partner's records in bulk (many rows per statement), in one
/// transaction: all of that partner's records, or none. Records are validated and fingerprinted
/// exactly as `upsert_*` does; a partner already present is left as it is (`Unchanged`), so a
/// generation can be re-run or resumed after an interruption.
pub fn insert_synthetic(
    conn: &mut AnyConnection,
    batch: &crate::domain::synthetic::PartnerBatch,
    now: &str,
) -> Result<WriteEffect> {
    for a in &batch.actors {
        check::validate_actor(a)?;
    }
    for a in &batch.actions {
        check::validate_action(a)?;
    }
    for o in &batch.outcomes {
        check::validate_outcome(o)?;
    }
    for p in &batch.partnerships {
        check::validate_partnership(p)?;
    }
    crate::storage::write_transaction(conn, |c| {
        let exists: i64 = partners::table
            .filter(partners::id.eq(&batch.partner.id))
            .count()
            .get_result(c)?;
        if exists > 0 {
            return Ok(WriteEffect::Unchanged);
        }
        upsert_partner(c, &batch.partner, now)?;
        const CHUNK: usize = 400;
        let actors: Vec<ActorRow> = batch
            .actors
            .iter()
            .map(|a| {
                ActorRow::from_domain(
                    a,
                    fingerprint(&domain::Actor {
                        provenance: blank_times(&a.provenance),
                        ..a.clone()
                    }),
                    now,
                )
            })
            .collect();
        for chunk in actors.chunks(CHUNK) {
            bulk_insert!(c, actors::table, chunk)?;
        }
        let actions: Vec<ActionRow> = batch
            .actions
            .iter()
            .map(|a| {
                ActionRow::from_domain(
                    a,
                    fingerprint(&domain::Action {
                        provenance: blank_times(&a.provenance),
                        ..a.clone()
                    }),
                    now,
                )
            })
            .collect();
        for chunk in actions.chunks(CHUNK) {
            bulk_insert!(c, actions::table, chunk)?;
        }
        let mut themes: Vec<ThemeRow> = Vec::new();
        let mut places: Vec<PlaceRow> = Vec::new();
        for a in &batch.actions {
            let mut t = a.themes.clone();
            t.sort();
            t.dedup();
            themes.extend(t.into_iter().map(|theme| ThemeRow {
                action_id: a.id.clone(),
                theme,
            }));
            places.extend(a.places.iter().enumerate().map(|(i, p)| PlaceRow {
                action_id: a.id.clone(),
                position: i as i32,
                name: p.name.clone(),
                level: p.level.as_str().into(),
                insee_code: p.insee_code.clone(),
            }));
        }
        for chunk in themes.chunks(CHUNK) {
            bulk_insert!(c, action_themes::table, chunk)?;
        }
        for chunk in places.chunks(CHUNK) {
            bulk_insert!(c, action_places::table, chunk)?;
        }
        let outcomes: Vec<OutcomeRow> = batch
            .outcomes
            .iter()
            .map(|o| {
                OutcomeRow::from_domain(
                    o,
                    fingerprint(&domain::Outcome {
                        provenance: blank_times(&o.provenance),
                        ..o.clone()
                    }),
                    now,
                )
            })
            .collect();
        for chunk in outcomes.chunks(CHUNK) {
            bulk_insert!(c, outcomes::table, chunk)?;
        }
        let partnerships: Vec<PartnershipRow> = batch
            .partnerships
            .iter()
            .map(|p| {
                PartnershipRow::from_domain(
                    p,
                    fingerprint(&domain::Partnership {
                        provenance: blank_times(&p.provenance),
                        ..p.clone()
                    }),
                    now,
                )
            })
            .collect();
        for chunk in partnerships.chunks(CHUNK) {
            bulk_insert!(c, partnerships::table, chunk)?;
        }
        let members: Vec<MemberRow> = batch
            .partnerships
            .iter()
            .flat_map(|p| {
                p.members.iter().enumerate().map(|(i, m)| MemberRow {
                    partnership_id: p.id.clone(),
                    position: i as i32,
                    actor_id: m.actor_id.clone(),
                    role: m.role.as_str().into(),
                })
            })
            .collect();
        for chunk in members.chunks(CHUNK) {
            bulk_insert!(c, partnership_members::table, chunk)?;
        }
        Ok(WriteEffect::Created)
    })
}

/// What a retirement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RetireEffect {
    Retired,
    /// It was retired already: retrying a retirement changes nothing.
    Unchanged,
}

/// Declares `retire_*`: sets `retired_at` on a record its owner no longer publishes. Reads skip
/// retired rows; writing the record again brings it back.
macro_rules! retire {
    ($(#[$meta:meta])* $name:ident, $table:ident, $what:literal) => {
        $(#[$meta])*
        pub fn $name(
            conn: &mut AnyConnection,
            owner: &str,
            id: &str,
            now: &str,
        ) -> Result<RetireEffect> {
            crate::domain::write::check_owned_id("id", id, owner)?;
            crate::storage::write_transaction(conn, |c| {
                let existing: Option<(String, Option<String>)> = $table::table
                    .find(id)
                    .select(($table::owner_partner_id, $table::retired_at))
                    .first(c)
                    .optional()?;
                match existing {
                    // Another partner's record (stored before ids were namespaced) is, to this
                    // writer, missing.
                    None => Err(Error::NotFound(format!("{} `{id}`", $what))),
                    Some((o, _)) if o != owner => Err(Error::NotFound(format!("{} `{id}`", $what))),
                    Some((_, Some(_))) => Ok(RetireEffect::Unchanged),
                    Some((_, None)) => {
                        diesel::update($table::table.find(id))
                            .set((
                                $table::retired_at.eq(Some(now)),
                                $table::updated_at.eq(now),
                            ))
                            .execute(c)?;
                        Ok(RetireEffect::Retired)
                    }
                }
            })
        }
    };
}

retire!(
    /// Retires one of `owner`'s actors.
    retire_actor,
    actors,
    "actor"
);
retire!(
    /// Retires one of `owner`'s actions (its outcomes are hidden with it).
    retire_action,
    actions,
    "action"
);
retire!(
    /// Retires one of `owner`'s outcomes.
    retire_outcome,
    outcomes,
    "outcome"
);
retire!(
    /// Retires one of `owner`'s partnerships.
    retire_partnership,
    partnerships,
    "partnership"
);

/// `(id, owner, content hash, retired_at)` of a stored record.
pub type Stored = (String, String, String, Option<String>);

/// A record kind an import writes in bulk ([`write_chunk`]): the per-row path's checks, made
/// once per chunk.
pub trait Bulk: Sized {
    fn id(&self) -> &str;
    fn owner(&self) -> &str;
    /// Validated, then fingerprinted as `upsert_*` does.
    fn checked_hash(&self) -> Option<String>;
    /// `(id, owner, hash, retired_at)` of those of `ids` stored already, whoever owns them.
    fn existing(c: &mut AnyConnection, ids: &[&str]) -> QueryResult<Vec<Stored>>;
    /// Whether each record's references pass `upsert_*`'s checks.
    fn references_ok(
        c: &mut AnyConnection,
        writer: &RowFilter,
        records: &[&Self],
    ) -> QueryResult<Vec<bool>>;
    /// Inserts new records with their child rows, many per statement.
    fn insert_new(c: &mut AnyConnection, records: &[(&Self, String)], now: &str)
        -> QueryResult<()>;
    /// The per-row path.
    fn upsert(
        c: &mut AnyConnection,
        writer: &RowFilter,
        r: &Self,
        now: &str,
    ) -> Result<WriteEffect>;
}

/// Rows per multi-row INSERT (within both backends' limits on bound parameters).
const BULK_ROWS: usize = 400;

/// Ids among `wanted` that `writer` may reference, with their owners.
fn visible_ids(
    c: &mut AnyConnection,
    writer: &RowFilter,
    actions_table: bool,
    wanted: &[&str],
) -> QueryResult<std::collections::HashMap<String, String>> {
    let mut found = std::collections::HashMap::new();
    for ids in wanted.chunks(BULK_ROWS) {
        let rows: Vec<(String, String)> = if actions_table {
            actions::table
                .filter(visible_to!(actions, writer))
                .filter(actions::id.eq_any(ids))
                .select((actions::id, actions::owner_partner_id))
                .load(c)?
        } else {
            actors::table
                .filter(visible_to!(actors, writer))
                .filter(actors::id.eq_any(ids))
                .select((actors::id, actors::owner_partner_id))
                .load(c)?
        };
        found.extend(rows);
    }
    Ok(found)
}

macro_rules! existing_of {
    ($table:ident, $c:expr, $ids:expr) => {{
        let mut all = Vec::new();
        for ids in $ids.chunks(BULK_ROWS) {
            all.extend(
                $table::table
                    .filter($table::id.eq_any(ids))
                    .select((
                        $table::id,
                        $table::owner_partner_id,
                        $table::content_hash,
                        $table::retired_at,
                    ))
                    .load::<Stored>($c)?,
            );
        }
        Ok(all)
    }};
}

impl Bulk for domain::Actor {
    fn id(&self) -> &str {
        &self.id
    }
    fn owner(&self) -> &str {
        &self.owner
    }
    fn checked_hash(&self) -> Option<String> {
        check::validate_actor(self).ok()?;
        Some(fingerprint(&domain::Actor {
            provenance: blank_times(&self.provenance),
            ..self.clone()
        }))
    }
    fn existing(c: &mut AnyConnection, ids: &[&str]) -> QueryResult<Vec<Stored>> {
        existing_of!(actors, c, ids)
    }
    fn references_ok(
        c: &mut AnyConnection,
        writer: &RowFilter,
        records: &[&Self],
    ) -> QueryResult<Vec<bool>> {
        let parents: Vec<&str> = records
            .iter()
            .filter_map(|r| r.parent_actor_id.as_deref())
            .collect();
        let found = visible_ids(c, writer, false, &parents)?;
        Ok(records
            .iter()
            .map(|r| {
                r.parent_actor_id
                    .as_ref()
                    .is_none_or(|p| found.contains_key(p))
            })
            .collect())
    }
    fn insert_new(
        c: &mut AnyConnection,
        records: &[(&Self, String)],
        now: &str,
    ) -> QueryResult<()> {
        let rows: Vec<ActorRow> = records
            .iter()
            .map(|(a, hash)| ActorRow::from_domain(a, hash.clone(), now))
            .collect();
        for chunk in rows.chunks(BULK_ROWS) {
            bulk_insert!(c, actors::table, chunk)?;
        }
        Ok(())
    }
    fn upsert(
        c: &mut AnyConnection,
        writer: &RowFilter,
        r: &Self,
        now: &str,
    ) -> Result<WriteEffect> {
        upsert_actor(c, writer, r, now)
    }
}

impl Bulk for domain::Action {
    fn id(&self) -> &str {
        &self.id
    }
    fn owner(&self) -> &str {
        &self.owner
    }
    fn checked_hash(&self) -> Option<String> {
        check::validate_action(self).ok()?;
        Some(fingerprint(&domain::Action {
            provenance: blank_times(&self.provenance),
            ..self.clone()
        }))
    }
    fn existing(c: &mut AnyConnection, ids: &[&str]) -> QueryResult<Vec<Stored>> {
        existing_of!(actions, c, ids)
    }
    fn references_ok(
        c: &mut AnyConnection,
        writer: &RowFilter,
        records: &[&Self],
    ) -> QueryResult<Vec<bool>> {
        let parents: Vec<&str> = records
            .iter()
            .filter_map(|r| r.parent_action_id.as_deref())
            .collect();
        let found = visible_ids(c, writer, true, &parents)?;
        Ok(records
            .iter()
            .map(|r| {
                r.parent_action_id
                    .as_ref()
                    .is_none_or(|p| found.contains_key(p))
            })
            .collect())
    }
    fn insert_new(
        c: &mut AnyConnection,
        records: &[(&Self, String)],
        now: &str,
    ) -> QueryResult<()> {
        let rows: Vec<ActionRow> = records
            .iter()
            .map(|(a, hash)| ActionRow::from_domain(a, hash.clone(), now))
            .collect();
        for chunk in rows.chunks(BULK_ROWS) {
            bulk_insert!(c, actions::table, chunk)?;
        }
        let mut themes: Vec<ThemeRow> = Vec::new();
        let mut places: Vec<PlaceRow> = Vec::new();
        for (a, _) in records {
            let mut t = a.themes.clone();
            t.sort();
            t.dedup();
            themes.extend(t.into_iter().map(|theme| ThemeRow {
                action_id: a.id.clone(),
                theme,
            }));
            places.extend(a.places.iter().enumerate().map(|(i, p)| PlaceRow {
                action_id: a.id.clone(),
                position: i as i32,
                name: p.name.clone(),
                level: p.level.as_str().into(),
                insee_code: p.insee_code.clone(),
            }));
        }
        for chunk in themes.chunks(BULK_ROWS) {
            bulk_insert!(c, action_themes::table, chunk)?;
        }
        for chunk in places.chunks(BULK_ROWS) {
            bulk_insert!(c, action_places::table, chunk)?;
        }
        Ok(())
    }
    fn upsert(
        c: &mut AnyConnection,
        writer: &RowFilter,
        r: &Self,
        now: &str,
    ) -> Result<WriteEffect> {
        upsert_action(c, writer, r, now)
    }
}

impl Bulk for domain::Outcome {
    fn id(&self) -> &str {
        &self.id
    }
    fn owner(&self) -> &str {
        &self.owner
    }
    fn checked_hash(&self) -> Option<String> {
        check::validate_outcome(self).ok()?;
        Some(fingerprint(&domain::Outcome {
            provenance: blank_times(&self.provenance),
            ..self.clone()
        }))
    }
    fn existing(c: &mut AnyConnection, ids: &[&str]) -> QueryResult<Vec<Stored>> {
        existing_of!(outcomes, c, ids)
    }
    fn references_ok(
        c: &mut AnyConnection,
        writer: &RowFilter,
        records: &[&Self],
    ) -> QueryResult<Vec<bool>> {
        // Outcomes report on the owner's own actions.
        let wanted: Vec<&str> = records.iter().map(|r| r.action_id.as_str()).collect();
        let found = visible_ids(c, writer, true, &wanted)?;
        Ok(records
            .iter()
            .map(|r| {
                found
                    .get(&r.action_id)
                    .is_some_and(|owner| *owner == r.owner)
            })
            .collect())
    }
    fn insert_new(
        c: &mut AnyConnection,
        records: &[(&Self, String)],
        now: &str,
    ) -> QueryResult<()> {
        let rows: Vec<OutcomeRow> = records
            .iter()
            .map(|(o, hash)| OutcomeRow::from_domain(o, hash.clone(), now))
            .collect();
        for chunk in rows.chunks(BULK_ROWS) {
            bulk_insert!(c, outcomes::table, chunk)?;
        }
        let parts: Vec<DisaggregationRow> = records
            .iter()
            .flat_map(|(o, _)| {
                o.disaggregations
                    .iter()
                    .enumerate()
                    .map(|(i, d)| DisaggregationRow {
                        outcome_id: o.id.clone(),
                        position: i as i32,
                        dimension: d.dimension.clone(),
                        category: d.category.clone(),
                        value: d.value,
                    })
            })
            .collect();
        for chunk in parts.chunks(BULK_ROWS) {
            bulk_insert!(c, outcome_disaggregations::table, chunk)?;
        }
        Ok(())
    }
    fn upsert(
        c: &mut AnyConnection,
        writer: &RowFilter,
        r: &Self,
        now: &str,
    ) -> Result<WriteEffect> {
        upsert_outcome(c, writer, r, now)
    }
}

impl Bulk for domain::Partnership {
    fn id(&self) -> &str {
        &self.id
    }
    fn owner(&self) -> &str {
        &self.owner
    }
    fn checked_hash(&self) -> Option<String> {
        check::validate_partnership(self).ok()?;
        Some(fingerprint(&domain::Partnership {
            provenance: blank_times(&self.provenance),
            ..self.clone()
        }))
    }
    fn existing(c: &mut AnyConnection, ids: &[&str]) -> QueryResult<Vec<Stored>> {
        existing_of!(partnerships, c, ids)
    }
    fn references_ok(
        c: &mut AnyConnection,
        writer: &RowFilter,
        records: &[&Self],
    ) -> QueryResult<Vec<bool>> {
        let wanted: Vec<&str> = records
            .iter()
            .filter_map(|r| r.action_id.as_deref())
            .collect();
        let actions_found = visible_ids(c, writer, true, &wanted)?;
        let members: Vec<&str> = records
            .iter()
            .flat_map(|r| r.members.iter().map(|m| m.actor_id.as_str()))
            .collect();
        let actors_found = visible_ids(c, writer, false, &members)?;
        Ok(records
            .iter()
            .map(|r| {
                r.action_id
                    .as_ref()
                    .is_none_or(|a| actions_found.get(a).is_some_and(|o| *o == r.owner))
                    && r.members
                        .iter()
                        .all(|m| actors_found.contains_key(&m.actor_id))
            })
            .collect())
    }
    fn insert_new(
        c: &mut AnyConnection,
        records: &[(&Self, String)],
        now: &str,
    ) -> QueryResult<()> {
        let rows: Vec<PartnershipRow> = records
            .iter()
            .map(|(p, hash)| PartnershipRow::from_domain(p, hash.clone(), now))
            .collect();
        for chunk in rows.chunks(BULK_ROWS) {
            bulk_insert!(c, partnerships::table, chunk)?;
        }
        let members: Vec<MemberRow> = records
            .iter()
            .flat_map(|(p, _)| {
                p.members.iter().enumerate().map(|(i, m)| MemberRow {
                    partnership_id: p.id.clone(),
                    position: i as i32,
                    actor_id: m.actor_id.clone(),
                    role: m.role.as_str().into(),
                })
            })
            .collect();
        for chunk in members.chunks(BULK_ROWS) {
            bulk_insert!(c, partnership_members::table, chunk)?;
        }
        Ok(())
    }
    fn upsert(
        c: &mut AnyConnection,
        writer: &RowFilter,
        r: &Self,
        now: &str,
    ) -> Result<WriteEffect> {
        upsert_partnership(c, writer, r, now)
    }
}

/// For a transaction that writes many chunks ([`write_chunk`]), on PostgreSQL: each statement
/// planned for its own values. The connection's generic plans (`plan_cache_mode`, see
/// `storage::connection`) were made while the tables were small, and looked ids up by a scan
/// of the table as it grew: a 45,000-row import took 12 s, against 6.8 s on SQLite.
pub fn plan_for_bulk(c: &mut AnyConnection) -> Result<()> {
    use diesel::connection::SimpleConnection;
    if let AnyConnection::Postgresql(pg) = c {
        pg.batch_execute("SET LOCAL plan_cache_mode = force_custom_plan")?;
    }
    Ok(())
}

/// Writes a chunk of one kind's records inside the caller's transaction, with the outcome each
/// would have had through `upsert_*` one by one: the chunk must hold no id twice and no record
/// referencing another of the chunk (then the order within it does not matter). The checks run
/// once for the chunk; new records whose checks pass are inserted many per statement, and those
/// stored already with the same content are left as they are. Every other record (invalid, with
/// a reference that fails, another partner's id, an update) goes through `upsert_*` itself, for
/// its exact effect or error; so do the new ones if a concurrent writer inserted one of their
/// ids meanwhile. `known_partners` remembers which owners exist, across chunks.
pub fn write_chunk<R: Bulk>(
    c: &mut AnyConnection,
    writer: &RowFilter,
    records: &[&R],
    now: &str,
    known_partners: &mut std::collections::HashMap<String, bool>,
) -> Result<Vec<Result<WriteEffect>>> {
    for r in records {
        if !known_partners.contains_key(r.owner()) {
            let n: i64 = partners::table
                .filter(partners::id.eq(r.owner()))
                .count()
                .get_result(c)?;
            known_partners.insert(r.owner().to_owned(), n > 0);
        }
    }
    let ids: Vec<&str> = records.iter().map(|r| r.id()).collect();
    let existing: std::collections::HashMap<String, (String, String, Option<String>)> =
        R::existing(c, &ids)?
            .into_iter()
            .map(|(id, owner, hash, retired)| (id, (owner, hash, retired)))
            .collect();
    let references = R::references_ok(c, writer, records)?;
    let mut effects: Vec<Option<Result<WriteEffect>>> = records.iter().map(|_| None).collect();
    let mut fresh: Vec<(usize, String)> = Vec::new();
    let mut one_by_one: Vec<usize> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let hash = match r.checked_hash() {
            Some(h) if references[i] && known_partners.get(r.owner()) == Some(&true) => h,
            _ => {
                one_by_one.push(i);
                continue;
            }
        };
        match existing.get(r.id()) {
            None => fresh.push((i, hash)),
            Some((owner, stored, None)) if owner == r.owner() && *stored == hash => {
                effects[i] = Some(Ok(WriteEffect::Unchanged))
            }
            Some(_) => one_by_one.push(i),
        }
    }
    if !fresh.is_empty() {
        let new: Vec<(&R, String)> = fresh
            .iter()
            .map(|(i, hash)| (records[*i], hash.clone()))
            .collect();
        // In a savepoint: a unique violation (a concurrent writer's insert) undoes only this.
        match c.transaction(|c| R::insert_new(c, &new, now)) {
            Ok(()) => {
                for (i, _) in &fresh {
                    effects[*i] = Some(Ok(WriteEffect::Created));
                }
            }
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                one_by_one.extend(fresh.iter().map(|(i, _)| *i));
            }
            Err(e) => return Err(e.into()),
        }
    }
    one_by_one.sort_unstable();
    for i in one_by_one {
        effects[i] = Some(R::upsert(c, writer, records[i], now));
    }
    effects
        .into_iter()
        .map(|e| {
            e.ok_or_else(|| {
                Error::internal(anyhow::anyhow!("a record of the chunk was not written"))
            })
        })
        .collect()
}
