//! The demo data: the facts of the partners' five source documents (`seed/demo.toml`), loaded
//! through the same write path as partners' own writes, so seeding twice changes nothing.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::*;
use crate::error::{Error, Result};
use crate::storage::writes::{self, WriteEffect};
use crate::storage::Store;

const DEMO: &str = include_str!("seed/demo.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedFile {
    partners: Vec<SeedPartner>,
    actors: Vec<SeedActor>,
    actions: Vec<SeedAction>,
    outcomes: Vec<SeedOutcome>,
    partnerships: Vec<SeedPartnership>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedPartner {
    id: String,
    name: String,
    description: Option<String>,
}

fn public() -> Visibility {
    Visibility::Public
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedActor {
    id: String,
    owner: String,
    kind: ActorKind,
    name: String,
    acronym: Option<String>,
    description: Option<String>,
    website: Option<String>,
    territory_code: Option<String>,
    territory_name: Option<String>,
    parent: Option<String>,
    #[serde(default = "public")]
    visibility: Visibility,
    source: String,
    source_ref: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedPlace {
    name: String,
    level: PlaceLevel,
    insee_code: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedAction {
    id: String,
    owner: String,
    kind: ActionKind,
    title: String,
    summary: Option<String>,
    status: Option<ActionStatus>,
    starts_on: Option<PartialDate>,
    ends_on: Option<PartialDate>,
    schedule: Option<String>,
    parent: Option<String>,
    website: Option<String>,
    #[serde(default)]
    themes: Vec<String>,
    #[serde(default)]
    places: Vec<SeedPlace>,
    #[serde(default = "public")]
    visibility: Visibility,
    source: String,
    source_ref: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedCell {
    dimension: String,
    category: String,
    value: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedOutcome {
    id: String,
    owner: String,
    action: String,
    indicator: String,
    measure: OutcomeMeasure,
    value: Option<f64>,
    unit: Option<String>,
    statement: Option<String>,
    period_start: Option<PartialDate>,
    period_end: Option<PartialDate>,
    #[serde(default)]
    disaggregations: Vec<SeedCell>,
    #[serde(default = "public")]
    visibility: Visibility,
    source: String,
    source_ref: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedMember {
    actor: String,
    role: PartnershipRole,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedPartnership {
    id: String,
    owner: String,
    action: Option<String>,
    name: String,
    description: Option<String>,
    starts_on: Option<PartialDate>,
    ends_on: Option<PartialDate>,
    members: Vec<SeedMember>,
    #[serde(default = "public")]
    visibility: Visibility,
    source: String,
    source_ref: Option<String>,
}

fn provenance(source: String, source_ref: Option<String>) -> Provenance {
    Provenance {
        source,
        source_ref,
        imported_at: String::new(),
        updated_at: String::new(),
    }
}

/// The demo data set, in an order that writes every referenced record before its referrers.
pub struct DemoData {
    pub partners: Vec<Partner>,
    pub actors: Vec<Actor>,
    pub actions: Vec<Action>,
    pub outcomes: Vec<Outcome>,
    pub partnerships: Vec<Partnership>,
}

pub fn demo() -> Result<DemoData> {
    let file: SeedFile =
        toml::from_str(DEMO).map_err(|e| Error::internal(anyhow::anyhow!("demo.toml: {e}")))?;
    let partners = file
        .partners
        .into_iter()
        .map(|p| Partner {
            id: p.id,
            name: p.name,
            description: p.description,
        })
        .collect();
    let mut actors: Vec<Actor> = file
        .actors
        .into_iter()
        .map(|a| Actor {
            id: a.id,
            owner: a.owner,
            kind: a.kind,
            name: a.name,
            acronym: a.acronym,
            description: a.description,
            website: a.website,
            territory_code: a.territory_code,
            territory_name: a.territory_name,
            parent_actor_id: a.parent,
            visibility: a.visibility,
            provenance: provenance(a.source, a.source_ref),
        })
        .collect();
    // Parents before children (one level of nesting is all the sources have).
    actors.sort_by_key(|a| a.parent_actor_id.is_some());
    let mut actions: Vec<Action> = file
        .actions
        .into_iter()
        .map(|a| Action {
            id: a.id,
            owner: a.owner,
            kind: a.kind,
            title: a.title,
            summary: a.summary,
            status: a.status,
            starts_on: a.starts_on,
            ends_on: a.ends_on,
            schedule: a.schedule,
            parent_action_id: a.parent,
            website: a.website,
            themes: a.themes,
            places: a
                .places
                .into_iter()
                .map(|p| Place {
                    name: p.name,
                    level: p.level,
                    insee_code: p.insee_code,
                })
                .collect(),
            visibility: a.visibility,
            provenance: provenance(a.source, a.source_ref),
        })
        .collect();
    actions.sort_by_key(|a| a.parent_action_id.is_some());
    let outcomes = file
        .outcomes
        .into_iter()
        .map(|o| Outcome {
            id: o.id,
            owner: o.owner,
            action_id: o.action,
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
                .map(|d| Disaggregation {
                    dimension: d.dimension,
                    category: d.category,
                    value: d.value,
                })
                .collect(),
            visibility: o.visibility,
            provenance: provenance(o.source, o.source_ref),
        })
        .collect();
    let partnerships = file
        .partnerships
        .into_iter()
        .map(|p| Partnership {
            id: p.id,
            owner: p.owner,
            action_id: p.action,
            name: p.name,
            description: p.description,
            starts_on: p.starts_on,
            ends_on: p.ends_on,
            members: p
                .members
                .into_iter()
                .map(|m| Member {
                    actor_id: m.actor,
                    role: m.role,
                })
                .collect(),
            visibility: p.visibility,
            provenance: provenance(p.source, p.source_ref),
        })
        .collect();
    Ok(DemoData {
        partners,
        actors,
        actions,
        outcomes,
        partnerships,
    })
}

/// How many records a load created, updated or left unchanged.
pub type LoadReport = BTreeMap<&'static str, BTreeMap<WriteEffect, usize>>;

/// The writer's view when a partner writes its own records.
fn writer(owner: &str) -> RowFilter {
    RowFilter {
        own: Some(owner.to_owned()),
        shared_by: Vec::new(),
    }
}

/// Writes the demo data, each record as its owning partner. Idempotent.
pub async fn load_demo(store: &Store, now: String) -> Result<LoadReport> {
    let data = demo()?;
    let report = store
        .run(move |conn| {
            let mut report = LoadReport::new();
            let mut count = |kind: &'static str, effect: WriteEffect| {
                *report.entry(kind).or_default().entry(effect).or_default() += 1;
            };
            for p in &data.partners {
                count("partners", writes::upsert_partner(conn, p, &now)?);
            }
            for a in &data.actors {
                count(
                    "actors",
                    writes::upsert_actor(conn, &writer(&a.owner), a, &now)?,
                );
            }
            for a in &data.actions {
                count(
                    "actions",
                    writes::upsert_action(conn, &writer(&a.owner), a, &now)?,
                );
            }
            for o in &data.outcomes {
                count(
                    "outcomes",
                    writes::upsert_outcome(conn, &writer(&o.owner), o, &now)?,
                );
            }
            for p in &data.partnerships {
                count(
                    "partnerships",
                    writes::upsert_partnership(conn, &writer(&p.owner), p, &now)?,
                );
            }
            Ok(report)
        })
        .await?;
    // Caches holding these kinds (the response cache) are stale now.
    store.write_log().written(
        report
            .iter()
            .filter(|(_, effects)| effects.keys().any(|e| *e != WriteEffect::Unchanged))
            .filter_map(|(kind, _)| crate::storage::EntityKind::from_plural(kind)),
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_data_parses_and_passes_validation() {
        let d = demo().unwrap();
        assert_eq!(d.partners.len(), 4);
        for a in &d.actors {
            write::validate_actor(a).unwrap();
        }
        for a in &d.actions {
            write::validate_action(a).unwrap();
        }
        for o in &d.outcomes {
            write::validate_outcome(o).unwrap();
        }
        for p in &d.partnerships {
            write::validate_partnership(p).unwrap();
        }
    }
}
