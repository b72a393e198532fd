//! Bulk import: a partner's NDJSON or CSV file, checked row by row first, then written
//! all-or-nothing through the one write path (`storage::writes`) in a single transaction. Every
//! problem is reported with its line number; re-importing the same file changes nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;

use serde::Serialize;

use super::format::{self, DomainRecord};
use crate::domain::{write as check, RowFilter};
use crate::error::{Error, FieldError, Result};
use crate::storage::writes::{self, WriteEffect};
use crate::storage::{AnyConnection, EntityKind, Store};

/// The formats `POST /import` and `passerelle import` read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    Csv,
}

impl Format {
    /// From a `Content-Type` such as `application/x-ndjson` or `text/csv; charset=utf-8`.
    pub fn from_content_type(ct: &str) -> Option<Format> {
        let essence = ct.split(';').next().unwrap_or_default().trim();
        match essence.to_ascii_lowercase().as_str() {
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
                Some(Format::Ndjson)
            }
            "text/csv" => Some(Format::Csv),
            _ => None,
        }
    }

    /// From a file name ending in `.ndjson`, `.jsonl` or `.csv`.
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "ndjson" | "jsonl" => Some(Format::Ndjson),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }
}

/// A checked row, with the line it came from (1-based; the CSV header is line 1).
#[derive(Debug, Clone)]
pub struct Row {
    pub line: usize,
    pub record: DomainRecord,
}

/// What an import did, per record type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub rows: usize,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub by_type: BTreeMap<&'static str, BTreeMap<WriteEffect, usize>>,
}

impl ImportReport {
    fn count(&mut self, kind: &'static str, effect: WriteEffect) {
        self.rows += 1;
        match effect {
            WriteEffect::Created => self.created += 1,
            WriteEffect::Updated => self.updated += 1,
            WriteEffect::Unchanged => self.unchanged += 1,
        }
        *self
            .by_type
            .entry(kind)
            .or_default()
            .entry(effect)
            .or_default() += 1;
    }
}

pub(crate) fn at(line: usize, e: FieldError) -> FieldError {
    let field = if e.field.is_empty() {
        format!("line {line}")
    } else {
        format!("line {line}.{}", e.field)
    };
    FieldError::new(field, e.message)
}

/// Reads and checks every row of `input` as records `partner` writes from `source`: syntax,
/// vocabularies, field rules, ownership and duplicate ids. Calls `progress` with the bytes read
/// so far. Returns every row, or every problem found.
pub fn parse(
    format: Format,
    input: impl BufRead,
    partner: &str,
    source: &str,
    mut progress: impl FnMut(u64),
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut accept =
        |line: usize, value: serde_json::Value, errors: &mut Vec<FieldError>| match check_value(
            value, partner, source,
        ) {
            Ok(record) => rows.push(Row { line, record }),
            Err(fields) => errors.extend(fields.into_iter().map(|f| at(line, f))),
        };
    match format {
        Format::Ndjson => {
            let mut read = 0u64;
            for (i, line) in input.lines().enumerate() {
                let n = i + 1;
                let text = match line {
                    Ok(t) => t,
                    Err(e) => {
                        errors.push(at(n, FieldError::new("", format!("cannot read: {e}"))));
                        break;
                    }
                };
                read += text.len() as u64 + 1;
                progress(read);
                if text.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<serde_json::Value>(&text) {
                    Ok(v) if v.is_object() => accept(n, v, &mut errors),
                    Ok(_) => errors.push(at(n, FieldError::new("", "must be a JSON object"))),
                    Err(e) => errors.push(at(n, FieldError::new("", format!("not JSON: {e}")))),
                }
            }
        }
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(true)
                .flexible(false)
                .from_reader(input);
            let headers: Vec<String> = match reader.headers() {
                Ok(h) => h.iter().map(|s| s.trim().to_owned()).collect(),
                Err(e) => {
                    return Err(Error::Invalid(vec![FieldError::new(
                        "line 1",
                        format!("cannot read the CSV header: {e}"),
                    )]))
                }
            };
            if let Err(e) = format::check_csv_header(&headers) {
                return Err(Error::Invalid(e));
            }
            for result in reader.records() {
                match result {
                    Ok(cells) => {
                        let n = cells.position().map(|p| p.line() as usize).unwrap_or(0);
                        progress(cells.position().map(|p| p.byte()).unwrap_or(0));
                        match format::csv_row_to_json(&headers, &cells) {
                            Ok(v) => accept(n, v, &mut errors),
                            Err(fields) => errors.extend(fields.into_iter().map(|f| at(n, f))),
                        }
                    }
                    Err(e) => {
                        let n = e.position().map(|p| p.line() as usize).unwrap_or(0);
                        errors.push(at(n, FieldError::new("", format!("bad CSV row: {e}"))));
                        // A syntax error can leave the reader out of step: stop here.
                        if !matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. }) {
                            break;
                        }
                    }
                }
            }
        }
    }
    // An id twice in one file would make the file's meaning depend on row order.
    let mut seen: HashMap<(&'static str, String), usize> = HashMap::new();
    for row in &rows {
        let key = (row.record.kind(), row.record.id().to_owned());
        if let Some(first) = seen.get(&key) {
            errors.push(at(
                row.line,
                FieldError::new(
                    "id",
                    format!("{} `{}` already appears on line {first}", key.0, key.1),
                ),
            ));
        } else {
            seen.insert(key, row.line);
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| line_of(&e.field));
        return Err(Error::Invalid(errors));
    }
    if rows.is_empty() {
        return Err(Error::Invalid(vec![FieldError::new(
            "file",
            "contains no records",
        )]));
    }
    Ok(order(rows))
}

