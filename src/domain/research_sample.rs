//! A synthetic research sample, so that researchers trying the demo see published cells.
//!
//! The partners' source documents give four figures (one counting people), and a research cell
//! needs at least `research_min_cell` (11) figures: on the demo data alone every cell is
//! withheld. This sample adds one partner, `sample`, whose name says its figures are invented:
//! two programmes (`sample-north`, `sample-south`), each with 12 public `actual` figures in
//! people for one year (2021 and 2022), the n-th figure of each being 10 + n people. It is
//! loaded by `passerelle serve --demo` and `passerelle seed --research-sample`, never by plain
//! `seed`. Nothing in it comes from the sources.

use super::{
    Action, ActionKind, Outcome, OutcomeMeasure, PartialDate, Partner, Place, PlaceLevel,
    Provenance, RowFilter, Visibility,
};
use crate::error::Result;
use crate::storage::writes::{self, WriteEffect};
use crate::storage::Store;

/// The sample's partner.
pub const PARTNER: &str = "sample";
/// Figures per programme: more than the default threshold of 11.
pub const FIGURES_PER_PROGRAMME: usize = 12;

fn provenance(id: &str) -> Provenance {
    Provenance {
        source: "synthetic:research-sample".into(),
        source_ref: Some(id.into()),
        imported_at: String::new(),
        updated_at: String::new(),
    }
}

/// The sample's partner, programmes and figures.
pub fn records() -> (Partner, Vec<Action>, Vec<Outcome>) {
    let partner = Partner {
        id: PARTNER.into(),
        name: "Synthetic research sample (invented figures)".into(),
        description: Some(
            "Not a real partner: invented figures so that research aggregates have cells large enough to publish. See docs/getting-started.md.".into(),
        ),
    };
    let mut actions = Vec::new();
    let mut outcomes = Vec::new();
    for (area, year, commune, code) in [
        ("north", 2021, "Grenoble", "38185"),
        ("south", 2022, "Nîmes", "30189"),
    ] {
        let action_id = format!("{PARTNER}-{area}");
        actions.push(Action {
            id: action_id.clone(),
            owner: PARTNER.into(),
            kind: ActionKind::Programme,
            title: format!("Synthetic programme {area} (invented)"),
            summary: Some("Invented for the research sample.".into()),
            status: None,
            starts_on: Some(PartialDate::Year(year)),
            ends_on: Some(PartialDate::Year(year)),
            schedule: None,
            parent_action_id: None,
            website: None,
            themes: vec!["access-to-rights".into()],
            places: vec![Place {
                name: commune.into(),
                level: PlaceLevel::Commune,
                insee_code: Some(code.into()),
            }],
            visibility: Visibility::Public,
            provenance: provenance(&action_id),
        });
        for n in 1..=FIGURES_PER_PROGRAMME {
            let id = format!("{action_id}-{n:02}");
            outcomes.push(Outcome {
                id: id.clone(),
                owner: PARTNER.into(),
                action_id: action_id.clone(),
                indicator: "People supported (invented)".into(),
                measure: OutcomeMeasure::Actual,
                value: Some(10.0 + n as f64),
                unit: Some("people".into()),
                statement: None,
                period_start: Some(PartialDate::Year(year)),
                period_end: Some(PartialDate::Year(year)),
                disaggregations: Vec::new(),
                visibility: Visibility::Public,
                provenance: provenance(&id),
            });
        }
    }
    (partner, actions, outcomes)
}

/// Writes the sample through the one write path, as its partner. Idempotent; returns how many
/// records it created or updated.
pub async fn load(store: &Store, now: String) -> Result<usize> {
    let (partner, actions, outcomes) = records();
    let changed = store
        .run(move |conn| {
            let writer = RowFilter {
                own: Some(PARTNER.into()),
                shared_by: Vec::new(),
            };
            let mut changed = 0;
            let mut note = |e: WriteEffect| {
                if e != WriteEffect::Unchanged {
                    changed += 1;
                }
            };
            note(writes::upsert_partner(conn, &partner, &now)?);
            for a in &actions {
                note(writes::upsert_action(conn, &writer, a, &now)?);
            }
            for o in &outcomes {
                note(writes::upsert_outcome(conn, &writer, o, &now)?);
            }
            Ok(changed)
        })
        .await?;
    if changed > 0 {
        store.write_log().written(crate::storage::EntityKind::ALL);
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_passes_validation() {
        let (_, actions, outcomes) = records();
        for a in &actions {
            crate::domain::write::validate_action(a).unwrap();
        }
        for o in &outcomes {
            crate::domain::write::validate_outcome(o).unwrap();
        }
        assert_eq!(outcomes.len(), 2 * FIGURES_PER_PROGRAMME);
    }
}
