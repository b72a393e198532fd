//! Research aggregates and small-cell suppression.
//!
//! A cell resting on fewer than `k` records, or (for figures counting people) fewer than `k`
//! people, is withheld. Then complementary suppression: while the withheld cells together still
//! rest on fewer than `k` records or people, the smallest published cell is withheld too, so the
//! total minus the published cells cannot reveal a small group; if even that cannot be reached,
//! the total is withheld as well.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::domain::RowFilter;
use crate::error::Result;
use crate::storage::queries::{self, FactGroup, FactKey};
use crate::storage::AnyConnection;

/// What to group outcome figures by.
#[derive(async_graphql::Enum, Copy, Clone, Eq, PartialEq, Debug)]
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

impl AggregateDimension {
    pub const ALL: [AggregateDimension; 5] = [
        AggregateDimension::Partner,
        AggregateDimension::Programme,
        AggregateDimension::Territory,
        AggregateDimension::Period,
        AggregateDimension::Theme,
    ];

    /// The lowercase name used outside GraphQL (`/export/aggregates?by=`).
    pub fn as_str(self) -> &'static str {
        match self {
            AggregateDimension::Partner => "partner",
            AggregateDimension::Programme => "programme",
            AggregateDimension::Territory => "territory",
            AggregateDimension::Period => "period",
            AggregateDimension::Theme => "theme",
        }
    }

    /// From `as_str`'s names, or the GraphQL names in any case.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// The default unit of research aggregates.
pub const DEFAULT_UNIT: &str = "people";

/// Whether figures in `unit` count people (then cells are also small when they sum below k).
pub fn counts_people(unit: &str) -> bool {
    matches!(unit, "people" | "personnes" | "persons")
}

/// A research aggregate after suppression: what `researchAggregate` answers and
/// `/export/aggregates` streams.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub by: AggregateDimension,
    pub unit: String,
    pub min_cell: i64,
    pub cells: Vec<Cell>,
    /// Over every figure (each once); `None` when withheld.
    pub total: Option<Tally>,
}

/// How many ids one statement of the programme walk names (well under SQLite's and
/// PostgreSQL's limits on bound parameters).
const IDS_PER_STATEMENT: usize = 5_000;

/// The title of the top-level ancestor, through the actions `rf` lets us see, of each action
/// in `parents`; an action we cannot see is not in the answer.
fn programme_titles(
    conn: &mut AnyConnection,
    rf: &RowFilter,
    parents: BTreeSet<String>,
) -> Result<HashMap<String, String>> {
    // id -> (parent, title), for every action the walk reached.
    let mut known: HashMap<String, (Option<String>, String)> = HashMap::new();
    let mut wanted: Vec<String> = parents.iter().cloned().collect();
    // Parent chains are short; bounded anyway.
    for _ in 0..16 {
        wanted.retain(|id| !known.contains_key(id));
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            break;
        }
        let mut next = Vec::new();
        for ids in wanted.chunks(IDS_PER_STATEMENT) {
            // Only the parent links and titles are needed here.
            for a in queries::actions_by_ids(conn, rf, queries::Detail::NONE, ids)? {
                next.extend(a.parent_action_id.clone());
                known.insert(a.id, (a.parent_action_id, a.title));
            }
        }
        wanted = next;
    }
    let mut out = HashMap::new();
    for id in parents {
        let Some(mut current) = known.get(&id) else {
            continue;
        };
        for _ in 0..16 {
            match current.0.as_ref().and_then(|p| known.get(p)) {
                Some(parent) => current = parent,
                None => break,
            }
        }
        out.insert(id, current.1.clone());
    }
    Ok(out)
}

/// The one research policy: the `actual` outcome figures in `unit` of every partner's `public`
/// and `partners` rows (never a `private` one), counted and summed by `by`, then suppressed
/// with threshold `min_cell`. The caller checks the `research` scope first.
///
/// The database does the counting: it answers one row per group (per partner, period start,
/// action, theme or place), so memory follows the number of cells, not of outcomes.
pub fn aggregate(
    conn: &mut AnyConnection,
    by: AggregateDimension,
    unit: &str,
    min_cell: i64,
) -> Result<Aggregate> {
    // Every partner's public and `partners` rows; never a private one.
    let rf = RowFilter {
        own: None,
        shared_by: queries::partners(conn)?.into_iter().map(|p| p.id).collect(),
    };
    let grouping = match by {
        AggregateDimension::Partner => FactGroup::Owner,
        AggregateDimension::Programme => FactGroup::Action,
        AggregateDimension::Territory => FactGroup::Place,
        AggregateDimension::Period => FactGroup::PeriodStart,
        AggregateDimension::Theme => FactGroup::Theme,
    };
    let facts = queries::research_facts(conn, &rf, unit, grouping)?;
    // Only sub-actions need the walk up to their programme.
    let roots = match by {
        AggregateDimension::Programme => {
            let parents = facts
                .iter()
                .filter_map(|f| match &f.key {
                    FactKey::Action { parent, .. } => parent.clone(),
                    _ => None,
                })
                .collect();
            programme_titles(conn, &rf, parents)?
        }
        _ => HashMap::new(),
    };
    let unknown = || "unknown".to_owned();
    let mut groups: BTreeMap<String, Tally> = BTreeMap::new();
    let mut total = Tally::default();
    for f in facts {
        let tally = Tally {
            records: f.records,
            sum: f.sum,
        };
        total.merge(tally);
        let key = match f.key {
            FactKey::Owner(owner) => owner,
            FactKey::PeriodStart(start) => start
                .map(|p| p.chars().take(4).collect())
                .unwrap_or_else(unknown),
            // A top-level action is its own programme; so is one whose parent we cannot see.
            FactKey::Action { parent, title, .. } => {
                parent.and_then(|p| roots.get(&p).cloned()).unwrap_or(title)
            }
            FactKey::Theme(theme) => theme.unwrap_or_else(unknown),
            FactKey::Place { insee_code, name } => insee_code.or(name).unwrap_or_else(unknown),
        };
        groups.entry(key).or_default().merge(tally);
    }
    // With many-to-many dimensions the cells overlap: the total counts each figure once.
    let many_to_many = matches!(
        by,
        AggregateDimension::Theme | AggregateDimension::Territory
    );
    if many_to_many {
        let (records, sum) = queries::research_total(conn, &rf, unit)?;
        total = Tally { records, sum };
    }
    let suppressed = suppress(groups, min_cell, counts_people(unit));
    // The total is withheld whenever suppression touched an overlapping cell.
    let total = match &suppressed.total {
        None => None,
        Some(_) if many_to_many && suppressed.cells.iter().any(|c| c.value.is_none()) => None,
        Some(_) => Some(total),
    };
    Ok(Aggregate {
        by,
        unit: unit.to_owned(),
        min_cell,
        cells: suppressed.cells,
        total,
    })
}

