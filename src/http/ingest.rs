//! `POST /import` (a partner's NDJSON or CSV file, all-or-nothing), `GET /export/{kind}`
//! (what the caller may see, streamed as NDJSON or CSV) and `GET /export/aggregates` (research
//! aggregates, `research` scope).

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::viewer::viewer;
use crate::app::App;
use crate::auth::RESEARCH;
use crate::domain::Viewer;
use crate::error::{Error, Result};
use crate::export::{self, ExportFormat, ExportKind};
use crate::ingest::import::{self, Format, ImportReport};
use crate::ingest::writer_partner;

/// The partner `viewer` imports as, and the format `content_type` names: checked before any
/// byte of the body is read.
fn import_target(viewer: &Viewer, content_type: Option<&str>) -> Result<(String, Format)> {
    let partner = writer_partner(viewer)?.to_owned();
    let format = content_type
        .and_then(Format::from_content_type)
        .ok_or_else(|| {
            Error::BadRequest(
                "send `Content-Type: application/x-ndjson` or `Content-Type: text/csv`".into(),
            )
        })?;
    Ok((partner, format))
}

/// Imports `input` (a whole file) as `viewer`, through the same all-or-nothing path as
/// `passerelle import`.
async fn import_input<R: std::io::BufRead + Send + 'static>(
    app: &App,
    viewer: &Viewer,
    partner: String,
    format: Format,
    input: R,
) -> Result<ImportReport> {
    let source = format!("import:{partner}");
    import::import_reader(
        &app.store,
        viewer.writer_rows(),
        partner,
        source,
        format,
        input,
        |_| {},
        |_, _| {},
    )
    .await
}

/// Imports a body held in memory as `viewer`: what `POST /import` does once the body is read.
pub async fn import_as(
    app: &App,
    viewer: &Viewer,
    content_type: Option<&str>,
    body: Bytes,
) -> Result<ImportReport> {
    let (partner, format) = import_target(viewer, content_type)?;
    if body.len() as u64 > app.config.import_max_bytes {
        return Err(too_large(app.config.import_max_bytes));
    }
    import_input(app, viewer, partner, format, std::io::Cursor::new(body)).await
}

fn too_large(limit: u64) -> Error {
    Error::PayloadTooLarge(format!(
        "an import may be at most {limit} bytes (import_max_bytes); split the file"
    ))
}

/// Copies `body` to an anonymous temporary file, refusing it as soon as it passes `limit`
/// bytes; the file is rewound for reading. Memory stays at a few chunks whatever the size.
async fn spool(body: Body, limit: u64) -> Result<std::fs::File> {
    use std::io::{Seek, Write};
    use tokio_stream::StreamExt;

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let mut file = tempfile::tempfile()?;
        {
            let mut out = std::io::BufWriter::new(&mut file);
            while let Some(chunk) = rx.blocking_recv() {
                out.write_all(&chunk)?;
            }
            out.flush()?;
        }
        file.rewind()?;
        Ok(file)
    });
    let mut stream = body.into_data_stream();
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::BadRequest(format!("cannot read the body: {e}")))?;
        received += chunk.len() as u64;
        if received > limit {
            // Dropping `tx` ends the writer; the unlinked file goes with it.
            return Err(too_large(limit));
        }
        if tx.send(chunk).await.is_err() {
            break; // the writer failed: its error is reported below
        }
    }
    drop(tx);
    writer
        .await?
        .map_err(|e| Error::internal(anyhow::anyhow!("cannot spool the import: {e}")))
}

