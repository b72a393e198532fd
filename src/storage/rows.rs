//! Rows as stored, and their conversion to and from domain records.
//!
//! Enums are stored as lower-case text and dates as ISO 8601 text, the same on both backends.
//! A row that holds text this version cannot read is reported as an internal error rather than
//! guessed at.

use diesel::prelude::*;

use super::schema::*;
use crate::domain::{self, dates::iso_day, PartialDate, Provenance};
use crate::error::{Error, Result};

fn bad_row(what: &str, value: &str) -> Error {
    Error::internal(anyhow::anyhow!(
        "stored {what} `{value}` is not understood by this version"
    ))
}

fn vocab<T>(what: &str, value: &str, parse: fn(&str) -> Option<T>) -> Result<T> {
    parse(value).ok_or_else(|| bad_row(what, value))
}

fn date(what: &str, value: Option<String>) -> Result<Option<PartialDate>> {
    value
        .map(|v| v.parse().map_err(|_| bad_row(what, &v)))
        .transpose()
}

pub fn lower_bound(d: Option<PartialDate>) -> Option<String> {
    d.map(|d| iso_day(d.first_day()))
}

pub fn upper_bound(d: Option<PartialDate>) -> Option<String> {
    d.map(|d| iso_day(d.last_day()))
}

/// The lower-cased text that `text:` filters search.
pub fn search_text(parts: &[Option<&str>]) -> String {
    parts
        .iter()
        .flatten()
        .map(|s| s.to_lowercase())
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = partners)]
pub struct PartnerRow {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub created_at: String,
}

impl From<PartnerRow> for domain::Partner {
    fn from(r: PartnerRow) -> Self {
        domain::Partner {
            id: r.id,
            name: r.name,
            description: r.description,
        }
    }
}

#[derive(Insertable, AsChangeset)]
#[diesel(table_name = actors, treat_none_as_null = true)]
pub struct ActorRow {
    pub id: String,
    pub owner_partner_id: String,
    pub kind: String,
    pub name: String,
    pub acronym: Option<String>,
    pub description: Option<String>,
    pub website: Option<String>,
    pub territory_code: Option<String>,
    pub territory_name: Option<String>,
    pub parent_actor_id: Option<String>,
    pub visibility: String,
    pub source: String,
    pub source_ref: Option<String>,
    pub imported_at: String,
    pub updated_at: String,
    pub retired_at: Option<String>,
    pub content_hash: String,
    pub search_text: String,
}

/// An actor as reads select it: without the columns only writes and filters use
/// (period bounds, content hash, search text, retirement), which are much of a row's bytes.
#[derive(Queryable, Selectable)]
#[diesel(table_name = actors)]
pub struct ActorRecord {
    #[diesel(embed)]
    pub brief: ActorBrief,
    pub source: String,
    pub source_ref: Option<String>,
    pub imported_at: String,
    pub updated_at: String,
}

/// An `ActorRecord` without its provenance, for reads whose document never asks for it.
#[derive(Queryable, Selectable)]
#[diesel(table_name = actors)]
pub struct ActorBrief {
    pub id: String,
    pub owner_partner_id: String,
    pub kind: String,
    pub name: String,
    pub acronym: Option<String>,
    pub description: Option<String>,
    pub website: Option<String>,
    pub territory_code: Option<String>,
    pub territory_name: Option<String>,
    pub parent_actor_id: Option<String>,
    pub visibility: String,
}

/// An actor's core columns (id, owner, name), for reads whose document names none of the
/// others (see `Detail::secondary`).
#[derive(Queryable, Selectable)]
#[diesel(table_name = actors)]
pub struct ActorCore {
    pub id: String,
    pub owner_partner_id: String,
    pub name: String,
}

impl From<ActorCore> for ActorRecord {
    /// The columns not read get placeholders that no resolver of that document reads, chosen
    /// to fail closed: kind `other`, visibility `private`, nothing else.
    fn from(core: ActorCore) -> Self {
        ActorBrief {
            id: core.id,
            owner_partner_id: core.owner_partner_id,
            kind: domain::ActorKind::Other.as_str().into(),
            name: core.name,
            acronym: None,
            description: None,
            website: None,
            territory_code: None,
            territory_name: None,
            parent_actor_id: None,
            visibility: domain::Visibility::Private.as_str().into(),
        }
        .into()
    }
}

