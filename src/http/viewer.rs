//! Who is calling the non-GraphQL handlers (`/import`, `/export`): the same `Viewer` the
//! GraphQL endpoint builds from the same headers, so they are authenticated and scoped alike.

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use crate::app::App;
use crate::auth;
use crate::domain::Viewer;

/// The caller, or the 401 (with `WWW-Authenticate`) to answer.
pub async fn viewer(app: &App, headers: &HeaderMap) -> Result<Viewer, Response> {
    auth::authenticate(app, headers)
        .await
        .map_err(IntoResponse::into_response)
}
