//! The GraphQL endpoint, one stage per module, Apollo-Router style:
//!
//! 1. `negotiate`: the response format from `Accept`;
//! 2. `rate_limit`: the caller's token bucket;
//! 3. `extract`: CSRF check, then GET query string or POST body into requests (batches too);
//! 4. `apq`: persisted query ids into text, trusted documents for `persisted_only` clients;
//! 5. `limits`: tokens, parse, aliases, introspection, GET only for queries;
//! 6. `cache`: the response cache (its hits gzip-encoded for clients that accept it), then
//!    execution with a timeout (of the document `limits` parsed), then HTTP caching headers;
//! 7. `order`: the answer's fields in the document's order, serialized once.

use std::any::Any;

use async_graphql::parser::types::OperationType;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::negotiate::{self, negotiate, Format};
use super::{apq, cache, extract, inputs, limits, order};
use crate::app::App;
use crate::auth;
use crate::domain::Viewer;
use crate::error::{Error, Result};
use crate::graphql::RequestContext;

/// `GET` and `POST /graphql`.
pub async fn handle(State(app): State<App>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let format = match negotiate(&parts.headers) {
        Ok(f) => f,
        Err(e) => return error_response(&e, Format::Json),
    };
    // The caller, as authentication understood it.
    let viewer = match caller(&app, &parts).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    match pipeline(&app, &parts, body, &viewer, format).await {
        Ok(response) => response,
        Err(e) => error_response(&e, format),
    }
}

/// The caller: a `Viewer` a layer in front already attached to the request (the test harness
/// does; nothing a client sends can), or the one its bearer token gives (anonymous without one).
pub async fn caller(app: &App, parts: &Parts) -> std::result::Result<Viewer, auth::AuthError> {
    match parts.extensions.get::<Viewer>() {
        Some(v) => Ok(v.clone()),
        None => auth::authenticate(app, &parts.headers).await,
    }
}

/// One operation's answer, serialized once.
struct Executed {
    /// The body as sent: straight from async-graphql's response, so the fields come in the
    /// order the document asked for them (GraphQL spec, "Serialized Map Ordering").
    bytes: bytes::Bytes,
    /// A cache hit's ETag.
    etag: Option<HeaderValue>,
    /// No errors at all.
    ok: bool,
    /// Refused before execution (no `data`): a 4xx for `application/graphql-response+json`.
    request_error: bool,
    cache_hit: bool,
    /// A cache hit's gzip encoding, for clients that accept it.
    gzipped: Option<cache::Gzipped>,
}

/// A request error's body: no `data` entry at all (GraphQL-over-HTTP).
#[derive(serde::Serialize)]
struct RequestErrorBody<'a> {
    errors: &'a [async_graphql::ServerError],
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    extensions: &'a std::collections::BTreeMap<String, async_graphql::Value>,
}

async fn pipeline(
    app: &App,
    parts: &Parts,
    body: Body,
    viewer: &Viewer,
    format: Format,
) -> Result<Response> {
    app.rate_limiter.check(viewer)?;
    if app.config.csrf_prevention {
        extract::csrf(&parts.headers)?;
    }
    // axum answers HEAD with the GET route (and drops the body).
    let is_get = matches!(parts.method, Method::GET | Method::HEAD);
    let incoming = if is_get {
        extract::from_get(parts.uri.query())?
    } else {
        let bytes = axum::body::to_bytes(body, app.config.max_body_bytes)
            .await
            .map_err(|e| {
                // A body without a length that outgrows the limit, or a client that went away.
                if super::body::outgrew_limit(&e) {
                    Error::PayloadTooLarge("the request body is larger than max_body_bytes".into())
                } else {
                    Error::BadRequest("the request body could not be read".into())
                }
            })?;
        extract::from_post(&parts.headers, &bytes)?
    };
    if incoming.batch {
        if incoming.bodies.is_empty() {
            return Err(Error::BadRequest("the batch is empty".into()));
        }
        if incoming.bodies.len() > app.config.max_batch_size {
            return Err(Error::BatchTooLarge(format!(
                "a batch may hold at most {} operations, not {}",
                app.config.max_batch_size,
                incoming.bodies.len()
            )));
        }
    }
    let mut results = Vec::with_capacity(incoming.bodies.len());
    for body in &incoming.bodies {
        results.push(run_one(app, viewer, body, is_get).await);
    }
    if !incoming.batch {
        let executed = results
            .pop()
            .ok_or_else(|| Error::BadRequest("no operation".into()))??;
        return Ok(single_response(
            app, parts, viewer, format, is_get, executed,
        ));
    }
    // The answers as they were serialized, joined into one JSON array.
    let mut array = Vec::with_capacity(2 + results.iter().map(answer_len).sum::<usize>());
    array.push(b'[');
    for (i, r) in results.into_iter().enumerate() {
        if i > 0 {
            array.push(b',');
        }
        match r {
            Ok(e) => array.extend_from_slice(&e.bytes),
            Err(e) => {
                array.extend_from_slice(&serde_json::to_vec(&e.graphql_body()).unwrap_or_default())
            }
        }
    }
    array.push(b']');
    Ok(bytes_response(
        StatusCode::OK,
        format,
        bytes::Bytes::from(array),
        HeaderValue::from_static("no-store"),
    ))
}