/// Reads and checks one record (a JSON object in the import format) as `partner` writes it.
pub fn check_value(
    value: serde_json::Value,
    partner: &str,
    source: &str,
) -> std::result::Result<DomainRecord, Vec<FieldError>> {
    let record = format::record_from_json(value)
        .and_then(|r| r.into_domain(partner, source))
        .map_err(|e| vec![e])?;
    let checked = match &record {
        DomainRecord::Actor(r) => check::validate_actor(r),
        DomainRecord::Action(r) => check::validate_action(r),
        DomainRecord::Outcome(r) => check::validate_outcome(r),
        DomainRecord::Partnership(r) => check::validate_partnership(r),
    };
    match checked {
        Ok(()) => Ok(record),
        Err(Error::Invalid(fields)) => Err(fields),
        Err(other) => Err(vec![FieldError::new("", other.message())]),
    }
}

fn line_of(field: &str) -> usize {
    field
        .strip_prefix("line ")
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_digit())
                .collect::<String>()
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Orders rows so that what is referenced is written first: actors, actions, outcomes,
/// partnerships, and within actors and actions, parents before their children.
pub fn order(rows: Vec<Row>) -> Vec<Row> {
    let parents: HashMap<(u8, String), Option<String>> = rows
        .iter()
        .map(|r| {
            (
                (r.record.rank(), r.record.id().to_owned()),
                r.record.parent().map(str::to_owned),
            )
        })
        .collect();
    let depth = |r: &Row| {
        let mut d = 0usize;
        let mut seen = HashSet::new();
        let mut cur = r.record.parent().map(str::to_owned);
        while let Some(p) = cur {
            if !seen.insert(p.clone()) {
                break; // a cycle: the write reports it
            }
            match parents.get(&(r.record.rank(), p)) {
                Some(next) => {
                    d += 1;
                    cur = next.clone();
                }
                None => break,
            }
        }
        d
    };
    let mut keyed: Vec<(u8, usize, Row)> = rows
        .into_iter()
        .map(|r| (r.record.rank(), depth(&r), r))
        .collect();
    keyed.sort_by_key(|(rank, depth, r)| (*rank, *depth, r.line));
    keyed.into_iter().map(|(_, _, r)| r).collect()
}

/// Writes checked rows in one transaction: all of them, or (on any problem) none. Problems the
/// write path finds (unknown references, another partner's id) are all reported, with their line.
/// Rows are written in chunks of one kind ([`writes::write_chunk`]: the per-row checks and
/// inserts made once per chunk, with the same effects), which made a PostgreSQL import several
/// times faster than one round trip per statement per row.
pub fn write_all(
    conn: &mut AnyConnection,
    writer: &RowFilter,
    rows: &[Row],
    now: &str,
    mut progress: impl FnMut(usize),
) -> Result<ImportReport> {
    crate::storage::write_transaction(conn, |c| {
        writes::plan_for_bulk(c)?;
        let mut report = ImportReport::default();
        let mut errors = Vec::new();
        let mut partners = HashMap::new();
        let mut done = 0;
        for chunk in chunks(rows) {
            let effects = match &chunk[0].record {
                DomainRecord::Actor(_) => {
                    let records: Vec<_> = chunk
                        .iter()
                        .filter_map(|r| match &r.record {
                            DomainRecord::Actor(a) => Some(a),
                            _ => None,
                        })
                        .collect();
                    writes::write_chunk(c, writer, &records, now, &mut partners)?
                }
                DomainRecord::Action(_) => {
                    let records: Vec<_> = chunk
                        .iter()
                        .filter_map(|r| match &r.record {
                            DomainRecord::Action(a) => Some(a),
                            _ => None,
                        })
                        .collect();
                    writes::write_chunk(c, writer, &records, now, &mut partners)?
                }
                DomainRecord::Outcome(_) => {
                    let records: Vec<_> = chunk
                        .iter()
                        .filter_map(|r| match &r.record {
                            DomainRecord::Outcome(o) => Some(o),
                            _ => None,
                        })
                        .collect();
                    writes::write_chunk(c, writer, &records, now, &mut partners)?
                }
                DomainRecord::Partnership(_) => {
                    let records: Vec<_> = chunk
                        .iter()
                        .filter_map(|r| match &r.record {
                            DomainRecord::Partnership(p) => Some(p),
                            _ => None,
                        })
                        .collect();
                    writes::write_chunk(c, writer, &records, now, &mut partners)?
                }
            };
            for (row, written) in chunk.iter().zip(effects) {
                match written {
                    Ok(effect) => report.count(row.record.kind(), effect),
                    Err(Error::Invalid(fields)) => {
                        errors.extend(fields.into_iter().map(|f| at(row.line, f)))
                    }
                    Err(Error::Forbidden(m)) => errors.push(at(row.line, FieldError::new("id", m))),
                    Err(other) => return Err(other),
                }
            }
            done += chunk.len();
            progress(done);
        }
        if errors.is_empty() {
            Ok(report)
        } else {
            errors.sort_by_key(|e| line_of(&e.field));
            Err(Error::Invalid(errors))
        }
    })
}