impl From<ActorBrief> for ActorRecord {
    /// With an empty provenance.
    fn from(brief: ActorBrief) -> Self {
        ActorRecord {
            brief,
            source: String::new(),
            source_ref: None,
            imported_at: String::new(),
            updated_at: String::new(),
        }
    }
}

impl ActorRecord {
    pub fn into_domain(self) -> Result<domain::Actor> {
        let b = self.brief;
        Ok(domain::Actor {
            kind: vocab("actor kind", &b.kind, domain::ActorKind::from_stored)?,
            visibility: vocab("visibility", &b.visibility, domain::Visibility::from_stored)?,
            provenance: Provenance {
                source: self.source,
                source_ref: self.source_ref,
                imported_at: self.imported_at,
                updated_at: self.updated_at,
            },
            id: b.id,
            owner: b.owner_partner_id,
            name: b.name,
            acronym: b.acronym,
            description: b.description,
            website: b.website,
            territory_code: b.territory_code,
            territory_name: b.territory_name,
            parent_actor_id: b.parent_actor_id,
        })
    }
}

impl ActorRow {
    pub fn from_domain(a: &domain::Actor, content_hash: String, now: &str) -> Self {
        ActorRow {
            id: a.id.clone(),
            owner_partner_id: a.owner.clone(),
            kind: a.kind.as_str().into(),
            name: a.name.clone(),
            acronym: a.acronym.clone(),
            description: a.description.clone(),
            website: a.website.clone(),
            territory_code: a.territory_code.clone(),
            territory_name: a.territory_name.clone(),
            parent_actor_id: a.parent_actor_id.clone(),
            visibility: a.visibility.as_str().into(),
            source: a.provenance.source.clone(),
            source_ref: a.provenance.source_ref.clone(),
            imported_at: now.into(),
            updated_at: now.into(),
            retired_at: None,
            content_hash,
            search_text: search_text(&[
                Some(&a.name),
                a.acronym.as_deref(),
                a.description.as_deref(),
                a.territory_name.as_deref(),
            ]),
        }
    }
}

#[derive(Insertable, AsChangeset)]
#[diesel(table_name = actions, treat_none_as_null = true)]
pub struct ActionRow {
    pub id: String,
    pub owner_partner_id: String,
    pub kind: String,
    pub title: String,
    pub summary: Option<String>,
    pub status: Option<String>,
    pub starts_on: Option<String>,
    pub ends_on: Option<String>,
    pub start_bound: Option<String>,
    pub end_bound: Option<String>,
    pub sort_start: String,
    pub schedule: Option<String>,
    pub parent_action_id: Option<String>,
    pub website: Option<String>,
    pub visibility: String,
    pub source: String,
    pub source_ref: Option<String>,
    pub imported_at: String,
    pub updated_at: String,
    pub retired_at: Option<String>,
    pub content_hash: String,
    pub search_text: String,
}

/// An action as reads select it: without the columns only writes and filters use
/// (period bounds, content hash, search text, retirement), which are much of a row's bytes.
#[derive(Queryable, Selectable)]
#[diesel(table_name = actions)]
pub struct ActionRecord {
    pub id: String,
    pub owner_partner_id: String,
    pub kind: String,
    pub title: String,
    pub summary: Option<String>,
    pub status: Option<String>,
    pub starts_on: Option<String>,
    pub ends_on: Option<String>,
    pub sort_start: String,
    pub schedule: Option<String>,
    pub parent_action_id: Option<String>,
    pub website: Option<String>,
    pub visibility: String,
    pub source: String,
    pub source_ref: Option<String>,
    pub imported_at: String,
    pub updated_at: String,
}

/// An action's core columns (all but its summary, schedule, website and provenance), for reads
/// whose document names none of the others (see `Detail::secondary`): a page of actions read
/// this way is about a third of the bytes.
#[derive(Queryable, Selectable)]
#[diesel(table_name = actions)]
pub struct ActionCore {
    pub id: String,
    pub owner_partner_id: String,
    pub kind: String,
    pub title: String,
    pub status: Option<String>,
    pub starts_on: Option<String>,
    pub ends_on: Option<String>,
    pub sort_start: String,
    pub parent_action_id: Option<String>,
    pub visibility: String,
}

