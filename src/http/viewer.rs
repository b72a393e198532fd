//! THE seam where non-GraphQL handlers (`/import`, `/export`) learn who is calling.
//!
//! Until OAuth2 token auth lands, every request is anonymous, exactly as `/graphql` is today
//! (`graphql::execute` builds `Viewer::anonymous()`). When auth lands, this function must return
//! the same `Viewer` the GraphQL endpoint builds from the same headers, so imports and exports
//! are authenticated and scoped the same way as queries and mutations.

use axum::http::HeaderMap;

use crate::app::App;
use crate::domain::Viewer;
use crate::error::Result;

pub async fn viewer(_app: &App, _headers: &HeaderMap) -> Result<Viewer> {
    Ok(Viewer::anonymous())
}