async fn run_one(
    app: &App,
    viewer: &Viewer,
    body: &extract::GraphQLBody,
    is_get: bool,
) -> Result<Executed> {
    inputs::check_envelope(body.operation_name.as_deref(), body.extensions.as_ref())?;
    let resolved = apq::resolve(app, viewer, body).await?;
    let operation_name = body.operation_name.as_deref().filter(|n| !n.is_empty());
    let variables = serde_json::Value::Object(body.variables.clone().unwrap_or_default());
    let key = cache::key(
        &resolved.query,
        operation_name,
        &variables,
        &cache::fingerprint(viewer),
    );
    // Only queries that passed every check, for callers with the same rows and scopes, are
    // cached under this key: a hit is answered before parsing the document again.
    if let Some(hit) = app.response_cache.get(&key).await {
        // Audited under the name the miss that stored it found in the document.
        // Only queries are cached.
        app.audit
            .begin(viewer, hit.operation.as_deref(), &resolved.query)
            .read()
            .finish_with(app, hit.owners, true)
            .await?;
        return Ok(Executed {
            bytes: hit.bytes,
            etag: Some(hit.etag),
            ok: true,
            request_error: false,
            cache_hit: true,
            gzipped: Some(hit.gzipped),
        });
    }
    let checked = app
        .documents
        .check(&app.config, &resolved.query, operation_name)
        .await?;
    inputs::check(&checked.document, &variables)?;
    if is_get && checked.ty != OperationType::Query {
        return Err(Error::MethodNotAllowed(
            "only queries may be sent with GET; send mutations with POST".into(),
        ));
    }
    if checked.introspection && !(app.config.public_introspection || viewer.has_scope("introspect"))
    {
        return Err(Error::IntrospectionDisabled);
    }
    let name = checked.name.as_deref().or(resolved.stored_name.as_deref());
    tracing::info!(
        operation = name.unwrap_or("-"),
        persisted_id = resolved.id.as_deref().unwrap_or("-"),
        kind = ?checked.ty,
        "graphql operation"
    );
    let cacheable = checked.ty == OperationType::Query && checked.cacheable;
    let mut request = async_graphql::Request::new(resolved.query.clone())
        .variables(async_graphql::Variables::from_json(variables));
    if let Some(n) = operation_name {
        request = request.operation_name(n);
    }
    // Parsed once: async-graphql runs the document the checks parsed.
    request.set_parsed_query(checked.document.clone());
    // Every authenticated answer is audited, cached or not; a failed audit fails the request.
    let mut audit = app.audit.begin(viewer, name, &resolved.query);
    if checked.ty == OperationType::Query {
        audit = audit.read();
    }
    let snapshot = app.response_cache.snapshot();
    let context = RequestContext::for_document(
        viewer.clone(),
        app.store.clone(),
        app.page_limits(),
        checked.detail,
    );
    let owners = context.owners.clone();
    let reads = context.reads.clone();
    let timeout = std::time::Duration::from_millis(app.config.execution_timeout_ms);
    let mut response = tokio::time::timeout(timeout, app.schema.execute(request.data(context)))
        .await
        .map_err(|_| Error::Timeout)?;
    let ok = response.errors.is_empty();
    let owners = owners.snapshot();
    audit.finish_with(app, owners.clone(), ok).await?;
    let request_error = !ok && response.data == async_graphql::Value::Null;
    order::null_failed_fields(&mut response.data, &response.errors);
    if let Some(operation) = checked.operation() {
        order::by_document(&checked.document, operation, &mut response.data);
    }
    limits::response_codes(&mut response.errors, request_error);
    let serialized = if request_error {
        serde_json::to_vec(&RequestErrorBody {
            errors: &response.errors,
            extensions: &response.extensions,
        })
    } else {
        serde_json::to_vec(&response)
    };
    let bytes = bytes::Bytes::from(serialized.map_err(Error::internal)?);
    if cacheable && ok && reads.cacheable() {
        let snapshot = cache::only(snapshot, &reads.kinds());
        app.response_cache
            .put(
                key,
                bytes.clone(),
                name.map(str::to_owned),
                owners,
                snapshot,
            )
            .await;
    }
    Ok(Executed {
        bytes,
        etag: None,
        ok,
        request_error,
        cache_hit: false,
        gzipped: None,
    })
}