/// Rows per chunk written at once.
const CHUNK_ROWS: usize = 400;

/// Consecutive rows of one kind, cut so that no chunk holds an id twice or a row whose parent
/// is in it (rows come parents first: [`order`]).
fn chunks(rows: &[Row]) -> Vec<&[Row]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut ids: HashSet<&str> = HashSet::new();
    for (i, row) in rows.iter().enumerate() {
        let cut = i > start
            && (row.record.rank() != rows[start].record.rank()
                || i - start >= CHUNK_ROWS
                || ids.contains(row.record.id())
                || row.record.parent().is_some_and(|p| ids.contains(p)));
        if cut {
            out.push(&rows[start..i]);
            start = i;
            ids.clear();
        }
        ids.insert(row.record.id());
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

/// Checks then writes a whole file, all-or-nothing: the one path of `passerelle import` and
/// `POST /import`. `input` is read on the blocking pool (`read` gets the bytes read so far),
/// then every row is written in one transaction as `partner`, through `writer`'s filter
/// (`wrote` gets the rows written so far, and how many there are). Cached answers are invalidated once it commits.
#[allow(clippy::too_many_arguments)]
pub async fn import_reader<R: BufRead + Send + 'static>(
    store: &Store,
    writer: RowFilter,
    partner: String,
    source: String,
    format: Format,
    input: R,
    read: impl FnMut(u64) + Send + 'static,
    mut wrote: impl FnMut(usize, usize) + Send + 'static,
) -> Result<ImportReport> {
    let rows = tokio::task::spawn_blocking(move || parse(format, input, &partner, &source, read))
        .await??;
    let report = store
        .run(move |c| {
            let total = rows.len();
            write_all(c, &writer, &rows, &crate::app::now(), |n| wrote(n, total))
        })
        .await?;
    if report.created + report.updated > 0 {
        store.write_log().written([
            EntityKind::Actor,
            EntityKind::Action,
            EntityKind::Outcome,
            EntityKind::Partnership,
        ]);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_bad_row_with_its_line() {
        let file = concat!(
            r#"{"type":"actor","id":"caravan-a1","kind":"ASSOCIATION","name":"Un"}"#,
            "\n",
            r#"{"type":"actor","id":"caravan-a2","kind":"ASSOCIATION","name":""}"#,
            "\n",
            "not json\n",
            "\n",
            r#"{"type":"actor","id":"caravan-a1","kind":"ASSOCIATION","name":"Deux","owner":"anvita"}"#,
            "\n",
        );
        let Err(Error::Invalid(errors)) = parse(
            Format::Ndjson,
            file.as_bytes(),
            "caravan",
            "import:test",
            |_| {},
        ) else {
            panic!("expected errors");
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["line 2.name", "line 3", "line 5.owner"],
            "{errors:?}"
        );
    }

    #[test]
    fn orders_parents_before_children() {
        let file = concat!(
            r#"{"type":"partnership","id":"caravan-p","name":"P","members":[{"actor_id":"caravan-c","role":"LEAD"}]}"#,
            "\n",
            r#"{"type":"actor","id":"caravan-c","kind":"OTHER","name":"C","parent_actor_id":"caravan-b"}"#,
            "\n",
            r#"{"type":"actor","id":"caravan-b","kind":"OTHER","name":"B","parent_actor_id":"caravan-a"}"#,
            "\n",
            r#"{"type":"actor","id":"caravan-a","kind":"OTHER","name":"A"}"#,
            "\n",
        );
        let rows = parse(
            Format::Ndjson,
            file.as_bytes(),
            "caravan",
            "import:test",
            |_| {},
        )
        .unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r.record.id()).collect();
        assert_eq!(ids, ["caravan-a", "caravan-b", "caravan-c", "caravan-p"]);
    }
}