impl From<ActionCore> for ActionRecord {
    /// The columns not read get placeholders that no resolver of that document reads: no
    /// summary, schedule or website, an empty provenance.
    fn from(core: ActionCore) -> Self {
        ActionRecord {
            id: core.id,
            owner_partner_id: core.owner_partner_id,
            kind: core.kind,
            title: core.title,
            summary: None,
            status: core.status,
            starts_on: core.starts_on,
            ends_on: core.ends_on,
            sort_start: core.sort_start,
            schedule: None,
            parent_action_id: core.parent_action_id,
            website: None,
            visibility: core.visibility,
            source: String::new(),
            source_ref: None,
            imported_at: String::new(),
            updated_at: String::new(),
        }
    }
}

/// Sorts actions with no known start after all dated ones.
pub const UNKNOWN_START: &str = "9999-12-31";

impl ActionRecord {
    pub fn into_domain(
        self,
        themes: Vec<String>,
        places: Vec<domain::Place>,
    ) -> Result<domain::Action> {
        Ok(domain::Action {
            kind: vocab("action kind", &self.kind, domain::ActionKind::from_stored)?,
            status: self
                .status
                .as_deref()
                .map(|s| vocab("action status", s, domain::ActionStatus::from_stored))
                .transpose()?,
            starts_on: date("start", self.starts_on)?,
            ends_on: date("end", self.ends_on)?,
            visibility: vocab(
                "visibility",
                &self.visibility,
                domain::Visibility::from_stored,
            )?,
            provenance: Provenance {
                source: self.source,
                source_ref: self.source_ref,
                imported_at: self.imported_at,
                updated_at: self.updated_at,
            },
            id: self.id,
            owner: self.owner_partner_id,
            title: self.title,
            summary: self.summary,
            schedule: self.schedule,
            parent_action_id: self.parent_action_id,
            website: self.website,
            themes,
            places,
        })
    }
}

impl ActionRow {
    pub fn from_domain(a: &domain::Action, content_hash: String, now: &str) -> Self {
        let start_bound = lower_bound(a.starts_on);
        ActionRow {
            id: a.id.clone(),
            owner_partner_id: a.owner.clone(),
            kind: a.kind.as_str().into(),
            title: a.title.clone(),
            summary: a.summary.clone(),
            status: a.status.map(|s| s.as_str().into()),
            starts_on: a.starts_on.map(|d| d.to_string()),
            ends_on: a.ends_on.map(|d| d.to_string()),
            sort_start: start_bound.clone().unwrap_or_else(|| UNKNOWN_START.into()),
            start_bound,
            end_bound: upper_bound(a.ends_on),
            schedule: a.schedule.clone(),
            parent_action_id: a.parent_action_id.clone(),
            website: a.website.clone(),
            visibility: a.visibility.as_str().into(),
            source: a.provenance.source.clone(),
            source_ref: a.provenance.source_ref.clone(),
            imported_at: now.into(),
            updated_at: now.into(),
            retired_at: None,
            content_hash,
            search_text: search_text(&[
                Some(&a.title),
                a.summary.as_deref(),
                Some(&a.themes.join(" ")),
                Some(
                    &a.places
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
            ]),
        }
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = action_themes)]
pub struct ThemeRow {
    pub action_id: String,
    pub theme: String,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = action_places)]
pub struct PlaceRow {
    pub action_id: String,
    pub position: i32,
    pub name: String,
    pub level: String,
    pub insee_code: Option<String>,
}

impl PlaceRow {
    pub fn into_domain(self) -> Result<domain::Place> {
        Ok(domain::Place {
            level: vocab("place level", &self.level, domain::PlaceLevel::from_stored)?,
            name: self.name,
            insee_code: self.insee_code,
        })
    }
}

#[derive(Insertable, AsChangeset)]
#[diesel(table_name = outcomes, treat_none_as_null = true)]
pub struct OutcomeRow {
    pub id: String,
    pub owner_partner_id: String,
    pub action_id: String,
    pub indicator: String,
    pub measure: String,
    pub value: Option<f64>,
    pub unit: Option<String>,
    pub statement: Option<String>,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    pub start_bound: Option<String>,
    pub end_bound: Option<String>,
    pub visibility: String,
    pub source: String,
    pub source_ref: Option<String>,
    pub imported_at: String,
    pub updated_at: String,
    pub retired_at: Option<String>,
    pub content_hash: String,
    pub search_text: String,
}

/// An outcome as reads select it: without the columns only writes and filters use
/// (period bounds, content hash, search text, retirement), which are much of a row's bytes.
#[derive(Queryable, Selectable)]
#[diesel(table_name = outcomes)]
pub struct OutcomeRecord {
    #[diesel(embed)]
    pub brief: OutcomeBrief,
    pub source: String,
    pub source_ref: Option<String>,
    pub imported_at: String,
    pub updated_at: String,
}

