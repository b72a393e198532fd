//! Types shared by several objects: dates, provenance, places, periods.

use async_graphql::{
    InputObject, InputValueError, InputValueResult, Scalar, ScalarType, SimpleObject, Value,
};

use crate::domain::{self, dates::iso_day, PartialDate};
use crate::storage::queries::Period;

/// An ISO 8601 date with the precision the source gave: `2020`, `2021-09` or `2021-03-31`.
#[Scalar(name = "PartialDate")]
impl ScalarType for PartialDate {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => s
                .parse()
                .map_err(|e: domain::dates::InvalidDate| InputValueError::custom(e.to_string())),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.to_string())
    }
}

/// Where a record comes from.
#[derive(SimpleObject)]
#[graphql(serial)]
pub struct Provenance {
    /// The source system or document.
    pub source: String,
    /// A reference inside the source: a URL, a line, the partner's own id.
    pub source_ref: Option<String>,
    /// When Passerelle first stored the record (RFC 3339).
    pub imported_at: String,
    /// When the record last changed (RFC 3339).
    pub updated_at: String,
}

impl From<&domain::Provenance> for Provenance {
    fn from(p: &domain::Provenance) -> Self {
        Provenance {
            source: p.source.clone(),
            source_ref: p.source_ref.clone(),
            imported_at: p.imported_at.clone(),
            updated_at: p.updated_at.clone(),
        }
    }
}

/// A place an action covers.
#[derive(SimpleObject)]
#[graphql(serial)]
pub struct Place {
    pub name: String,
    pub level: domain::PlaceLevel,
    /// INSEE commune or department code, where one exists.
    pub insee_code: Option<String>,
}

impl From<&domain::Place> for Place {
    fn from(p: &domain::Place) -> Self {
        Place {
            name: p.name.clone(),
            level: p.level,
            insee_code: p.insee_code.clone(),
        }
    }
}

/// Records known to overlap this period. A record with no date never matches; a record with no
/// end counts as ongoing.
#[derive(InputObject, Default)]
pub struct PeriodFilter {
    pub from: Option<PartialDate>,
    pub to: Option<PartialDate>,
}

impl From<Option<PeriodFilter>> for Period {
    fn from(p: Option<PeriodFilter>) -> Self {
        let p = p.unwrap_or_default();
        Period {
            from: p.from.map(|d| iso_day(d.first_day())),
            to: p.to.map(|d| iso_day(d.last_day())),
        }
    }
}

/// Trims a free-text filter; an empty one filters nothing.
pub fn text_filter(text: Option<String>) -> Option<String> {
    text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

/// Words searched for are at most this long: a longer pattern is refused rather than left to
/// each backend (SQLite refuses long `LIKE` patterns, PostgreSQL does not).
pub const MAX_SEARCH_CHARS: usize = 500;
/// An INSEE code is at most 5 characters.
pub const MAX_TERRITORY_CHARS: usize = 10;

/// `text_filter`, refused with `BAD_USER_INPUT` naming `field` when longer than `max`.
pub fn bounded_filter(
    text: Option<String>,
    field: &str,
    max: usize,
) -> Result<Option<String>, crate::error::Error> {
    match text_filter(text) {
        Some(t) if t.chars().count() > max => Err(crate::error::Error::Invalid(vec![
            crate::error::FieldError::new(field, format!("must be at most {max} characters")),
        ])),
        other => Ok(other),
    }
}
