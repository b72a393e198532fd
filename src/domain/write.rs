//! Checks a record must pass before it is stored, whoever writes it (seed, push, import, sync).
//! All problems are reported together, each with its field.
//!
//! Ids are namespaced by owner: a record's id starts with its owning partner's slug and `-`
//! (`caravan-2020`), or is the slug itself. Partner slugs are never a `-`-prefix of another's. One partner can therefore never write, retire or collide with an id of
//! another partner's, and no write answers differently for another partner's hidden record and
//! for a missing one. Text never holds a NUL character (PostgreSQL cannot store it), checked
//! here once for every write path.

use super::{Action, Actor, Outcome, PartialDate, Partnership};
use crate::error::{Error, FieldError};

const MAX_NAME: usize = 300;
const MAX_TEXT: usize = 20_000;
/// Ids, and references to records (a parent, an action, a member).
const MAX_ID: usize = 100;

#[derive(Default)]
struct Checks(Vec<FieldError>);

impl Checks {
    fn required(&mut self, field: &str, value: &str, max: usize) {
        if value.trim().is_empty() {
            self.0.push(FieldError::new(field, "must not be empty"));
        }
        self.length(field, Some(value), max);
    }

    fn length(&mut self, field: &str, value: Option<&str>, max: usize) {
        if value.is_some_and(|v| v.contains('\0')) {
            self.0
                .push(FieldError::new(field, "must not contain a NUL character"));
        } else if value.is_some_and(|v| v.chars().count() > max) {
            self.0.push(FieldError::new(
                field,
                format!("must be at most {max} characters"),
            ));
        }
    }

    /// A record's own id, in its owner's namespace.
    fn owned_id(&mut self, field: &str, value: &str, owner: &str) {
        self.id(field, value);
        let prefix = format!("{owner}-");
        // The partner's own slug is its id too (the partner as an actor).
        if !(value == owner || (value.starts_with(&prefix) && value.len() > prefix.len())) {
            self.0.push(FieldError::new(
                field,
                format!("must start with `{prefix}`: each partner's ids are its own"),
            ));
        }
    }

    /// A reference to another record, checked against what the writer may see when written.
    fn reference(&mut self, field: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.id(field, v);
        }
    }

    fn id(&mut self, field: &str, value: &str) {
        let ok = !value.is_empty()
            && value.len() <= MAX_ID
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            self.0.push(FieldError::new(
                field,
                "must be 1-100 characters of letters, digits, '-' or '_'",
            ));
        }
    }

    fn period(&mut self, field: &str, start: Option<PartialDate>, end: Option<PartialDate>) {
        if let (Some(s), Some(e)) = (start, end) {
            if e.last_day() < s.first_day() {
                self.0.push(FieldError::new(field, "ends before it starts"));
            }
        }
    }

    fn insee(&mut self, field: &str, code: Option<&str>) {
        // Departments (2 or 3 characters, 2A/2B for Corsica) and communes (5 characters).
        let ok = |c: &str| {
            matches!(c.len(), 2 | 3 | 5)
                && c.bytes()
                    .all(|b| b.is_ascii_digit() || b == b'A' || b == b'B')
        };
        if code.is_some_and(|c| !ok(c)) {
            self.0.push(FieldError::new(
                field,
                "must be an INSEE department or commune code",
            ));
        }
    }

    fn url(&mut self, field: &str, value: Option<&str>) {
        self.length(field, value, MAX_TEXT);
        if let Some(v) = value {
            let ok = url::Url::parse(v).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok {
                self.0
                    .push(FieldError::new(field, "must be an http(s) URL"));
            }
        }
    }

    fn source_ref(&mut self, p: &super::Provenance) {
        self.length("sourceRef", p.source_ref.as_deref(), 2_000);
    }

    fn finish(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(self.0))
        }
    }
}

/// That `id` is in `owner`'s namespace (for writes that name an id only, such as retiring).
pub fn check_owned_id(field: &str, id: &str, owner: &str) -> Result<(), Error> {
    let mut c = Checks::default();
    c.owned_id(field, id, owner);
    c.finish()
}