/// An `OutcomeRecord` without its provenance, for reads whose document never asks for it.
#[derive(Queryable, Selectable)]
#[diesel(table_name = outcomes)]
pub struct OutcomeBrief {
    pub id: String,
    pub owner_partner_id: String,
    pub action_id: String,
    pub indicator: String,
    pub measure: String,
    pub value: Option<f64>,
    pub unit: Option<String>,
    pub statement: Option<String>,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    pub visibility: String,
}

/// An outcome's core columns (id, owner, action, indicator, value, unit), for reads whose
/// document names none of the others (see `Detail::secondary`).
#[derive(Queryable, Selectable)]
#[diesel(table_name = outcomes)]
pub struct OutcomeCore {
    pub id: String,
    pub owner_partner_id: String,
    pub action_id: String,
    pub indicator: String,
    pub value: Option<f64>,
    pub unit: Option<String>,
}

impl From<OutcomeCore> for OutcomeRecord {
    /// The columns not read get placeholders that no resolver of that document reads, chosen
    /// to fail closed: measure `qualitative`, visibility `private`, no statement, no period.
    fn from(core: OutcomeCore) -> Self {
        OutcomeBrief {
            id: core.id,
            owner_partner_id: core.owner_partner_id,
            action_id: core.action_id,
            indicator: core.indicator,
            measure: domain::OutcomeMeasure::Qualitative.as_str().into(),
            value: core.value,
            unit: core.unit,
            statement: None,
            period_start: None,
            period_end: None,
            visibility: domain::Visibility::Private.as_str().into(),
        }
        .into()
    }
}

impl From<OutcomeBrief> for OutcomeRecord {
    /// With an empty provenance.
    fn from(brief: OutcomeBrief) -> Self {
        OutcomeRecord {
            brief,
            source: String::new(),
            source_ref: None,
            imported_at: String::new(),
            updated_at: String::new(),
        }
    }
}

impl OutcomeRecord {
    pub fn into_domain(
        self,
        disaggregations: Vec<domain::Disaggregation>,
    ) -> Result<domain::Outcome> {
        let b = self.brief;
        Ok(domain::Outcome {
            measure: vocab(
                "outcome measure",
                &b.measure,
                domain::OutcomeMeasure::from_stored,
            )?,
            period_start: date("period start", b.period_start)?,
            period_end: date("period end", b.period_end)?,
            visibility: vocab("visibility", &b.visibility, domain::Visibility::from_stored)?,
            provenance: Provenance {
                source: self.source,
                source_ref: self.source_ref,
                imported_at: self.imported_at,
                updated_at: self.updated_at,
            },
            id: b.id,
            owner: b.owner_partner_id,
            action_id: b.action_id,
            indicator: b.indicator,
            value: b.value,
            unit: b.unit,
            statement: b.statement,
            disaggregations,
        })
    }
}

impl OutcomeRow {
    pub fn from_domain(o: &domain::Outcome, content_hash: String, now: &str) -> Self {
        OutcomeRow {
            id: o.id.clone(),
            owner_partner_id: o.owner.clone(),
            action_id: o.action_id.clone(),
            indicator: o.indicator.clone(),
            measure: o.measure.as_str().into(),
            value: o.value,
            unit: o.unit.clone(),
            statement: o.statement.clone(),
            period_start: o.period_start.map(|d| d.to_string()),
            period_end: o.period_end.map(|d| d.to_string()),
            start_bound: lower_bound(o.period_start),
            end_bound: upper_bound(o.period_end),
            visibility: o.visibility.as_str().into(),
            source: o.provenance.source.clone(),
            source_ref: o.provenance.source_ref.clone(),
            imported_at: now.into(),
            updated_at: now.into(),
            retired_at: None,
            content_hash,
            search_text: search_text(&[
                Some(&o.indicator),
                o.statement.as_deref(),
                o.unit.as_deref(),
            ]),
        }
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = outcome_disaggregations)]
pub struct DisaggregationRow {
    pub outcome_id: String,
    pub position: i32,
    pub dimension: String,
    pub category: String,
    pub value: Option<f64>,
}

