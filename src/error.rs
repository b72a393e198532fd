//! The one error type. Each variant has a stable code, mapped once to an HTTP status
//! (`IntoResponse`) and once to a GraphQL error with `extensions.code` (`From<Error> for
//! async_graphql::Error`). Internal details go to the log, never to the client.

use async_graphql::ErrorExtensions;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A problem with one input field, reported with the field's path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Deliberately not `Display`: async-graphql converts any `Display` type into a GraphQL error
/// without an `extensions.code`, so `?` in a resolver must reach our own `From` impl instead.
#[derive(Debug)]
pub enum Error {
    NotFound(String),
    Invalid(Vec<FieldError>),
    BadRequest(String),
    Unauthenticated(String),
    Forbidden(String),
    /// A field the caller's scopes do not cover: the field is null and the error names the scope.
    ForbiddenField(String),
    Unavailable(String),
    /// An automatic persisted query whose hash is not known (yet): the client sends the text.
    PersistedQueryNotFound,
    /// The query text does not hash to the `sha256Hash` sent with it.
    PersistedQueryHashMismatch,
    /// This client may only run trusted documents, by id.
    PersistedQueryRequired(String),
    /// A `persisted_only` client sent an id that is no trusted document: not
    /// `PersistedQueryNotFound`, which would make an APQ client retry with the text.
    PersistedQueryNotInManifest(String),
    QueryTooDeep(String),
    QueryTooComplex(String),
    TooManyAliases(String),
    TooManyTokens(String),
    BatchTooLarge(String),
    /// The document does not parse.
    ParseFailed(String),
    /// The document does not validate against the schema.
    ValidationFailed(String),
    RateLimited {
        retry_after_secs: u64,
    },
    /// Every request slot stayed busy for `queue_timeout_ms`: the request is shed, not queued.
    Overloaded,
    CsrfPreflightRequired,
    IntrospectionDisabled,
    /// The operation ran longer than `execution_timeout_ms`.
    Timeout,
    /// E.g. a mutation sent with GET.
    MethodNotAllowed(String),
    UnsupportedMediaType(String),
    NotAcceptable(String),
    /// A stored token signing key cannot be decrypted: `key_encryption_key` is missing or is
    /// not the key it was encrypted with.
    SigningKeyUnreadable(String),
    /// A request body larger than its endpoint accepts (e.g. `import_max_bytes`).
    PayloadTooLarge(String),
    /// The request body did not arrive in time (`body_read_timeout_ms`, or slower than
    /// `body_min_bytes_per_sec`).
    BodyTimeout,
    /// The database is known to be unreachable (a probe closes the circuit once it answers).
    DatabaseDown {
        retry_after_secs: u64,
    },
    /// The database's disk (or SQLite's file size limit) is full: nothing can be written.
    StorageFull,
    /// Anything the client cannot act on; the detail is logged, never sent.
    Internal(anyhow::Error),
}

