//! OAuth2 scoping: Passerelle as an authorization server for partner clients (client
//! credentials grant, Ed25519-signed JWT access tokens, JWKS, metadata, introspection,
//! revocation), and the `Viewer` every request is answered for.
//!
//! - [`clients`]: registered clients, Argon2id-hashed secrets.
//! - [`lockout`]: failed client authentications, limited per client id.
//! - [`keys`]: the signing keys, persisted and rotated without downtime.
//! - [`tokens`]: issuing and verifying access tokens.
//! - [`sessions`]: sessions checked recently, until a revocation or a sharing change anywhere.
//! - [`sharing`]: data-sharing agreements between partners, which feed `Viewer::shared_by`.
//! - [`audit`]: the append-only record of authenticated requests.
//! - [`external`]: verifying an external identity provider's JWTs against its JWKS.
//! - [`endpoints`]: the HTTP handlers under `/oauth/` and `/.well-known/`.

pub mod audit;
pub mod clients;
pub mod endpoints;
pub mod external;
pub mod keys;
pub mod lockout;
pub mod sessions;
pub mod sharing;
pub mod tokens;

use std::collections::BTreeSet;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::App;
use crate::domain::Viewer;
use crate::error::Error;
use tokens::Rejection;

pub type Scopes = BTreeSet<String>;

/// Partner dashboards: read the rows the viewer's partner may see (its own, and `partners`
/// rows of partners sharing with it). Without it a token sees public rows only.
pub const READ: &str = "read";
/// Sensitive fields (free-text notes, small disaggregation cells).
pub const READ_SENSITIVE: &str = "read:sensitive";
/// Writes on the partner's own records.
pub const WRITE: &str = "write";
/// Cross-programme aggregates with small-cell suppression.
pub const RESEARCH: &str = "research";
/// Client management and the audit log.
pub const ADMIN: &str = "admin";
/// GraphQL introspection.
pub const INTROSPECT: &str = "introspect";
/// Every scope Passerelle knows.
pub const ALL_SCOPES: [&str; 6] = [READ, READ_SENSITIVE, WRITE, RESEARCH, ADMIN, INTROSPECT];

/// Parses a space-separated scope list, refusing unknown scopes.
pub fn parse_scopes(raw: &str) -> std::result::Result<Scopes, String> {
    let mut scopes = Scopes::new();
    for s in raw.split_whitespace() {
        if !ALL_SCOPES.contains(&s) {
            return Err(format!(
                "unknown scope `{s}`; known scopes: {}",
                ALL_SCOPES.join(" ")
            ));
        }
        scopes.insert(s.to_owned());
    }
    Ok(scopes)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Why a request's credentials were refused: a 401 with an RFC 6750 `WWW-Authenticate`.
#[derive(Debug)]
pub enum AuthError {
    /// The `Authorization` header is not `Bearer <token>` (RFC 6750 `invalid_request`).
    BadHeader,
    /// The token is expired, revoked, forged or not for us (`invalid_token`).
    Token(Rejection),
    /// Anything else (database down...): answered with our usual error.
    Other(Error),
}

impl From<Error> for AuthError {
    fn from(e: Error) -> Self {
        AuthError::Other(e)
    }
}

impl AuthError {
    /// The stable code in the body.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::BadHeader => "INVALID_REQUEST",
            AuthError::Token(_) => "INVALID_TOKEN",
            AuthError::Other(e) => e.code(),
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let code = self.code();
        let (error, description) = match self {
            AuthError::Other(e) => return e.into_response(),
            AuthError::BadHeader => (
                "invalid_request",
                "the Authorization header must be `Bearer <token>`",
            ),
            AuthError::Token(r) => ("invalid_token", r.description()),
        };
        let challenge = format!(
            "Bearer realm=\"passerelle\", error=\"{error}\", error_description=\"{description}\""
        );
        let mut response = (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "code": code, "message": description })),
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        response
    }
}

/// The bearer token of a request: `Ok(None)` when there is no `Authorization` header.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| AuthError::BadHeader)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::BadHeader)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::BadHeader);
    }
    Ok(Some(token))
}

/// The request's `Viewer`: anonymous without a token; otherwise the token's client, partner and
/// scopes (narrowed to what the client holds now), with the partners sharing with it today.
pub async fn authenticate(app: &App, headers: &HeaderMap) -> Result<Viewer, AuthError> {
    let Some(token) = bearer(headers)? else {
        return Ok(Viewer::anonymous());
    };
    if let Some(external) = &app.external {
        let identity = match external.verify(token).await? {
            Ok(i) => i,
            Err(r) => return Err(AuthError::Token(r)),
        };
        let partner = identity.partner.clone();
        let shared_by = match partner {
            Some(p) => {
                app.store
                    .run(move |conn| sharing::grantors_for(conn, &p, &sharing::today()))
                    .await?
            }
            None => Default::default(),
        };
        return Ok(Viewer {
            partner: identity.partner,
            scopes: identity.scopes,
            client_id: identity.client_id,
            shared_by,
        });
    }
    let claims = match app
        .verified_tokens
        .verify(&app.config, &app.keys, token)
        .await?
    {
        Ok(c) => c,
        Err(r) => return Err(AuthError::Token(r)),
    };
    let day = sharing::today();
    let (client, shared_by) = match app.sessions.get(&claims.jti, &day).await {
        Some(s) if s.client.id == claims.client_id && s.client.partner == claims.partner => {
            (s.client.clone(), s.shared_by.clone())
        }
        _ => {
            let ticket = app.sessions.ticket();
            let (id, jti, d) = (claims.client_id.clone(), claims.jti.clone(), day.clone());
            // The client still active, the token not revoked, and who shares with the client's
            // partner today: one statement.
            let session = app
                .store
                .run(move |conn| clients::session(conn, &id, &jti, &d))
                .await?;
            let Some((client, shared_by)) =
                session.filter(|(client, _)| client.partner == claims.partner)
            else {
                return Err(AuthError::Token(Rejection::Revoked));
            };
            app.sessions
                .put(
                    ticket,
                    claims.jti.clone(),
                    day,
                    client.clone(),
                    shared_by.clone(),
                )
                .await;
            (client, shared_by)
        }
    };
    let scopes = claims
        .scopes()
        .intersection(&client.scopes)
        .cloned()
        .collect();
    Ok(Viewer {
        partner: Some(client.partner),
        scopes,
        client_id: Some(client.id),
        shared_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_checked() {
        assert_eq!(
            parse_scopes(" read  read:sensitive ").unwrap(),
            ["read", "read:sensitive"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
        assert!(parse_scopes("read superuser")
            .unwrap_err()
            .contains("superuser"));
    }

    #[test]
    fn bearer_header_is_parsed_strictly() {
        let mut h = HeaderMap::new();
        assert!(matches!(bearer(&h), Ok(None)));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert!(matches!(bearer(&h), Ok(Some("abc"))));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(matches!(bearer(&h), Err(AuthError::BadHeader)));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert!(matches!(bearer(&h), Err(AuthError::BadHeader)));
    }
}