#[derive(Insertable, AsChangeset)]
#[diesel(table_name = partnerships, treat_none_as_null = true)]
pub struct PartnershipRow {
    pub id: String,
    pub owner_partner_id: String,
    pub action_id: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub starts_on: Option<String>,
    pub ends_on: Option<String>,
    pub start_bound: Option<String>,
    pub end_bound: Option<String>,
    pub visibility: String,
    pub source: String,
    pub source_ref: Option<String>,
    pub imported_at: String,
    pub updated_at: String,
    pub retired_at: Option<String>,
    pub content_hash: String,
    pub search_text: String,
}

/// A partnership as reads select it: without the columns only writes and filters use
/// (period bounds, content hash, search text, retirement), which are much of a row's bytes.
#[derive(Queryable, Selectable)]
#[diesel(table_name = partnerships)]
pub struct PartnershipRecord {
    #[diesel(embed)]
    pub brief: PartnershipBrief,
    pub source: String,
    pub source_ref: Option<String>,
    pub imported_at: String,
    pub updated_at: String,
}

/// A `PartnershipRecord` without its provenance, for reads whose document never asks for it.
#[derive(Queryable, Selectable)]
#[diesel(table_name = partnerships)]
pub struct PartnershipBrief {
    pub id: String,
    pub owner_partner_id: String,
    pub action_id: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub starts_on: Option<String>,
    pub ends_on: Option<String>,
    pub visibility: String,
}

/// A partnership's core columns (all but its description and provenance), for reads whose
/// document names neither (see `Detail::secondary`).
#[derive(Queryable, Selectable)]
#[diesel(table_name = partnerships)]
pub struct PartnershipCore {
    pub id: String,
    pub owner_partner_id: String,
    pub action_id: Option<String>,
    pub name: String,
    pub starts_on: Option<String>,
    pub ends_on: Option<String>,
    pub visibility: String,
}

impl From<PartnershipCore> for PartnershipRecord {
    /// No description and an empty provenance, which no resolver of that document reads.
    fn from(core: PartnershipCore) -> Self {
        PartnershipBrief {
            id: core.id,
            owner_partner_id: core.owner_partner_id,
            action_id: core.action_id,
            name: core.name,
            description: None,
            starts_on: core.starts_on,
            ends_on: core.ends_on,
            visibility: core.visibility,
        }
        .into()
    }
}

impl From<PartnershipBrief> for PartnershipRecord {
    /// With an empty provenance.
    fn from(brief: PartnershipBrief) -> Self {
        PartnershipRecord {
            brief,
            source: String::new(),
            source_ref: None,
            imported_at: String::new(),
            updated_at: String::new(),
        }
    }
}

impl PartnershipRecord {
    pub fn into_domain(self, members: Vec<domain::Member>) -> Result<domain::Partnership> {
        let b = self.brief;
        Ok(domain::Partnership {
            starts_on: date("start", b.starts_on)?,
            ends_on: date("end", b.ends_on)?,
            visibility: vocab("visibility", &b.visibility, domain::Visibility::from_stored)?,
            provenance: Provenance {
                source: self.source,
                source_ref: self.source_ref,
                imported_at: self.imported_at,
                updated_at: self.updated_at,
            },
            id: b.id,
            owner: b.owner_partner_id,
            action_id: b.action_id,
            name: b.name,
            description: b.description,
            members,
        })
    }
}

impl PartnershipRow {
    pub fn from_domain(p: &domain::Partnership, content_hash: String, now: &str) -> Self {
        PartnershipRow {
            id: p.id.clone(),
            owner_partner_id: p.owner.clone(),
            action_id: p.action_id.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            starts_on: p.starts_on.map(|d| d.to_string()),
            ends_on: p.ends_on.map(|d| d.to_string()),
            start_bound: lower_bound(p.starts_on),
            end_bound: upper_bound(p.ends_on),
            visibility: p.visibility.as_str().into(),
            source: p.provenance.source.clone(),
            source_ref: p.provenance.source_ref.clone(),
            imported_at: now.into(),
            updated_at: now.into(),
            retired_at: None,
            content_hash,
            search_text: search_text(&[Some(&p.name), p.description.as_deref()]),
        }
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = partnership_members)]
pub struct MemberRow {
    pub partnership_id: String,
    pub position: i32,
    pub actor_id: String,
    pub role: String,
}

impl MemberRow {
    pub fn into_domain(self) -> Result<domain::Member> {
        Ok(domain::Member {
            role: vocab(
                "partnership role",
                &self.role,
                domain::PartnershipRole::from_stored,
            )?,
            actor_id: self.actor_id,
        })
    }
}
