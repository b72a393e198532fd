//! Research aggregates and small-cell suppression.
//!
//! A cell resting on fewer than `k` records, or (for figures counting people) fewer than `k`
//! people, is withheld. Then complementary suppression: while the withheld cells together still
//! rest on fewer than `k` records or people, the smallest published cell is withheld too, so the
//! total minus the published cells cannot reveal a small group; if even that cannot be reached,
//! the total is withheld as well.

use std::collections::BTreeMap;

/// One group before suppression.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub records: i64,
    pub sum: f64,
}

impl Tally {
    pub fn add(&mut self, value: f64) {
        self.records += 1;
        self.sum += value;
    }
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