/// The length of an answer in a batch.
fn answer_len(r: &Result<Executed>) -> usize {
    r.as_ref().map_or(128, |e| e.bytes.len() + 1)
}

fn single_response(
    app: &App,
    parts: &Parts,
    viewer: &Viewer,
    format: Format,
    is_get: bool,
    executed: Executed,
) -> Response {
    let status = if executed.request_error && format == Format::GraphqlResponseJson {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let http_cacheable = is_get && executed.ok;
    let cache_control = if http_cacheable {
        cache::cache_control(viewer, app.config.http_cache_max_age_secs)
    } else {
        HeaderValue::from_static("no-store")
    };
    let Executed {
        bytes,
        etag,
        gzipped,
        ..
    } = executed;
    // A cache hit goes out gzip-encoded to a client that accepts it (compressed once, when the
    // first such client asked); other answers as they are.
    let (bytes, etag, encoding) = match (&etag, &gzipped) {
        (Some(tag), Some(gz)) if negotiate::accepts_gzip(&parts.headers) => {
            match gz.of(&bytes, tag) {
                Some((body, gz_tag)) => (body, Some(gz_tag), Some("gzip")),
                None => (bytes, etag, None),
            }
        }
        _ => (bytes, etag, None),
    };
    let mut response = bytes_response(status, format, bytes.clone(), cache_control);
    if let Some(encoding) = encoding {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    if executed.cache_hit {
        response
            .headers_mut()
            .insert("x-passerelle-cache", HeaderValue::from_static("hit"));
    }
    if http_cacheable {
        let etag = etag.unwrap_or_else(|| cache::etag(&bytes));
        if cache::not_modified(&parts.headers, &etag) {
            let mut not_modified = StatusCode::NOT_MODIFIED.into_response();
            let headers = not_modified.headers_mut();
            for name in [header::CACHE_CONTROL, header::VARY] {
                if let Some(v) = response.headers().get(&name) {
                    headers.insert(name, v.clone());
                }
            }
            headers.insert(header::ETAG, etag);
            return not_modified;
        }
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

fn json_response(
    status: StatusCode,
    format: Format,
    body: &serde_json::Value,
    cache_control: HeaderValue,
) -> Response {
    let bytes = bytes::Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    bytes_response(status, format, bytes, cache_control)
}

fn bytes_response(
    status: StatusCode,
    format: Format,
    bytes: bytes::Bytes,
    cache_control: HeaderValue,
) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::CACHE_CONTROL, cache_control),
            (
                header::VARY,
                HeaderValue::from_static("Accept, Accept-Encoding, Authorization"),
            ),
        ],
        bytes,
    )
        .into_response()
}

/// An error before or instead of execution, as a GraphQL response. Legacy `application/json`
/// clients get 200 for GraphQL request errors; transport errors keep their status.
pub(super) fn error_response(error: &Error, format: Format) -> Response {
    let status = if format == Format::GraphqlResponseJson || error.is_transport_error() {
        error.status()
    } else {
        StatusCode::OK
    };
    let mut response = json_response(
        status,
        format,
        &error.graphql_body(),
        HeaderValue::from_static("no-store"),
    );
    let headers = response.headers_mut();
    if let Some(secs) = error.retry_after_secs() {
        headers.insert(header::RETRY_AFTER, secs.into());
    }
    if let Error::MethodNotAllowed(_) = error {
        headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    response
}

/// A panic anywhere in a handler becomes a masked 500; the detail goes to the log.
pub fn panic_response(err: Box<dyn Any + Send + 'static>) -> Response {
    let detail = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    tracing::error!(panic = %detail, "handler panicked");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"code":"INTERNAL_SERVER_ERROR","message":"internal server error"}"#,
    )
        .into_response()
}
