//! Liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::app::App;
use crate::error::Error;

/// The process is up.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// The database answers, every migration is applied, the audit log's writer runs, and no write
/// failed on a full disk lately. While the database is known to be down (the circuit of
/// `storage::circuit`), answered at once without asking it.
pub async fn readyz(State(app): State<App>) -> Response {
    if !app.audit.is_running() {
        return not_ready("audit writer stopped").into_response();
    }
    if let Some(down) = app.store.down() {
        let mut response = not_ready("database unreachable").into_response();
        if let Some(secs) = down.retry_after_secs() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, secs.into());
        }
        return response;
    }
    if app.store.storage_full() {
        return not_ready("storage full").into_response();
    }
    let answer = match app.store.is_ready().await {
        Ok(true) => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "backend": app.store.backend().to_string() })),
        ),
        Ok(false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "reason": "migrations pending" })),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "reason": e.code() })),
        ),
    };
    answer.into_response()
}

fn not_ready(reason: &str) -> (StatusCode, Json<serde_json::Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "not ready", "reason": reason })),
    )
}

/// Prometheus text exposition.
pub async fn metrics(State(app): State<App>) -> impl IntoResponse {
    let body = format!(
        "# HELP passerelle_sql_statements_total SQL statements sent to the database.\n\
         # TYPE passerelle_sql_statements_total counter\n\
         passerelle_sql_statements_total {}\n\
         # HELP passerelle_requests_in_flight Requests being handled now.\n\
         # TYPE passerelle_requests_in_flight gauge\n\
         passerelle_requests_in_flight {}\n\
         # HELP passerelle_requests_queued Requests waiting for a slot now.\n\
         # TYPE passerelle_requests_queued gauge\n\
         passerelle_requests_queued {}\n\
         # HELP passerelle_requests_shed_total Requests refused with 503 OVERLOADED.\n\
         # TYPE passerelle_requests_shed_total counter\n\
         passerelle_requests_shed_total {}\n\
         # HELP passerelle_document_cache_misses_total GraphQL documents parsed and checked rather than taken from the document cache.\n\
         # TYPE passerelle_document_cache_misses_total counter\n\
         passerelle_document_cache_misses_total {}\n\
         # HELP passerelle_database_up Whether the database is reachable (0 while known to be down).\n\
         # TYPE passerelle_database_up gauge\n\
         passerelle_database_up {}\n{}{}{}",
        app.store.statements().get(),
        app.admission.in_flight(),
        app.admission.queued(),
        app.admission.shed(),
        app.documents.misses(),
        u8::from(app.store.down().is_none()),
        app.admission.counters().render(app.admission.shed()),
        app.sync_stats.render(),
        app.store.stages().render()
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

pub async fn not_found() -> Error {
    Error::NotFound("route".into())
}