fn summary(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Error::Internal(e.into())
    }

    /// The stable code clients match on (`extensions.code` in GraphQL, `code` in HTTP bodies).
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFound(_) => "NOT_FOUND",
            Error::Invalid(_) => "BAD_USER_INPUT",
            Error::BadRequest(_) => "BAD_REQUEST",
            Error::Unauthenticated(_) => "UNAUTHENTICATED",
            Error::Forbidden(_) => "FORBIDDEN",
            Error::ForbiddenField(_) => "FORBIDDEN_FIELD",
            Error::Unavailable(_) => "SERVICE_UNAVAILABLE",
            Error::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            Error::PersistedQueryHashMismatch => "PERSISTED_QUERY_HASH_MISMATCH",
            Error::PersistedQueryRequired(_) => "PERSISTED_QUERY_REQUIRED",
            Error::PersistedQueryNotInManifest(_) => "PERSISTED_QUERY_NOT_IN_MANIFEST",
            Error::QueryTooDeep(_) => "QUERY_TOO_DEEP",
            Error::QueryTooComplex(_) => "QUERY_TOO_COMPLEX",
            Error::TooManyAliases(_) => "TOO_MANY_ALIASES",
            Error::TooManyTokens(_) => "TOO_MANY_TOKENS",
            Error::BatchTooLarge(_) => "BATCH_TOO_LARGE",
            Error::ParseFailed(_) => "GRAPHQL_PARSE_FAILED",
            Error::ValidationFailed(_) => "GRAPHQL_VALIDATION_FAILED",
            Error::RateLimited { .. } => "RATE_LIMITED",
            Error::Overloaded => "OVERLOADED",
            Error::CsrfPreflightRequired => "CSRF_PREFLIGHT_REQUIRED",
            Error::IntrospectionDisabled => "INTROSPECTION_DISABLED",
            Error::Timeout => "TIMEOUT",
            Error::MethodNotAllowed(_) => "METHOD_NOT_ALLOWED",
            Error::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            Error::NotAcceptable(_) => "NOT_ACCEPTABLE",
            Error::SigningKeyUnreadable(_) => "SIGNING_KEY_UNREADABLE",
            Error::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            Error::BodyTimeout => "BODY_TIMEOUT",
            Error::DatabaseDown { .. } | Error::StorageFull => "SERVICE_UNAVAILABLE",
            Error::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Invalid(_) | Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) | Error::ForbiddenField(_) => StatusCode::FORBIDDEN,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            // Apollo clients (Apollo iOS rejects any non-2xx before its APQ step) only retry with
            // the full text when this arrives with a 200, as Apollo Server and Router send it.
            Error::PersistedQueryNotFound => StatusCode::OK,
            Error::PersistedQueryHashMismatch
            | Error::PersistedQueryRequired(_)
            | Error::PersistedQueryNotInManifest(_)
            | Error::QueryTooDeep(_)
            | Error::QueryTooComplex(_)
            | Error::TooManyAliases(_)
            | Error::TooManyTokens(_)
            | Error::BatchTooLarge(_)
            | Error::ParseFailed(_)
            | Error::ValidationFailed(_)
            | Error::CsrfPreflightRequired => StatusCode::BAD_REQUEST,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Error::IntrospectionDisabled => StatusCode::FORBIDDEN,
            Error::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Error::DatabaseDown { .. } | Error::StorageFull => StatusCode::SERVICE_UNAVAILABLE,
            Error::SigningKeyUnreadable(_) | Error::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// Whether the status stands even for legacy `application/json` clients, which otherwise
    /// receive GraphQL request errors with a 200 (GraphQL-over-HTTP).
    pub fn is_transport_error(&self) -> bool {
        matches!(
            self,
            Error::BadRequest(_)
                | Error::PersistedQueryHashMismatch
                | Error::BatchTooLarge(_)
                | Error::RateLimited { .. }
                | Error::Overloaded
                | Error::CsrfPreflightRequired
                | Error::Timeout
                | Error::MethodNotAllowed(_)
                | Error::UnsupportedMediaType(_)
                | Error::NotAcceptable(_)
                | Error::PayloadTooLarge(_)
                | Error::Unavailable(_)
                | Error::SigningKeyUnreadable(_)
                | Error::BodyTimeout
                | Error::DatabaseDown { .. }
                | Error::StorageFull
                | Error::Internal(_)
        )
    }

    /// For `Retry-After`: when a refused request may be sent again.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Error::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            Error::Overloaded | Error::Unavailable(_) => Some(1),
            Error::DatabaseDown { retry_after_secs } => Some(*retry_after_secs),
            Error::StorageFull => Some(30),
            _ => None,
        }
    }

    /// The message a client may see (internal details masked).
    pub fn message(&self) -> String {
        match self {
            Error::NotFound(what) => format!("{what} not found"),
            Error::Invalid(fields) => format!("invalid input: {}", summary(fields)),
            Error::BadRequest(m)
            | Error::Unauthenticated(m)
            | Error::Forbidden(m)
            | Error::Unavailable(m)
            | Error::ForbiddenField(m)
            | Error::PersistedQueryRequired(m)
            | Error::PersistedQueryNotInManifest(m)
            | Error::QueryTooDeep(m)
            | Error::QueryTooComplex(m)
            | Error::TooManyAliases(m)
            | Error::TooManyTokens(m)
            | Error::BatchTooLarge(m)
            | Error::ParseFailed(m)
            | Error::ValidationFailed(m)
            | Error::MethodNotAllowed(m)
            | Error::UnsupportedMediaType(m)
            | Error::NotAcceptable(m)
            | Error::PayloadTooLarge(m) => m.clone(),
            // The exact message Apollo clients match on.
            Error::PersistedQueryNotFound => "PersistedQueryNotFound".into(),
            Error::PersistedQueryHashMismatch => {
                "provided sha does not match query".into()
            }
            Error::RateLimited { retry_after_secs } => {
                format!("too many requests; retry in {retry_after_secs} s")
            }
            Error::Overloaded => "the server is at capacity; retry in a moment".into(),
            Error::CsrfPreflightRequired => "this request has been blocked as a potential Cross-Site Request Forgery: a GET (or a POST with a form or text/plain body) must carry a non-empty `apollo-require-preflight` or `x-apollo-operation-name` header (any value, e.g. `apollo-require-preflight: true`); a POST may instead send `Content-Type: application/json`".into(),
            Error::IntrospectionDisabled => {
                "introspection is disabled for this client (it needs the `introspect` scope)".into()
            }
            Error::Timeout => "the operation took too long and was stopped".into(),
            Error::SigningKeyUnreadable(kid) => format!(
                "the token signing key {kid} cannot be decrypted: key_encryption_key is missing or is not the key it was encrypted with"
            ),
            Error::BodyTimeout => {
                "the request body did not arrive in time; send it again, faster".into()
            }
            Error::DatabaseDown { retry_after_secs } => format!(
                "the database is not reachable; retry in {retry_after_secs} s"
            ),
            Error::StorageFull => {
                "the database cannot store anything more now (its disk is full); try again later"
                    .into()
            }
            Error::Internal(_) => "internal server error".into(),
        }
    }

    /// The message for a client; internal errors are logged here with their detail.
    pub fn public_message(&self) -> String {
        if let Error::Internal(source) = self {
            tracing::error!(error = ?source, "internal error");
        }
        self.message()
    }
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error as Diesel};
        match e {
            // The server closed the connection (a restart): the pool replaces it; worth a retry.
            Diesel::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => {
                tracing::warn!(error = %e, "the database closed a connection");
                Error::Unavailable("the database connection was lost; try again shortly".into())
            }
            // SQLITE_FULL, or PostgreSQL's disk_full (53100): not ours to fix, and retryable.
            Diesel::DatabaseError(_, ref info) if is_disk_full(info.message()) => {
                tracing::warn!(error = %e, "the database's disk is full");
                Error::StorageFull
            }
            e => Error::internal(e),
        }
    }
}

