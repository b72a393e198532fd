//! The HTTP server: one route list, the middleware every request passes, and graceful shutdown.

pub mod admission;
mod apq;
pub mod body;
pub mod cache;
mod cors;
pub mod documents;
mod extract;
mod graphiql;
mod graphql;
mod health;
pub mod ingest;
mod inputs;
pub(crate) mod limits;
mod negotiate;
mod order;
pub mod rate_limit;
pub mod server;
pub mod viewer;

use std::future::Future;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::app::App;
use crate::auth::endpoints as oauth;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route Passerelle serves.
pub fn router(app: App) -> Router {
    let body_limit = app.config.max_body_bytes;
    let timeout = Duration::from_secs(app.config.request_timeout_secs.max(1));
    let import_timeout = Duration::from_secs(app.config.import_timeout_secs.max(1));
    let cors = cors::layer(&app.config);
    let admit = || axum::middleware::from_fn_with_state(app.clone(), admission::graphql);
    let admit_plain = || axum::middleware::from_fn_with_state(app.clone(), admission::plain);
    let service_unavailable = axum::http::StatusCode::SERVICE_UNAVAILABLE;
    let api = Router::new()
        .route(
            "/graphql",
            get(graphql::handle).post(graphql::handle).layer(admit()),
        )
        .merge(graphiql::routes())
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route(
            "/export/aggregates",
            get(ingest::export_aggregates_handler).layer(admit_plain()),
        )
        .route(
            "/export/{kind}",
            get(ingest::export_handler).layer(admit_plain()),
        )
        // Each call checks a client secret (Argon2id): admitted like the other heavy routes.
        .route("/oauth/token", post(oauth::token).layer(admit_plain()))
        .route(
            "/oauth/introspect",
            post(oauth::introspect).layer(admit_plain()),
        )
        .route("/oauth/revoke", post(oauth::revoke).layer(admit_plain()))
        .route("/.well-known/jwks.json", get(oauth::jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth::metadata),
        )
        .route(
            "/.well-known/openid-configuration",
            get(oauth::openid_configuration),
        )
        .layer(DefaultBodyLimit::max(body_limit))
        // Bodies are read in full, bounded in time, before admission control (issue 37).
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            body::read_first,
        ))
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(axum::middleware::map_response(too_large_with_code))
        .layer(TimeoutLayer::with_status_code(service_unavailable, timeout));
    // Import files stream to disk under their own limits (`import_max_bytes`, checked by the
    // handler, and `import_timeout_secs`), not the 1 MiB GraphQL body limit.
    let import = Router::new()
        .route("/import", post(ingest::import_handler).layer(admit_plain()))
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            body::paced,
        ))
        .layer(TimeoutLayer::with_status_code(
            service_unavailable,
            import_timeout,
        ));
    let counters = app.admission.counters().clone();
    api.merge(import)
        .fallback(health::not_found)
        .with_state(app)
        .layer(CatchPanicLayer::custom(graphql::panic_response))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                })
                .on_failure(move |failure, latency: Duration, _: &tracing::Span| {
                    refused_or_failed(&counters, failure, latency)
                }),
        )
        .layer(cors)
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// A 503 (shed, timed out, database down) is expected under load or during an outage: counted,
/// and logged once per interval with how many there were. Other failures are logged each.
fn refused_or_failed(
    counters: &crate::metrics::Resilience,
    failure: tower_http::classify::ServerErrorsFailureClass,
    latency: Duration,
) {
    use tower_http::classify::ServerErrorsFailureClass::StatusCode as Status;
    match failure {
        Status(status) if status == axum::http::StatusCode::SERVICE_UNAVAILABLE => {
            counters
                .unavailable
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(n) = counters.unavailable_log.tick() {
                tracing::info!(
                    refused = n,
                    "requests answered 503 since the last such line (see /metrics)"
                );
            }
        }
        failure => {
            tracing::error!(classification = %failure, latency = ?latency, "response failed")
        }
    }
}

/// The body limit's own 413 is plain text: answer it with our error body and stable code.
async fn too_large_with_code(response: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    let ours = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE && !ours {
        return crate::error::Error::PayloadTooLarge(
            "the request body is larger than max_body_bytes".into(),
        )
        .into_response();
    }
    response
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish for up to
/// `shutdown_grace_secs`.
pub async fn serve(
    app: App,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_app(app.clone(), router(app), listener, shutdown).await
}

/// Serves `router` (the app's, possibly wrapped in more layers) with the app's scheduled
/// connectors running beside it; on shutdown, stops both.
pub async fn serve_app(
    app: App,
    router: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = Duration::from_secs(app.config.shutdown_grace_secs);
    let scheduler = app.schedule_connectors();
    if !scheduler.is_empty() {
        tracing::info!(connectors = scheduler.len(), "connectors scheduled");
    }
    // Checked sessions are relied on only while this watch reads the counter of auth changes.
    let sessions = app.sessions.watch();
    // Cached answers are used only while this watch reads the feed of data changes.
    let changes = app.response_cache.watch().await;
    // Callers held to trusted documents (`pq only`), read off the request path.
    let held = app.persisted.watch().await;
    let served = serve_router(
        router,
        grace,
        server::Limits::from_config(&app.config),
        app.admission.counters().clone(),
        listener,
        shutdown,
    )
    .await;
    for watch in [sessions, changes, held].into_iter().flatten() {
        watch.abort();
    }
    if tokio::time::timeout(grace.max(Duration::from_secs(1)), scheduler.stop())
        .await
        .is_err()
    {
        tracing::warn!("connector passes did not stop in time");
    }
    served
}

/// Serves `router` (the app's, possibly wrapped in more layers) until `shutdown` resolves, then
/// lets in-flight requests finish for up to `grace`. Connections are bounded by `limits`
/// ([`server`]); `counters` count what they cost.
pub async fn serve_router(
    router: Router,
    grace: Duration,
    limits: server::Limits,
    counters: std::sync::Arc<crate::metrics::Resilience>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = stopping_tx.send(());
    };
    let server = server::serve(router, listener, limits, counters, signal);
    tokio::select! {
        () = server => Ok(()),
        _ = async {
            let _ = stopping_rx.await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests did not finish in time");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
