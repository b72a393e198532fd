//! Cross-programme aggregates for researchers (`research` scope), with small-cell suppression.
//!
//! Aggregates cover the `public` and `partners` outcome figures of every partner (through the
//! same row policy as every read, with a filter that never admits `private` rows), and only as
//! suppressed counts and sums: rows themselves stay behind `read`.

use std::collections::{BTreeMap, HashMap};

use async_graphql::{Context, Enum, Object, SimpleObject};

use super::context::request;
use crate::auth::RESEARCH;
use crate::domain::research::{suppress, Tally};
use crate::domain::{self, RowFilter};
use crate::error::{Error, Result};
use crate::storage::queries;
use crate::storage::AnyConnection;

/// Schema-wide research settings, from `Config`.
pub struct ResearchSettings {
    pub min_cell: i64,
}

/// What to group outcome figures by.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum AggregateDimension {
    /// The owning partner.
    Partner,
    /// The top-level action (programme) the outcome's action belongs to.
    Programme,
    /// The INSEE code (or name) of each place of the action; an outcome counts once per place.
    Territory,
    /// The year the outcome's period starts.
    Period,
    /// Each theme of the action; an outcome counts once per theme.
    Theme,
}

/// A count and a sum, or nothing when withheld.
#[derive(SimpleObject)]
pub struct AggregateCell {
    pub key: String,
    /// True when the cell is withheld (small, or withheld so that it cannot be derived).
    pub suppressed: bool,
    /// How many outcome figures; null when suppressed.
    pub records: Option<i64>,
    /// Their sum; null when suppressed.
    pub sum: Option<f64>,
}

#[derive(SimpleObject)]
pub struct ResearchAggregate {
    pub by: AggregateDimension,
    pub unit: String,
    /// The threshold: cells resting on fewer records or people are withheld.
    pub min_cell: i64,
    pub cells: Vec<AggregateCell>,
    /// Over every figure (each once); withheld when small or when it would reveal a cell.
    pub total: AggregateCell,
}

fn cell(key: String, value: Option<Tally>) -> AggregateCell {
    AggregateCell {
        key,
        suppressed: value.is_none(),
        records: value.map(|t| t.records),
        sum: value.map(|t| t.sum),
    }
}

/// The top-level ancestor of each action in `ids` that `rf` lets us see.
fn programmes(
    conn: &mut AnyConnection,
    rf: &RowFilter,
    ids: Vec<String>,
) -> Result<HashMap<String, domain::Action>> {
    let mut known: HashMap<String, domain::Action> = HashMap::new();
    let mut wanted = ids.clone();
    // Parents chains are short; bounded anyway.
    for _ in 0..16 {
        wanted.retain(|id| !known.contains_key(id));
        if wanted.is_empty() {
            break;
        }
        let found = queries::actions_by_ids(conn, rf, &wanted)?;
        wanted = found
            .iter()
            .filter_map(|a| a.parent_action_id.clone())
            .collect();
        for a in found {
            known.insert(a.id.clone(), a);
        }
    }
    let mut out = HashMap::new();
    for id in ids {
        let mut current = known.get(&id);
        let mut hops = 0;
        while let Some(a) = current {
            match a.parent_action_id.as_ref().and_then(|p| known.get(p)) {
                Some(parent) if hops < 16 => {
                    current = Some(parent);
                    hops += 1;
                }
                _ => break,
            }
        }
        if let Some(root) = current {
            out.insert(id, root.clone());
        }
    }
    Ok(out)
}

#[derive(Default)]
pub struct ResearchQueries;

#[Object]
impl ResearchQueries {
    /// Actual outcome figures in `unit`, counted and summed by `by`, with small-cell
    /// suppression. Needs the `research` scope.
    async fn research_aggregate(
        &self,
        ctx: &Context<'_>,
        by: AggregateDimension,
        #[graphql(default = "people")] unit: String,
    ) -> async_graphql::Result<ResearchAggregate> {
        let rc = request(ctx)?;
        rc.viewer.require(RESEARCH, "research aggregates")?;
        let min_cell = ctx
            .data::<ResearchSettings>()
            .map_err(|_| Error::internal(anyhow::anyhow!("research settings missing")))?
            .min_cell;
        let counts_people = matches!(unit.as_str(), "people" | "personnes" | "persons");
        let unit_q = unit.clone();
        let groups = rc
            .store
            .run(move |conn| {
                // Every partner's public and `partners` rows; never a private one.
                let rf = RowFilter {
                    own: None,
                    shared_by: queries::partners(conn)?.into_iter().map(|p| p.id).collect(),
                };
                let facts = queries::research_facts(conn, &rf, &unit_q)?;
                let mut action_ids: Vec<String> =
                    facts.iter().map(|f| f.action_id.clone()).collect();
                action_ids.sort();
                action_ids.dedup();
                let roots = programmes(conn, &rf, action_ids.clone())?;
                let actions: HashMap<String, domain::Action> =
                    queries::actions_by_ids(conn, &rf, &action_ids)?
                        .into_iter()
                        .map(|a| (a.id.clone(), a))
                        .collect();
                let mut groups: BTreeMap<String, Tally> = BTreeMap::new();
                for f in &facts {
                    let action = actions.get(&f.action_id);
                    let keys: Vec<String> = match by {
                        AggregateDimension::Partner => vec![f.owner.clone()],
                        AggregateDimension::Programme => vec![roots
                            .get(&f.action_id)
                            .map(|a| a.title.clone())
                            .unwrap_or_else(|| "unknown".into())],
                        AggregateDimension::Period => vec![f
                            .period_start
                            .as_ref()
                            .map(|p| p.chars().take(4).collect())
                            .unwrap_or_else(|| "unknown".into())],
                        AggregateDimension::Theme => action
                            .map(|a| a.themes.clone())
                            .filter(|t| !t.is_empty())
                            .unwrap_or_else(|| vec!["unknown".into()]),
                        AggregateDimension::Territory => action
                            .map(|a| {
                                a.places
                                    .iter()
                                    .map(|p| p.insee_code.clone().unwrap_or(p.name.clone()))
                                    .collect::<Vec<_>>()
                            })
                            .filter(|t| !t.is_empty())
                            .unwrap_or_else(|| vec!["unknown".into()]),
                    };
                    for k in keys {
                        groups.entry(k).or_default().add(f.value);
                    }
                }
                let mut total = Tally::default();
                for f in &facts {
                    total.add(f.value);
                }
                Ok((groups, total))
            })
            .await?;
        let (groups, total) = groups;
        let suppressed = suppress(groups, min_cell, counts_people);
        // With many-to-many dimensions the cells overlap; the total counts each figure once
        // and is withheld whenever suppression touched any cell.
        let total = match (&suppressed.total, by) {
            (None, _) => None,
            (Some(_), AggregateDimension::Theme | AggregateDimension::Territory)
                if suppressed.cells.iter().any(|c| c.value.is_none()) =>
            {
                None
            }
            (Some(_), _) => Some(total),
        };
        Ok(ResearchAggregate {
            by,
            unit,
            min_cell,
            cells: suppressed
                .cells
                .into_iter()
                .map(|c| cell(c.key, c.value))
                .collect(),
            total: cell("total".into(), total),
        })
    }
}
