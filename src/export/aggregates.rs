//! `GET /export/aggregates`: research aggregates as NDJSON or CSV, for callers with the
//! `research` scope. Each requested dimension goes through `domain::research::aggregate`, the
//! very function `researchAggregate` answers from: withheld cells are present, marked
//! `suppressed`, with null `records` and `sum`; private rows are never counted. Dimensions are
//! computed and sent one at a time through a bounded channel.

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::ExportFormat;
use crate::domain::research::{self, Aggregate, AggregateDimension, Tally};
use crate::error::{Error, Result};
use crate::storage::Store;

/// The CSV header, in the order of `AggregateRow`'s fields.
pub const CSV_COLUMNS: [&str; 8] = [
    "by",
    "unit",
    "min_cell",
    "key",
    "total",
    "suppressed",
    "records",
    "sum",
];

/// One cell (or a dimension's total) as exported.
#[derive(Debug, Serialize)]
pub struct AggregateRow<'a> {
    /// The dimension: `partner`, `programme`, `territory`, `period` or `theme`.
    pub by: &'static str,
    pub unit: &'a str,
    pub min_cell: i64,
    /// The group; null on the total row.
    pub key: Option<&'a str>,
    /// True on the row over every figure of the dimension.
    pub total: bool,
    pub suppressed: bool,
    /// Null when suppressed.
    pub records: Option<i64>,
    /// Null when suppressed.
    pub sum: Option<f64>,
}

/// The dimensions of `by=` (comma-separated; all five when absent or empty).
pub fn parse_dimensions(by: Option<&str>) -> Result<Vec<AggregateDimension>> {
    let mut dims = Vec::new();
    for name in by
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.trim().is_empty())
    {
        let d = AggregateDimension::parse(name).ok_or_else(|| {
            Error::BadRequest(format!(
                "unknown aggregate dimension `{}` (use partner, programme, territory, period or theme)",
                name.trim()
            ))
        })?;
        if !dims.contains(&d) {
            dims.push(d);
        }
    }
    if dims.is_empty() {
        dims = AggregateDimension::ALL.to_vec();
    }
    Ok(dims)
}

fn row<'a>(agg: &'a Aggregate, key: Option<&'a str>, value: Option<Tally>) -> AggregateRow<'a> {
    AggregateRow {
        by: agg.by.as_str(),
        unit: &agg.unit,
        min_cell: agg.min_cell,
        key,
        total: key.is_none(),
        suppressed: value.is_none(),
        records: value.map(|t| t.records),
        sum: value.map(|t| t.sum),
    }
}

fn rows(agg: &Aggregate) -> Vec<AggregateRow<'_>> {
    agg.cells
        .iter()
        .map(|c| row(agg, Some(&c.key), c.value))
        .chain(std::iter::once(row(agg, None, agg.total)))
        .collect()
}

/// Encodes one aggregate (its cells, then its total), with the CSV header when `header`.
pub fn encode(agg: &Aggregate, format: ExportFormat, header: bool) -> Result<Bytes> {
    match format {
        ExportFormat::Ndjson => {
            let mut out = Vec::new();
            for r in rows(agg) {
                serde_json::to_writer(&mut out, &r).map_err(Error::internal)?;
                out.push(b'\n');
            }
            Ok(out.into())
        }
        ExportFormat::Csv => {
            let mut w = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(Vec::new());
            if header {
                w.write_record(CSV_COLUMNS).map_err(Error::internal)?;
            }
            for r in rows(agg) {
                w.serialize(&r).map_err(Error::internal)?;
            }
            w.into_inner()
                .map(Bytes::from)
                .map_err(|e| Error::internal(anyhow::anyhow!("csv: {e}")))
        }
    }
}

/// Streams the aggregates of `dims`, one dimension at a time. The caller has checked the
/// `research` scope. A failure midway cuts the body short (and is logged).
pub fn stream(
    store: Store,
    dims: Vec<AggregateDimension>,
    unit: String,
    min_cell: i64,
    format: ExportFormat,
) -> ReceiverStream<std::result::Result<Bytes, std::io::Error>> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        for (i, by) in dims.into_iter().enumerate() {
            let u = unit.clone();
            let chunk = store
                .run(move |c| research::aggregate(c, by, &u, min_cell))
                .await
                .and_then(|agg| encode(&agg, format, i == 0));
            let chunk = chunk.map_err(|e| {
                match &e {
                    Error::Internal(source) => {
                        tracing::error!(error = ?source, "aggregate export stopped")
                    }
                    other => tracing::warn!(code = other.code(), "aggregate export stopped"),
                }
                std::io::Error::other("export failed")
            });
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() || failed {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}
