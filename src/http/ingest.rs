//! `POST /import` (a partner's NDJSON or CSV file, all-or-nothing), `GET /export/{kind}`
//! (what the caller may see, streamed as NDJSON or CSV) and `GET /export/aggregates` (research
//! aggregates, `research` scope).

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::viewer::viewer;
use crate::app::{now, App};
use crate::auth::RESEARCH;
use crate::domain::Viewer;
use crate::error::{Error, Result};
use crate::export::{self, ExportFormat, ExportKind};
use crate::ingest::import::{self, Format, ImportReport};
use crate::ingest::writer_partner;

/// Imports a request body as `viewer`: what `POST /import` does once it knows the caller.
pub async fn import_as(
    app: &App,
    viewer: &Viewer,
    content_type: Option<&str>,
    body: Bytes,
) -> Result<ImportReport> {
    let partner = writer_partner(viewer)?.to_owned();
    let format = content_type
        .and_then(Format::from_content_type)
        .ok_or_else(|| {
            Error::BadRequest(
                "send `Content-Type: application/x-ndjson` or `Content-Type: text/csv`".into(),
            )
        })?;
    let source = format!("import:{partner}");
    import::import_bytes(
        &app.store,
        viewer.row_filter(),
        partner,
        source,
        format,
        body,
        now(),
    )
    .await
}

pub async fn import_handler(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let viewer = match viewer(&app, &headers).await {
        Ok(v) => v,
        Err(refused) => return refused,
    };
    let result = async {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        import_as(&app, &viewer, ct, body).await
    }
    .await;
    match result {
        Ok(report) => (StatusCode::OK, axum::Json(report)).into_response(),
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
        viewer.row_filter(),
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
    export_as(&app, &viewer, &kind, params.format.as_deref())
        .unwrap_or_else(IntoResponse::into_response)
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
    export_aggregates_as(
        &app,
        &viewer,
        params.by.as_deref(),
        params.unit.as_deref(),
        params.format.as_deref(),
    )
    .unwrap_or_else(IntoResponse::into_response)
}
