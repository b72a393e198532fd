//! The record file format shared by bulk import and export: one JSON object per NDJSON line, or
//! one CSV row, each with a `type` (`actor`, `action`, `outcome`, `partnership`) and the
//! record's fields in snake_case, vocabularies in SCREAMING_SNAKE_CASE as in GraphQL.
//!
//! - `owner` may be left out on import (the importing partner owns every row); when present it
//!   must be the importing partner. Export always writes it.
//! - `source`, `imported_at` and `updated_at` are assigned by Passerelle: export writes them,
//!   import ignores them, so a partner can re-import its own export.
//! - `visibility` defaults to `PRIVATE`.
//! - In CSV, empty cells are absent values; the list columns (`themes`, `places`,
//!   `disaggregations`, `members`) hold JSON text such as `["access-to-rights"]`.

use serde::{Deserialize, Serialize};

use crate::domain::{self, PartialDate, Visibility};
use crate::error::FieldError;

fn private() -> Visibility {
    Visibility::Private
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorRecord {
    pub id: String,
    pub kind: domain::ActorKind,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acronym: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub territory_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub territory_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_actor_id: Option<String>,
    #[serde(default = "private")]
    pub visibility: Visibility,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<String>,
    /// Export only; ignored on import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Export only; ignored on import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_at: Option<String>,
    /// Export only; ignored on import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceRecord {
    pub name: String,
    pub level: domain::PlaceLevel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insee_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRecord {
    pub id: String,
    pub kind: domain::ActionKind,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<domain::ActionStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_on: Option<PartialDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_on: Option<PartialDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_action_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub themes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub places: Vec<PlaceRecord>,
    #[serde(default = "private")]
    pub visibility: Visibility,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<String>,
    /// Export only; ignored on import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Export only; ignored on import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_at: Option<String>,
    /// Export only; ignored on import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellRecord {
    pub dimension: String,
    pub category: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeRecord {
    pub id: String,
    pub action_id: String,
    pub indicator: String,
    pub measure: domain::OutcomeMeasure,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_start: Option<PartialDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_end: Option<PartialDate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disaggregations: Vec<CellRecord>,
    #[serde(default = "private")]
    pub visibility: Visibility,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<String>,
    /// Export only; ignored on import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Export only; ignored on import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_at: Option<String>,
    /// Export only; ignored on import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberRecord {
    pub actor_id: String,
    pub role: domain::PartnershipRole,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnershipRecord {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_on: Option<PartialDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_on: Option<PartialDate>,
    pub members: Vec<MemberRecord>,
    #[serde(default = "private")]
    pub visibility: Visibility,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<String>,
    /// Export only; ignored on import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Export only; ignored on import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_at: Option<String>,
    /// Export only; ignored on import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// One line of a record file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Actor(ActorRecord),
    Action(ActionRecord),
    Outcome(OutcomeRecord),
    Partnership(PartnershipRecord),
}

/// A record ready for the write path.
#[derive(Debug, Clone, PartialEq)]
pub enum DomainRecord {
    Actor(domain::Actor),
    Action(domain::Action),
    Outcome(domain::Outcome),
    Partnership(domain::Partnership),
}

impl DomainRecord {
    pub fn kind(&self) -> &'static str {
        match self {
            DomainRecord::Actor(_) => "actor",
            DomainRecord::Action(_) => "action",
            DomainRecord::Outcome(_) => "outcome",
            DomainRecord::Partnership(_) => "partnership",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            DomainRecord::Actor(r) => &r.id,
            DomainRecord::Action(r) => &r.id,
            DomainRecord::Outcome(r) => &r.id,
            DomainRecord::Partnership(r) => &r.id,
        }
    }

    /// The same-kind record this one must be written after, if any.
    pub fn parent(&self) -> Option<&str> {
        match self {
            DomainRecord::Actor(r) => r.parent_actor_id.as_deref(),
            DomainRecord::Action(r) => r.parent_action_id.as_deref(),
            _ => None,
        }
    }

    /// Write order between kinds: what is referenced comes first.
    pub fn rank(&self) -> u8 {
        match self {
            DomainRecord::Actor(_) => 0,
            DomainRecord::Action(_) => 1,
            DomainRecord::Outcome(_) => 2,
            DomainRecord::Partnership(_) => 3,
        }
    }
}

fn provenance(source: &str, source_ref: Option<String>) -> domain::Provenance {
    domain::Provenance {
        source: source.to_owned(),
        source_ref,
        imported_at: String::new(),
        updated_at: String::new(),
    }
}

impl Record {
    /// The record as `partner` writes it from `source`, or the `owner` mismatch.
    pub fn into_domain(self, partner: &str, source: &str) -> Result<DomainRecord, FieldError> {
        let owner = match self.owner() {
            Some(o) if o != partner => {
                return Err(FieldError::new(
                    "owner",
                    format!("must be your partner `{partner}` (or left out)"),
                ))
            }
            _ => partner.to_owned(),
        };
        Ok(match self {
            Record::Actor(a) => DomainRecord::Actor(domain::Actor {
                id: a.id,
                owner,
                kind: a.kind,
                name: a.name,
                acronym: a.acronym,
                description: a.description,
                website: a.website,
                territory_code: a.territory_code,
                territory_name: a.territory_name,
                parent_actor_id: a.parent_actor_id,
                visibility: a.visibility,
                provenance: provenance(source, a.source_ref),
            }),
            Record::Action(a) => DomainRecord::Action(domain::Action {
                id: a.id,
                owner,
                kind: a.kind,
                title: a.title,
                summary: a.summary,
                status: a.status,
                starts_on: a.starts_on,
                ends_on: a.ends_on,
                schedule: a.schedule,
                parent_action_id: a.parent_action_id,
                website: a.website,
                themes: a.themes,
                places: a
                    .places
                    .into_iter()
                    .map(|p| domain::Place {
                        name: p.name,
                        level: p.level,
                        insee_code: p.insee_code,
                    })
                    .collect(),
                visibility: a.visibility,
                provenance: provenance(source, a.source_ref),
            }),
            Record::Outcome(o) => DomainRecord::Outcome(domain::Outcome {
                id: o.id,
                owner,
                action_id: o.action_id,
                indicator: o.indicator,
                measure: o.measure,
                value: o.value,
                unit: o.unit,
                statement: o.statement,
                period_start: o.period_start,
                period_end: o.period_end,
                disaggregations: o
                    .disaggregations
                    .into_iter()
                    .map(|d| domain::Disaggregation {
                        dimension: d.dimension,
                        category: d.category,
                        value: d.value,
                    })
                    .collect(),
                visibility: o.visibility,
                provenance: provenance(source, o.source_ref),
            }),
            Record::Partnership(p) => DomainRecord::Partnership(domain::Partnership {
                id: p.id,
                owner,
                action_id: p.action_id,
                name: p.name,
                description: p.description,
                starts_on: p.starts_on,
                ends_on: p.ends_on,
                members: p
                    .members
                    .into_iter()
                    .map(|m| domain::Member {
                        actor_id: m.actor_id,
                        role: m.role,
                    })
                    .collect(),
                visibility: p.visibility,
                provenance: provenance(source, p.source_ref),
            }),
        })
    }

    fn owner(&self) -> Option<&str> {
        match self {
            Record::Actor(r) => r.owner.as_deref(),
            Record::Action(r) => r.owner.as_deref(),
            Record::Outcome(r) => r.owner.as_deref(),
            Record::Partnership(r) => r.owner.as_deref(),
        }
    }
}

impl From<&domain::Actor> for Record {
    fn from(a: &domain::Actor) -> Self {
        Record::Actor(ActorRecord {
            id: a.id.clone(),
            kind: a.kind,
            name: a.name.clone(),
            acronym: a.acronym.clone(),
            description: a.description.clone(),
            website: a.website.clone(),
            territory_code: a.territory_code.clone(),
            territory_name: a.territory_name.clone(),
            parent_actor_id: a.parent_actor_id.clone(),
            visibility: a.visibility,
            owner: Some(a.owner.clone()),
            source_ref: a.provenance.source_ref.clone(),
            source: Some(a.provenance.source.clone()),
            imported_at: Some(a.provenance.imported_at.clone()),
            updated_at: Some(a.provenance.updated_at.clone()),
        })
    }
}

impl From<&domain::Action> for Record {
    fn from(a: &domain::Action) -> Self {
        Record::Action(ActionRecord {
            id: a.id.clone(),
            kind: a.kind,
            title: a.title.clone(),
            summary: a.summary.clone(),
            status: a.status,
            starts_on: a.starts_on,
            ends_on: a.ends_on,
            schedule: a.schedule.clone(),
            parent_action_id: a.parent_action_id.clone(),
            website: a.website.clone(),
            themes: a.themes.clone(),
            places: a
                .places
                .iter()
                .map(|p| PlaceRecord {
                    name: p.name.clone(),
                    level: p.level,
                    insee_code: p.insee_code.clone(),
                })
                .collect(),
            visibility: a.visibility,
            owner: Some(a.owner.clone()),
            source_ref: a.provenance.source_ref.clone(),
            source: Some(a.provenance.source.clone()),
            imported_at: Some(a.provenance.imported_at.clone()),
            updated_at: Some(a.provenance.updated_at.clone()),
        })
    }
}

impl From<&domain::Outcome> for Record {
    fn from(o: &domain::Outcome) -> Self {
        Record::Outcome(OutcomeRecord {
            id: o.id.clone(),
            action_id: o.action_id.clone(),
            indicator: o.indicator.clone(),
            measure: o.measure,
            value: o.value,
            unit: o.unit.clone(),
            statement: o.statement.clone(),
            period_start: o.period_start,
            period_end: o.period_end,
            disaggregations: o
                .disaggregations
                .iter()
                .map(|d| CellRecord {
                    dimension: d.dimension.clone(),
                    category: d.category.clone(),
                    value: d.value,
                })
                .collect(),
            visibility: o.visibility,
            owner: Some(o.owner.clone()),
            source_ref: o.provenance.source_ref.clone(),
            source: Some(o.provenance.source.clone()),
            imported_at: Some(o.provenance.imported_at.clone()),
            updated_at: Some(o.provenance.updated_at.clone()),
        })
    }
}

impl From<&domain::Partnership> for Record {
    fn from(p: &domain::Partnership) -> Self {
        Record::Partnership(PartnershipRecord {
            id: p.id.clone(),
            action_id: p.action_id.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            starts_on: p.starts_on,
            ends_on: p.ends_on,
            members: p
                .members
                .iter()
                .map(|m| MemberRecord {
                    actor_id: m.actor_id.clone(),
                    role: m.role,
                })
                .collect(),
            visibility: p.visibility,
            owner: Some(p.owner.clone()),
            source_ref: p.provenance.source_ref.clone(),
            source: Some(p.provenance.source.clone()),
            imported_at: Some(p.provenance.imported_at.clone()),
            updated_at: Some(p.provenance.updated_at.clone()),
        })
    }
}

// ---------------------------------------------------------------- CSV

/// Every CSV column, in order. A file may use any subset in any order, but needs `type`.
pub const CSV_COLUMNS: &[&str] = &[
    "type",
    "id",
    "owner",
    "kind",
    "name",
    "title",
    "acronym",
    "description",
    "summary",
    "status",
    "website",
    "territory_code",
    "territory_name",
    "parent_actor_id",
    "parent_action_id",
    "action_id",
    "starts_on",
    "ends_on",
    "schedule",
    "themes",
    "places",
    "indicator",
    "measure",
    "value",
    "unit",
    "statement",
    "period_start",
    "period_end",
    "disaggregations",
    "members",
    "visibility",
    "source_ref",
    "source",
    "imported_at",
    "updated_at",
];

/// Columns whose cells hold JSON text.
const JSON_COLUMNS: &[&str] = &["themes", "places", "disaggregations", "members"];
/// Columns whose cells hold a number.
const NUMBER_COLUMNS: &[&str] = &["value"];

/// Checks a CSV header: known columns, no duplicates, a `type` column.
pub fn check_csv_header(headers: &[String]) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    for (i, h) in headers.iter().enumerate() {
        if !CSV_COLUMNS.contains(&h.as_str()) {
            errors.push(FieldError::new(
                format!("line 1.{h}"),
                "unknown column".to_string(),
            ));
        } else if headers[..i].contains(h) {
            errors.push(FieldError::new(format!("line 1.{h}"), "duplicate column"));
        }
    }
    if !headers.iter().any(|h| h == "type") {
        errors.push(FieldError::new(
            "line 1.type",
            "a `type` column is required",
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Turns one CSV row into the JSON object an NDJSON line would hold.
pub fn csv_row_to_json(
    headers: &[String],
    cells: &csv::StringRecord,
) -> Result<serde_json::Value, Vec<FieldError>> {
    let mut object = serde_json::Map::new();
    let mut errors = Vec::new();
    for (h, cell) in headers.iter().zip(cells.iter()) {
        if cell.is_empty() {
            continue;
        }
        let value = if JSON_COLUMNS.contains(&h.as_str()) {
            match serde_json::from_str(cell) {
                Ok(v) => v,
                Err(e) => {
                    errors.push(FieldError::new(h.clone(), format!("must be JSON: {e}")));
                    continue;
                }
            }
        } else if NUMBER_COLUMNS.contains(&h.as_str()) {
            match cell
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
            {
                Some(n) => serde_json::Value::Number(n),
                None => {
                    errors.push(FieldError::new(h.clone(), "must be a number"));
                    continue;
                }
            }
        } else {
            serde_json::Value::String(cell.to_owned())
        };
        object.insert(h.clone(), value);
    }
    if errors.is_empty() {
        Ok(serde_json::Value::Object(object))
    } else {
        Err(errors)
    }
}

/// The CSV cells of a record, in `CSV_COLUMNS` order.
pub fn record_to_csv(record: &Record) -> Vec<String> {
    let value = serde_json::to_value(record).unwrap_or_default();
    CSV_COLUMNS
        .iter()
        .map(|c| match value.get(*c) {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        })
        .collect()
}

fn typed<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path = e.path().to_string();
        let message = e.into_inner().to_string();
        if path == "." {
            path.clear();
        }
        // serde reports a missing field at its parent: name the field itself.
        if let Some(name) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            path = if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            };
        }
        FieldError::new(path, message)
    })
}

/// Reads a JSON object as a record, with the path of the first field that does not fit. (The
/// `type` is dispatched by hand: serde's internally tagged enums lose the field path.)
pub fn record_from_json(value: serde_json::Value) -> Result<Record, FieldError> {
    let serde_json::Value::Object(mut object) = value else {
        return Err(FieldError::new("", "must be a JSON object"));
    };
    let kind = object.remove("type");
    let rest = serde_json::Value::Object(object);
    match kind.as_ref().and_then(|k| k.as_str()) {
        Some("actor") => typed(rest).map(Record::Actor),
        Some("action") => typed(rest).map(Record::Action),
        Some("outcome") => typed(rest).map(Record::Outcome),
        Some("partnership") => typed(rest).map(Record::Partnership),
        Some(other) => Err(FieldError::new(
            "type",
            format!("unknown type `{other}`: use actor, action, outcome or partnership"),
        )),
        None => Err(FieldError::new(
            "type",
            "required: actor, action, outcome or partnership",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_and_csv_read_the_same_record() {
        let json = serde_json::json!({
            "type": "action", "id": "a1", "kind": "WORKSHOP", "title": "Atelier",
            "themes": ["access-to-rights"], "places": [{"name": "Nîmes", "level": "COMMUNE", "insee_code": "30189"}],
            "visibility": "PUBLIC"
        });
        let from_json = record_from_json(json).unwrap();
        let cells = record_to_csv(&from_json);
        let headers: Vec<String> = CSV_COLUMNS.iter().map(|s| s.to_string()).collect();
        let row = csv::StringRecord::from(cells);
        let from_csv = record_from_json(csv_row_to_json(&headers, &row).unwrap()).unwrap();
        assert_eq!(from_json, from_csv);
    }

    #[test]
    fn unknown_fields_and_bad_vocabularies_are_reported_with_their_path() {
        let e = record_from_json(serde_json::json!({
            "type": "action", "id": "a1", "kind": "WORKSHOP", "title": "x",
            "places": [{"name": "n", "level": "PLANET"}]
        }))
        .unwrap_err();
        assert_eq!(e.field, "places[0].level", "{e:?}");
        let e = record_from_json(serde_json::json!({
            "type": "actor", "id": "a1", "kind": "OTHER", "name": "x", "colour": "red"
        }))
        .unwrap_err();
        assert!(e.message.contains("colour"), "{e:?}");
    }
}
