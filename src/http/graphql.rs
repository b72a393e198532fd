//! The GraphQL endpoint: builds the request's `Viewer` and context, then runs the schema.

use std::any::Any;

use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::app::App;
use crate::auth;
use crate::graphql::RequestContext;

async fn execute(app: &App, headers: &HeaderMap, request: async_graphql::Request) -> Response {
    let viewer = match auth::authenticate(app, headers).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let audit = auth::audit::Pending::new(&viewer, &request);
    let context = RequestContext::new(viewer, app.store.clone(), app.page_limits());
    let owners = context.owners.clone();
    let response = app.schema.execute(request.data(context)).await;
    if let Err(e) = audit.finish(app, &owners, &response).await {
        return e.into_response();
    }
    GraphQLResponse::from(response).into_response()
}

pub async fn post(State(app): State<App>, headers: HeaderMap, request: GraphQLRequest) -> Response {
    execute(&app, &headers, request.into_inner()).await
}

pub async fn get(State(app): State<App>, headers: HeaderMap, request: GraphQLRequest) -> Response {
    execute(&app, &headers, request.into_inner()).await
}

/// An in-browser IDE for exploring the schema.
pub async fn graphiql() -> impl IntoResponse {
    Html(GraphiQLSource::build().endpoint("/graphql").finish())
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
