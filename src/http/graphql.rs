//! The GraphQL endpoint: builds the request's `Viewer` and context, then runs the schema.

use std::any::Any;

use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::app::App;
use crate::domain::Viewer;
use crate::graphql::RequestContext;

async fn execute(app: &App, request: async_graphql::Request) -> GraphQLResponse {
    let viewer = Viewer::anonymous();
    let context = RequestContext::new(viewer, app.store.clone(), app.page_limits());
    app.schema.execute(request.data(context)).await.into()
}

pub async fn post(State(app): State<App>, request: GraphQLRequest) -> GraphQLResponse {
    execute(&app, request.into_inner()).await
}

pub async fn get(State(app): State<App>, request: GraphQLRequest) -> GraphQLResponse {
    execute(&app, request.into_inner()).await
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