fn is_disk_full(message: &str) -> bool {
    [
        "database or disk is full",
        "No space left on device",
        "could not extend file",
    ]
    .iter()
    .any(|m| message.contains(m))
}

impl From<diesel::r2d2::PoolError> for Error {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        tracing::warn!(error = %e, "database pool exhausted or unreachable");
        Error::Unavailable("the database is not reachable; try again shortly".into())
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::internal(e)
    }
}

impl From<Error> for async_graphql::Error {
    fn from(e: Error) -> Self {
        let code = e.code();
        let fields = match &e {
            Error::Invalid(fields) => Some(fields.clone()),
            _ => None,
        };
        async_graphql::Error::new(e.public_message()).extend_with(|_, ext| {
            ext.set("code", code);
            if let Some(fields) = &fields {
                let list: Vec<async_graphql::Value> = fields
                    .iter()
                    .map(|f| {
                        let mut m = async_graphql::indexmap::IndexMap::new();
                        m.insert(async_graphql::Name::new("field"), f.field.clone().into());
                        m.insert(
                            async_graphql::Name::new("message"),
                            f.message.clone().into(),
                        );
                        async_graphql::Value::Object(m)
                    })
                    .collect();
                ext.set("fields", async_graphql::Value::List(list));
            }
        })
    }
}

impl Error {
    /// A GraphQL response carrying only this error: `{"errors":[{message, extensions:{code}}]}`.
    pub fn graphql_body(&self) -> serde_json::Value {
        serde_json::json!({
            "errors": [{
                "message": self.public_message(),
                "extensions": { "code": self.code() },
            }]
        })
    }
}

/// The JSON body of a non-GraphQL error response.
#[derive(Serialize)]
struct ErrorBody {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<Vec<FieldError>>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code(),
            message: self.public_message(),
            fields: match &self {
                Error::Invalid(f) => Some(f.clone()),
                _ => None,
            },
        };
        let mut response = (self.status(), axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs() {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

/// For the command line, where the operator should see the whole cause.
impl From<Error> for anyhow::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Internal(source) => source,
            other => anyhow::anyhow!("{} ({})", other.message(), other.code()),
        }
    }
}
