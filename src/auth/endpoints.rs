//! The authorization server's HTTP endpoints: token (RFC 6749 §4.4), JWKS (RFC 7517),
//! metadata (RFC 8414) and OpenID Connect discovery, introspection (RFC 7662) and revocation
//! (RFC 7009).
//!
//! Errors here use the OAuth2 shape (`{"error": "...", "error_description": "..."}`, RFC 6749
//! §5.2), which OAuth2 client libraries parse; `error` is the stable code.

use std::collections::{BTreeSet, HashMap};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use super::audit;
use super::clients::{self, Client};
use super::tokens::{self, Claims};
use super::{parse_scopes, ADMIN, ALL_SCOPES};
use crate::app::App;
use crate::error::Error;

/// An RFC 6749 §5.2 error response.
#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
    /// Answer with `WWW-Authenticate: Basic` (the client tried HTTP Basic authentication).
    basic_challenge: bool,
    /// Seconds for `Retry-After`.
    retry_after: Option<u64>,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
            basic_challenge: false,
            retry_after: None,
        }
    }
    fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }
}

impl From<Error> for OAuthError {
    fn from(e: Error) -> Self {
        let status = e.status();
        let retry_after = e.retry_after_secs();
        let mut error = OAuthError::new(
            status,
            if status == StatusCode::SERVICE_UNAVAILABLE {
                "temporarily_unavailable"
            } else {
                "server_error"
            },
            e.message(),
        );
        error.retry_after = retry_after;
        error
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            no_store(),
            axum::Json(json!({ "error": self.error, "error_description": self.description })),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = if self.basic_challenge {
                "Basic realm=\"passerelle\""
            } else {
                "Bearer realm=\"passerelle\""
            };
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

fn no_store() -> [(header::HeaderName, &'static str); 2] {
    [
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
    ]
}

/// An `application/x-www-form-urlencoded` body; a repeated parameter is refused (RFC 6749 §3.2).
fn form(headers: &HeaderMap, body: &Bytes) -> Result<HashMap<String, String>, OAuthError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let mut params = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if params.insert(k.to_string(), v.to_string()).is_some() {
            return Err(OAuthError::invalid_request(format!(
                "the parameter `{k}` is repeated"
            )));
        }
    }
    Ok(params)
}

fn decode_component(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}

/// One call to an OAuth endpoint, for the audit log: who asked (the client id claimed, then the
/// client authenticated), what it concerned and how it ended. Never a secret or a token.
struct AuditNote {
    operation: &'static str,
    client_id: Option<String>,
    partner: Option<String>,
    /// The partners whose data the answer carried (introspection of an active token).
    partners: BTreeSet<String>,
}

impl AuditNote {
    fn new(operation: &'static str) -> Self {
        AuditNote {
            operation,
            client_id: None,
            partner: None,
            partners: BTreeSet::new(),
        }
    }

    /// A client id as claimed by the caller, as [`claimed_id`] keeps it.
    fn claimed(&mut self, id: &str) {
        self.client_id = Some(claimed_id(id).to_owned());
    }

    fn authenticated(&mut self, client: &Client) {
        self.client_id = Some(client.id.clone());
        self.partner = Some(client.partner.clone());
    }

