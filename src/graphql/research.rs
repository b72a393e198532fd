//! Cross-programme aggregates for researchers (`research` scope), with small-cell suppression.
//!
//! Aggregates cover the `public` and `partners` outcome figures of every partner (through the
//! same row policy as every read, with a filter that never admits `private` rows), and only as
//! suppressed counts and sums: rows themselves stay behind `read`. The policy itself is
//! `domain::research::aggregate`, shared with `GET /export/aggregates`.

use async_graphql::{Context, Object, SimpleObject};

use super::context::request;
use crate::auth::RESEARCH;
use crate::domain::research::{self, Tally};
use crate::error::Error;

pub use crate::domain::research::AggregateDimension;

/// Schema-wide research settings, from `Config`.
pub struct ResearchSettings {
    pub min_cell: i64,
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
        rc.reads.read(&crate::storage::EntityKind::ALL);
        let agg = rc
            .store
            .run(move |conn| research::aggregate(conn, by, &unit, min_cell))
            .await?;
        Ok(ResearchAggregate {
            by: agg.by,
            unit: agg.unit,
            min_cell: agg.min_cell,
            cells: agg
                .cells
                .into_iter()
                .map(|c| cell(c.key, c.value))
                .collect(),
            total: cell("total".into(), agg.total),
        })
    }
}