/// `POST /import`: authenticated and checked before the body is read, then the body is
/// streamed to a temporary file (at most `import_max_bytes`) and imported from there.
pub async fn import_handler(State(app): State<App>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let viewer = match viewer(&app, &parts.headers).await {
        Ok(v) => v,
        Err(refused) => return refused,
    };
    let result = async {
        let ct = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let (partner, format) = import_target(&viewer, ct)?;
        let limit = app.config.import_max_bytes;
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large(limit));
        }
        let file = spool(body, limit).await?;
        let input = std::io::BufReader::with_capacity(64 * 1024, file);
        let report = import_input(&app, &viewer, partner.clone(), format, input).await?;
        audited(&app, &viewer, "POST /import", [partner].into()).await?;
        Ok(report)
    }
    .await;
    match result {
        Ok(report) => (StatusCode::OK, axum::Json(report)).into_response(),
        Err(e @ Error::PayloadTooLarge(_)) => {
            // The rest of the body is never read: close the connection after answering.
            let mut response = e.into_response();
            response.headers_mut().insert(
                header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            response
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub struct ExportParams {
    format: Option<String>,
}

/// Streams what `viewer` may see of `kind`.
pub fn export_as(app: &App, viewer: &Viewer, kind: &str, format: Option<&str>) -> Result<Response> {
    let kind: ExportKind = kind.parse()?;
    let format = ExportFormat::parse(format.unwrap_or("ndjson"))?;
    let body = Body::from_stream(export::stream(
        app.store.clone(),
        export::Reader::of(viewer),
        kind,
        format,
    ));
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response())
}

pub async fn export_handler(
    State(app): State<App>,
    headers: HeaderMap,
    Path(kind): Path<String>,
    Query(params): Query<ExportParams>,
) -> Response {
    let viewer = match viewer(&app, &headers).await {
        Ok(v) => v,
        Err(refused) => return refused,
    };
    let audited = async {
        let parsed: ExportKind = kind.parse()?;
        let rows = viewer.row_filter();
        let owners = app
            .store
            .run(move |c| crate::storage::queries::visible_owners(c, &rows, parsed.entity()))
            .await?;
        audited(&app, &viewer, &format!("GET /export/{kind}"), owners).await
    };
    match audited.await {
        Ok(()) => export_as(&app, &viewer, &kind, params.format.as_deref())
            .unwrap_or_else(IntoResponse::into_response),
        Err(e) => e.into_response(),
    }
}

/// Records an authenticated request outside GraphQL in the audit log, before answering it: a
/// failure refuses the request (nothing is answered unaudited); anonymous calls are not logged.
async fn audited(
    app: &App,
    viewer: &Viewer,
    operation: &str,
    partners: std::collections::BTreeSet<String>,
) -> Result<()> {
    app.audit
        .begin(viewer, Some(operation), "")
        .finish_with(app, partners, true)
        .await
}

#[derive(Deserialize)]
pub struct AggregateParams {
    /// Comma-separated dimensions; all of them when absent.
    by: Option<String>,
    unit: Option<String>,
    format: Option<String>,
}

/// Streams research aggregates for `viewer`: 401 without a token, 403 without `research`.
pub fn export_aggregates_as(
    app: &App,
    viewer: &Viewer,
    by: Option<&str>,
    unit: Option<&str>,
    format: Option<&str>,
) -> Result<Response> {
    if *viewer == Viewer::anonymous() {
        return Err(Error::Unauthenticated(
            "research aggregates need an access token with the `research` scope".into(),
        ));
    }
    viewer.require(RESEARCH, "research aggregates")?;
    let dims = export::aggregates::parse_dimensions(by)?;
    let format = ExportFormat::parse(format.unwrap_or("ndjson"))?;
    let unit = unit
        .filter(|u| !u.is_empty())
        .unwrap_or(crate::domain::research::DEFAULT_UNIT)
        .to_owned();
    let body = Body::from_stream(export::aggregates::stream(
        app.store.clone(),
        dims,
        unit,
        app.config.research_min_cell,
        format,
    ));
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response())
}

pub async fn export_aggregates_handler(
    State(app): State<App>,
    headers: HeaderMap,
    Query(params): Query<AggregateParams>,
) -> Response {
    let viewer = match viewer(&app, &headers).await {
        Ok(v) => v,
        Err(refused) => return refused,
    };
    // Aggregates return no partner's records, only suppressed counts and sums.
    let operation = format!(
        "GET /export/aggregates?by={}",
        params.by.as_deref().unwrap_or("all")
    );
    if viewer.has_scope(RESEARCH) {
        if let Err(e) = audited(&app, &viewer, &operation, Default::default()).await {
            return e.into_response();
        }
    }
    export_aggregates_as(
        &app,
        &viewer,
        params.by.as_deref(),
        params.unit.as_deref(),
        params.format.as_deref(),
    )
    .unwrap_or_else(IntoResponse::into_response)
}