pub fn validate_actor(a: &Actor) -> Result<(), Error> {
    let mut c = Checks::default();
    c.owned_id("id", &a.id, &a.owner);
    c.required("name", &a.name, MAX_NAME);
    c.length("acronym", a.acronym.as_deref(), 50);
    c.length("description", a.description.as_deref(), MAX_TEXT);
    c.url("website", a.website.as_deref());
    c.insee("territoryCode", a.territory_code.as_deref());
    c.length("territoryName", a.territory_name.as_deref(), MAX_NAME);
    c.reference("parentActorId", a.parent_actor_id.as_deref());
    c.source_ref(&a.provenance);
    if a.parent_actor_id.as_deref() == Some(a.id.as_str()) {
        c.0.push(FieldError::new(
            "parentActorId",
            "an actor cannot be its own parent",
        ));
    }
    c.finish()
}

pub fn validate_action(a: &Action) -> Result<(), Error> {
    let mut c = Checks::default();
    c.owned_id("id", &a.id, &a.owner);
    c.required("title", &a.title, MAX_NAME);
    c.length("summary", a.summary.as_deref(), MAX_TEXT);
    c.length("schedule", a.schedule.as_deref(), MAX_NAME);
    c.url("website", a.website.as_deref());
    c.period("endsOn", a.starts_on, a.ends_on);
    c.reference("parentActionId", a.parent_action_id.as_deref());
    c.source_ref(&a.provenance);
    if a.parent_action_id.as_deref() == Some(a.id.as_str()) {
        c.0.push(FieldError::new(
            "parentActionId",
            "an action cannot be its own parent",
        ));
    }
    if a.themes.len() > 20 {
        c.0.push(FieldError::new("themes", "at most 20 themes"));
    }
    for (i, t) in a.themes.iter().enumerate() {
        let ok = !t.is_empty()
            && t.len() <= 60
            && t.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            c.0.push(FieldError::new(
                format!("themes[{i}]"),
                "must be a lower-case slug such as `access-to-rights`",
            ));
        }
    }
    if a.places.len() > 200 {
        c.0.push(FieldError::new("places", "at most 200 places"));
    }
    for (i, p) in a.places.iter().enumerate() {
        c.required(&format!("places[{i}].name"), &p.name, MAX_NAME);
        c.insee(&format!("places[{i}].inseeCode"), p.insee_code.as_deref());
    }
    c.finish()
}

pub fn validate_outcome(o: &Outcome) -> Result<(), Error> {
    let mut c = Checks::default();
    c.owned_id("id", &o.id, &o.owner);
    c.reference("actionId", Some(&o.action_id));
    c.source_ref(&o.provenance);
    c.required("indicator", &o.indicator, MAX_NAME);
    c.length("unit", o.unit.as_deref(), 60);
    c.length("statement", o.statement.as_deref(), MAX_TEXT);
    c.period("periodEnd", o.period_start, o.period_end);
    if o.value.is_some_and(|v| !v.is_finite()) {
        c.0.push(FieldError::new("value", "must be a finite number"));
    }
    if o.value.is_none() && o.statement.is_none() {
        c.0.push(FieldError::new(
            "value",
            "an outcome needs a value or a statement",
        ));
    }
    if o.disaggregations.len() > 100 {
        c.0.push(FieldError::new("disaggregations", "at most 100 cells"));
    }
    for (i, d) in o.disaggregations.iter().enumerate() {
        c.required(
            &format!("disaggregations[{i}].dimension"),
            &d.dimension,
            100,
        );
        c.required(
            &format!("disaggregations[{i}].category"),
            &d.category,
            MAX_NAME,
        );
        if d.value.is_some_and(|v| !v.is_finite()) {
            c.0.push(FieldError::new(
                format!("disaggregations[{i}].value"),
                "must be a finite number",
            ));
        }
    }
    c.finish()
}

pub fn validate_partnership(p: &Partnership) -> Result<(), Error> {
    let mut c = Checks::default();
    c.owned_id("id", &p.id, &p.owner);
    c.reference("actionId", p.action_id.as_deref());
    c.source_ref(&p.provenance);
    for (i, m) in p.members.iter().enumerate() {
        c.reference(&format!("members[{i}].actorId"), Some(&m.actor_id));
    }
    c.required("name", &p.name, MAX_NAME);
    c.length("description", p.description.as_deref(), MAX_TEXT);
    c.period("endsOn", p.starts_on, p.ends_on);
    if p.members.is_empty() {
        c.0.push(FieldError::new(
            "members",
            "a partnership needs at least one member",
        ));
    }
    if p.members.len() > 200 {
        c.0.push(FieldError::new("members", "at most 200 members"));
    }
    c.finish()
}