    /// Appends the entry; when that fails the call fails (nothing is answered unaudited).
    async fn record<T>(
        self,
        app: &App,
        result: Result<T, OAuthError>,
        outcome: impl FnOnce(&T) -> String,
    ) -> Result<T, OAuthError> {
        let outcome = match &result {
            Ok(v) => outcome(v),
            Err(e) => format!("refused: {}", e.error),
        };
        let viewer = crate::domain::Viewer {
            client_id: self.client_id,
            partner: self.partner,
            ..crate::domain::Viewer::anonymous()
        };
        let (operation, partners) = (self.operation, self.partners);
        app.store
            .run(move |conn| audit::record(conn, &viewer, operation, &partners, &outcome))
            .await?;
        result
    }
}

/// A client id as claimed by a caller when it looks like an id, else `(malformed)`: so no pasted
/// secret or other free text reaches the audit log, and no long string a lockout bucket's key.
fn claimed_id(id: &str) -> &str {
    let plausible = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if plausible {
        id
    } else {
        "(malformed)"
    }
}

/// Authenticates the calling client by `client_secret_basic` or `client_secret_post`
/// (RFC 6749 §2.3.1; using both at once is refused).
async fn client(
    app: &App,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    note: &mut AuditNote,
) -> Result<Client, OAuthError> {
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => {
            let v = v.to_str().unwrap_or_default();
            let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(OAuthError {
                    basic_challenge: true,
                    ..OAuthError::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid_client",
                        "authenticate the client with HTTP Basic or with client_id and client_secret in the body",
                    )
                });
            }
            let decoded = STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| {
                    s.split_once(':')
                        .map(|(id, secret)| (decode_component(id), decode_component(secret)))
                });
            match decoded {
                Some(pair) => Some(pair),
                None => {
                    return Err(OAuthError {
                        basic_challenge: true,
                        ..OAuthError::new(
                            StatusCode::UNAUTHORIZED,
                            "invalid_client",
                            "the Basic credentials are malformed",
                        )
                    })
                }
            }
        }
    };
    let posted = match (params.get("client_id"), params.get("client_secret")) {
        (Some(id), Some(secret)) => Some((id.clone(), secret.clone())),
        _ => None,
    };
    let used_basic = basic.is_some();
    let (id, secret) = match (basic, posted) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not two",
            ))
        }
        (Some(pair), None) | (None, Some(pair)) => {
            note.claimed(&pair.0);
            pair
        }
        (None, None) => {
            return Err(OAuthError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication is required",
            ))
        }
    };
    // PostgreSQL cannot compare text holding NUL: refused as malformed, on both backends.
    if id.contains('\0') || secret.contains('\0') {
        return Err(OAuthError::invalid_request(
            "client credentials must not contain a NUL character",
        ));
    }
    // Before anything costs: a client id with too many failures is answered at once.
    let attempt = app
        .client_lockout
        .attempt(claimed_id(&id))
        .await
        .map_err(|secs| OAuthError {
            retry_after: Some(secs),
            ..OAuthError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                format!("too many failed authentications for this client id; retry in {secs} s"),
            )
        })?;
    let checked = async {
        let stored = app
            .store
            .run(move |conn| clients::with_secret_hash(conn, &id))
            .await?;
        app.secret_checks.authenticate(stored, secret).await
    }
    .await;
    let found = match checked {
        Ok(found) => found,
        Err(e) => {
            app.client_lockout.give_back(attempt);
            return Err(e.into());
        }
    };
    if let Some(client) = &found {
        note.authenticated(client);
        app.client_lockout.give_back(attempt);
    }
    found.ok_or(OAuthError {
        basic_challenge: used_basic,
        ..OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client, wrong secret or revoked client",
        )
    })
}

/// `POST /oauth/token`: the client credentials grant.
/// Audited: issued (with the scopes granted) or refused (with the error code).
pub async fn token(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let mut note = AuditNote::new("POST /oauth/token");
    let result = issue(&app, &headers, &body, &mut note).await;
    let result = note
        .record(&app, result, |v| {
            format!("issued: {}", v["scope"].as_str().unwrap_or_default())
        })
        .await;
    match result {
        Ok(v) => (StatusCode::OK, no_store(), axum::Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn issue(
    app: &App,
    headers: &HeaderMap,
    body: &Bytes,
    note: &mut AuditNote,
) -> Result<Value, OAuthError> {
    let params = form(headers, body)?;
    let client = client(app, headers, &params, note).await?;
    match params.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(other) => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant_type `{other}` is not supported; use client_credentials"),
            ))
        }
        None => return Err(OAuthError::invalid_request("grant_type is missing")),
    }
    let scopes = match params.get("scope") {
        // No scope asked for: everything the client holds (RFC 6749 §3.3 lets us choose).
        None => client.scopes.clone(),
        Some(raw) => {
            let asked = parse_scopes(raw)
                .map_err(|m| OAuthError::new(StatusCode::BAD_REQUEST, "invalid_scope", m))?;
            if let Some(extra) = asked.difference(&client.scopes).next() {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    format!("this client may not ask for the scope `{extra}`"),
                ));
            }
            asked
        }
    };
    let issued = tokens::issue(&app.config, &app.keys, &client, &scopes).await?;
    Ok(json!({
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": issued.scope,
    }))
}

