//! Export for researchers: every record of one type the caller may see, streamed as NDJSON or
//! CSV in the record format import reads (`ingest::format`). Rows are read one keyset page at a
//! time and handed to the response through a small bounded channel, so memory stays constant
//! whatever the size, and a client that goes away stops the reading.
//!
//! [`aggregates`] exports research aggregates the same way, through the research policy.

pub mod aggregates;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::domain::{FieldAccess, Project, References, RowFilter, Viewer};
use crate::error::{Error, Result};
use crate::ingest::format::{self, Record};
use crate::storage::queries::{self, After, PageRequest, SortDir};
use crate::storage::{AnyConnection, Store};

/// Rows read per database round trip.
pub const PAGE_ROWS: i64 = 500;
/// Pages buffered between the reader and the response.
const BUFFERED_PAGES: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    Actors,
    Actions,
    Outcomes,
    Partnerships,
}

impl ExportKind {
    /// The kind of record exported.
    pub fn entity(self) -> crate::storage::EntityKind {
        use crate::storage::EntityKind;
        match self {
            ExportKind::Actors => EntityKind::Actor,
            ExportKind::Actions => EntityKind::Action,
            ExportKind::Outcomes => EntityKind::Outcome,
            ExportKind::Partnerships => EntityKind::Partnership,
        }
    }
}

impl std::str::FromStr for ExportKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "actors" => Ok(ExportKind::Actors),
            "actions" => Ok(ExportKind::Actions),
            "outcomes" => Ok(ExportKind::Outcomes),
            "partnerships" => Ok(ExportKind::Partnerships),
            _ => Err(Error::NotFound(format!(
                "export `{s}` (use actors, actions, outcomes or partnerships)"
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Ndjson,
    Csv,
}

impl ExportFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Ndjson => "application/x-ndjson",
            ExportFormat::Csv => "text/csv; charset=utf-8",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "ndjson" | "jsonl" => Ok(ExportFormat::Ndjson),
            "csv" => Ok(ExportFormat::Csv),
            _ => Err(Error::BadRequest(format!(
                "unknown export format `{s}` (use ndjson or csv)"
            ))),
        }
    }
}

/// One page of visible records after `after`, rendered for the reader through the one
/// projection (references it may not see and fields its scopes do not open are left out), with
/// the key of its last row.
fn page(
    conn: &mut AnyConnection,
    reader: &Reader,
    kind: ExportKind,
    after: Option<After>,
) -> Result<(Vec<Record>, Option<After>)> {
    let request = PageRequest {
        after,
        limit: PAGE_ROWS,
        dir: SortDir::Asc,
    };
    fn rendered<T: Project>(
        conn: &mut AnyConnection,
        reader: &Reader,
        found: Vec<(String, T)>,
        id: impl Fn(&T) -> &str,
    ) -> Result<(Vec<Record>, Option<After>)>
    where
        for<'a> &'a T: Into<Record>,
    {
        let last = found.last().map(|(key, r)| After {
            key: key.clone(),
            id: id(r).to_owned(),
        });
        let refs = References::of(found.iter().map(|(_, r)| r));
        let visible = queries::visible(conn, &reader.rows, &refs)?;
        let records = found
            .into_iter()
            .map(|(_, mut r)| {
                r.project(&visible, reader.fields);
                (&r).into()
            })
            .collect();
        Ok((records, last))
    }
    let rows = &reader.rows;
    match kind {
        ExportKind::Actors => {
            let found = queries::actors_page(conn, rows, &Default::default(), &request)?;
            rendered(conn, reader, found, |r| &r.id)
        }
        ExportKind::Actions => {
            let found = queries::actions_page(
                conn,
                rows,
                queries::Detail::FULL,
                &Default::default(),
                queries::ActionSort::Title,
                &request,
            )?;
            rendered(conn, reader, found, |r| &r.id)
        }
        ExportKind::Outcomes => {
            let found = queries::outcomes_page(
                conn,
                rows,
                queries::Detail::FULL,
                &Default::default(),
                &request,
            )?;
            rendered(conn, reader, found, |r| &r.id)
        }
        ExportKind::Partnerships => {
            let found = queries::partnerships_page(conn, rows, &Default::default(), &request)?;
            rendered(conn, reader, found, |r| &r.id)
        }
    }
}

/// Who an export is for: the rows it may read and the fields it gets.
#[derive(Debug, Clone)]
pub struct Reader {
    pub rows: RowFilter,
    pub fields: FieldAccess,
}

impl Reader {
    pub fn of(viewer: &Viewer) -> Self {
        Reader {
            rows: viewer.row_filter(),
            fields: viewer.field_access(),
        }
    }
}

fn encode(records: &[Record], format: ExportFormat, header: bool) -> Result<Bytes> {
    match format {
        ExportFormat::Ndjson => {
            let mut out = Vec::new();
            for r in records {
                serde_json::to_writer(&mut out, r).map_err(Error::internal)?;
                out.push(b'\n');
            }
            Ok(out.into())
        }
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            if header {
                w.write_record(format::CSV_COLUMNS)
                    .map_err(Error::internal)?;
            }
            for r in records {
                w.write_record(format::record_to_csv(r))
                    .map_err(Error::internal)?;
            }
            w.into_inner()
                .map(Bytes::from)
                .map_err(|e| Error::internal(anyhow::anyhow!("csv: {e}")))
        }
    }
}

/// Streams every record of `kind` that `reader` may see, page by page. The stream ends early with an
/// error item if the database fails midway (the response is then cut short, never padded).
pub fn stream(
    store: Store,
    reader: Reader,
    kind: ExportKind,
    format: ExportFormat,
) -> ReceiverStream<std::result::Result<Bytes, std::io::Error>> {
    let (tx, rx) = mpsc::channel(BUFFERED_PAGES);
    tokio::spawn(async move {
        let mut after: Option<After> = None;
        let mut first = true;
        loop {
            let r = reader.clone();
            let cursor = after.clone();
            let result = store.run(move |c| page(c, &r, kind, cursor)).await;
            let (records, last) = match result {
                Ok(found) => found,
                Err(e) => {
                    // The detail goes to the log; the client sees a cut-off body.
                    match &e {
                        Error::Internal(source) => {
                            tracing::error!(error = ?source, "export stopped")
                        }
                        other => tracing::warn!(code = other.code(), "export stopped"),
                    }
                    let _ = tx.send(Err(std::io::Error::other("export failed"))).await;
                    return;
                }
            };
            let done = (records.len() as i64) < PAGE_ROWS;
            if !records.is_empty() || first {
                let chunk = match encode(&records, format, first) {
                    Ok(b) => Ok(b),
                    Err(_) => Err(std::io::Error::other("export failed")),
                };
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    return; // the client went away
                }
            }
            first = false;
            if done {
                return;
            }
            after = last;
        }
    });
    ReceiverStream::new(rx)
}