/// One group before suppression.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub records: i64,
    pub sum: f64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.records += other.records;
        self.sum += other.sum;
    }
    fn is_small(&self, k: i64, counts_people: bool) -> bool {
        // Sums of people are compared to k as counts.
        #[allow(clippy::cast_precision_loss)]
        let k_people = k as f64;
        self.records < k || (counts_people && self.sum < k_people)
    }
}

/// One published or withheld value.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub key: String,
    /// `None` when withheld.
    pub value: Option<Tally>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Suppressed {
    pub cells: Vec<Cell>,
    pub total: Option<Tally>,
}

/// Applies primary and complementary suppression to `groups` (each key once).
pub fn suppress(groups: BTreeMap<String, Tally>, k: i64, counts_people: bool) -> Suppressed {
    let mut total = Tally::default();
    let mut withheld = Tally::default();
    let mut any_withheld = false;
    let mut cells: Vec<(String, Tally, bool)> = groups
        .into_iter()
        .map(|(key, t)| {
            total.merge(t);
            let small = t.is_small(k, counts_people);
            if small {
                withheld.merge(t);
                any_withheld = true;
            }
            (key, t, small)
        })
        .collect();
    if any_withheld {
        while withheld.is_small(k, counts_people) {
            let next = cells.iter_mut().filter(|(_, _, w)| !*w).min_by(|a, b| {
                a.1.sum
                    .total_cmp(&b.1.sum)
                    .then(a.1.records.cmp(&b.1.records))
                    .then(a.0.cmp(&b.0))
            });
            match next {
                Some(cell) => {
                    cell.2 = true;
                    withheld.merge(cell.1);
                }
                None => break,
            }
        }
    }
    let total_withheld =
        total.is_small(k, counts_people) || (any_withheld && withheld.is_small(k, counts_people));
    Suppressed {
        cells: cells
            .into_iter()
            .map(|(key, t, w)| Cell {
                key,
                value: (!w).then_some(t),
            })
            .collect(),
        total: (!total_withheld).then_some(total),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(items: &[(&str, i64, f64)]) -> BTreeMap<String, Tally> {
        items
            .iter()
            .map(|(k, r, s)| {
                (
                    k.to_string(),
                    Tally {
                        records: *r,
                        sum: *s,
                    },
                )
            })
            .collect()
    }

    fn withheld(s: &Suppressed) -> Vec<&str> {
        s.cells
            .iter()
            .filter(|c| c.value.is_none())
            .map(|c| c.key.as_str())
            .collect()
    }

    #[test]
    fn large_cells_are_published_with_their_total() {
        let s = suppress(groups(&[("a", 20, 200.0), ("b", 15, 150.0)]), 11, true);
        assert!(withheld(&s).is_empty());
        assert_eq!(s.total.unwrap().records, 35);
    }

    #[test]
    fn a_small_cell_takes_the_next_smallest_with_it() {
        let s = suppress(
            groups(&[("a", 20, 200.0), ("b", 15, 150.0), ("c", 3, 3.0)]),
            11,
            true,
        );
        // c alone would be total - a - b.
        assert_eq!(withheld(&s), vec!["b", "c"]);
        assert!(s.total.is_some());
    }

    #[test]
    fn few_people_in_many_records_is_small_too() {
        let s = suppress(groups(&[("a", 20, 200.0), ("b", 12, 5.0)]), 11, true);
        assert_eq!(withheld(&s), vec!["a", "b"]);
        // Everything withheld: the total is all that is left, and it is large.
        assert!(s.total.is_some());
        let s = suppress(groups(&[("a", 20, 200.0), ("b", 12, 5.0)]), 11, false);
        assert!(withheld(&s).is_empty());
    }

    #[test]
    fn a_small_total_is_withheld() {
        let s = suppress(groups(&[("a", 4, 4.0), ("b", 5, 5.0)]), 11, true);
        assert_eq!(withheld(&s), vec!["a", "b"]);
        assert!(s.total.is_none());
    }
}