/// `GET /.well-known/jwks.json`: the keys that verify Passerelle's tokens.
pub async fn jwks(State(app): State<App>) -> Response {
    match app.keys.jwks().await {
        Ok(v) => (
            [(header::CACHE_CONTROL, "public, max-age=60")],
            axum::Json(v),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// What both discovery documents say: the issuer, the endpoints under `public_url`, and only
/// what the server does (the client credentials grant, no authorization endpoint).
fn discovery(app: &App) -> serde_json::Map<String, Value> {
    let base = app.config.public_url();
    let auth_methods = json!(["client_secret_basic", "client_secret_post"]);
    let v = json!({
        "issuer": app.config.token_issuer,
        "token_endpoint": format!("{base}/oauth/token"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "introspection_endpoint": format!("{base}/oauth/introspect"),
        "revocation_endpoint": format!("{base}/oauth/revoke"),
        "grant_types_supported": ["client_credentials"],
        // No authorization endpoint: no response type is supported.
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "scopes_supported": ALL_SCOPES,
    });
    match v {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
pub async fn metadata(State(app): State<App>) -> Response {
    axum::Json(Value::Object(discovery(&app))).into_response()
}

/// `GET /.well-known/openid-configuration` (OpenID Connect Discovery 1.0), for clients that
/// discover a server this way. Passerelle issues access tokens only, never ID tokens; the
/// fields OIDC requires say what is true of them: every token's `sub` is the client id
/// (`public`), and its signature uses the JWKS keys' algorithms.
pub async fn openid_configuration(State(app): State<App>) -> Response {
    let algorithms = match app.keys.algorithms().await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let mut v = discovery(&app);
    v.insert("subject_types_supported".into(), json!(["public"]));
    v.insert(
        "id_token_signing_alg_values_supported".into(),
        json!(algorithms),
    );
    v.insert("claims_supported".into(), json!(CLAIMS));
    axum::Json(Value::Object(v)).into_response()
}

/// The claims of Passerelle's access tokens (`tokens::Claims`).
const CLAIMS: [&str; 10] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "scope",
    "client_id",
    "partner",
];

/// The claims of a token that verifies and is still valid, when `caller` may see them: its own
/// tokens, or any token for an `admin` client.
async fn readable_claims(
    app: &App,
    caller: &Client,
    token: &str,
) -> Result<Option<Claims>, OAuthError> {
    let Ok(claims) = tokens::verify_jwt(&app.config, &app.keys, token).await? else {
        return Ok(None);
    };
    if claims.client_id != caller.id && !caller.scopes.contains(ADMIN) {
        return Ok(None);
    }
    let checked = claims.clone();
    let valid = app
        .store
        .run(move |conn| tokens::still_valid(conn, &checked))
        .await?;
    Ok(valid.map(|_| claims))
}

/// `POST /oauth/introspect` (RFC 7662): any authenticated client may introspect its own
/// tokens; an `admin` client may introspect every token. Anything else is `active: false`.
/// Audited: which client asked, and the token's partner when the answer is active.
pub async fn introspect(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let mut note = AuditNote::new("POST /oauth/introspect");
    let result = async {
        let params = form(&headers, &body)?;
        let caller = client(&app, &headers, &params, &mut note).await?;
        let token = params
            .get("token")
            .ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
        Ok::<_, OAuthError>(match readable_claims(&app, &caller, token).await? {
            None => json!({ "active": false }),
            Some(c) => {
                note.partners.insert(c.partner.clone());
                json!({
                "active": true,
                "token_type": "Bearer",
                "scope": c.scope,
                "client_id": c.client_id,
                "sub": c.sub,
                "aud": c.aud,
                "iss": c.iss,
                "exp": c.exp,
                "iat": c.iat,
                "nbf": c.nbf,
                "jti": c.jti,
                "partner": c.partner,
                })
            }
        })
    }
    .await;
    let result = note
        .record(&app, result, |v| {
            if v["active"] == true {
                "active"
            } else {
                "inactive"
            }
            .to_owned()
        })
        .await;
    match result {
        Ok(v) => (StatusCode::OK, no_store(), axum::Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /oauth/revoke` (RFC 7009): a client revokes one of its own access tokens. Unknown,
/// invalid or foreign tokens are answered 200 as the RFC asks, and left alone. Audited: which
/// client asked, and whether a token was revoked.
pub async fn revoke(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let mut note = AuditNote::new("POST /oauth/revoke");
    let result = async {
        let params = form(&headers, &body)?;
        let caller = client(&app, &headers, &params, &mut note).await?;
        let token = params
            .get("token")
            .ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
        if let Ok(claims) = tokens::verify_jwt(&app.config, &app.keys, token).await? {
            if claims.client_id == caller.id {
                app.store
                    .run(move |conn| tokens::revoke(conn, &claims))
                    .await?;
                app.sessions.changed().await;
                return Ok(true);
            }
        }
        Ok::<_, OAuthError>(false)
    }
    .await;
    let result = note
        .record(&app, result, |revoked| {
            if *revoked { "revoked" } else { "ignored" }.to_owned()
        })
        .await;
    match result {
        Ok(_) => (StatusCode::OK, no_store()).into_response(),
        Err(e) => e.into_response(),
    }
}
