//! The GraphQL schema: one query object per domain concept, merged into the root.
//!
//! Resolvers reach storage only through `RequestContext::read` and the per-request DataLoaders,
//! both of which carry the viewer's row filter.

pub mod actions;
pub mod actors;
pub mod audit;
pub mod common;
pub mod context;
pub mod federation;
pub mod ids;
pub mod introspection;
pub mod leaves;
pub mod loaders;
pub mod mutations;
pub mod node;
pub mod outcomes;
pub mod pagination;
pub mod partners;
pub mod partnerships;
pub mod prefetch;
pub mod research;

use async_graphql::{Context, EmptySubscription, MergedObject, Object, Schema};

pub use context::RequestContext;
pub use mutations::Mutation;
pub use pagination::PageLimits;

use crate::config::Config;

/// What the caller is, as Passerelle understood its token.
pub struct ViewerInfo {
    partner: Option<String>,
    scopes: Vec<String>,
}

#[Object]
impl ViewerInfo {
    /// The partner you act for; null when anonymous.
    async fn partner(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<partners::Partner>> {
        match &self.partner {
            // A research client acts for its organisation, which is not a partner.
            Some(p) if p.starts_with(crate::auth::clients::RESEARCH_PRINCIPAL) => Ok(None),
            Some(p) => Ok(Some(partners::owner(ctx, p).await?)),
            None => Ok(None),
        }
    }
    async fn scopes(&self) -> &[String] {
        &self.scopes
    }
}

#[derive(Default)]
pub struct ViewerQueries;

#[Object]
impl ViewerQueries {
    /// Who you are, as far as Passerelle is concerned.
    async fn viewer(&self, ctx: &Context<'_>) -> async_graphql::Result<ViewerInfo> {
        let v = &context::request(ctx)?.viewer;
        Ok(ViewerInfo {
            partner: v.partner.clone(),
            scopes: v.scopes.iter().cloned().collect(),
        })
    }
}

#[derive(MergedObject, Default)]
pub struct Query(
    partners::PartnerQueries,
    actors::ActorQueries,
    actions::ActionQueries,
    outcomes::OutcomeQueries,
    partnerships::PartnershipQueries,
    node::NodeQueries,
    ViewerQueries,
    federation::EntityQueries,
    audit::AuditQueries,
    research::ResearchQueries,
);

pub type PasserelleSchema = Schema<Query, Mutation, EmptySubscription>;

/// Builds the schema with the limits from `config`. It has no async-graphql extensions:
/// [`leaves::LeafList`] and [`leaves::Nodes`] build some lists' objects without resolving their
/// fields one by one, which an extension hooking field resolution would not see.
pub fn build_schema(config: &Config) -> PasserelleSchema {
    Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .enable_federation()
        .limit_depth(config.max_query_depth)
        .limit_complexity(config.max_query_complexity)
        .data(research::ResearchSettings {
            min_cell: config.research_min_cell,
        })
        .finish()
}

/// The schema built twice: with the configured limits for every document that reads data, and
/// with a depth limit suited to introspection for documents that read nothing but the schema
/// (see [`introspection`]): graphql-js's standard introspection query is deeper than any
/// data query needs, and refusing it breaks GraphiQL, code generators and schema-driven tools.
pub struct Schemas {
    data: PasserelleSchema,
    introspection: PasserelleSchema,
}

impl Schemas {
    pub fn new(config: &Config) -> Self {
        let introspection = Config {
            max_query_depth: config
                .max_query_depth
                .max(introspection::INTROSPECTION_MAX_DEPTH),
            ..config.clone()
        };
        Schemas {
            data: build_schema(config),
            introspection: build_schema(&introspection),
        }
    }

    /// Runs `request` on the instance its document calls for, after refusing federation
    /// representations no entity resolver takes.
    pub async fn execute(&self, mut request: async_graphql::Request) -> async_graphql::Response {
        // Out of the request while its document is borrowed, then back: not copied.
        let variables = std::mem::take(&mut request.variables);
        let (only_schema, invalid) = match request.parsed_query() {
            Ok(doc) => (
                introspection::introspection_only(doc),
                federation::invalid_representation(doc, &variables),
            ),
            Err(_) => (false, None),
        };
        request.variables = variables;
        if let Some(error) = invalid {
            return async_graphql::Response::from_errors(vec![error]);
        }
        let schema = if only_schema {
            &self.introspection
        } else {
            &self.data
        };
        schema.execute(request).await
    }

    /// The schema with the configured limits.
    pub fn data(&self) -> &PasserelleSchema {
        &self.data
    }
}

/// The SDL of the schema, as checked in at `schema.graphql`.
pub fn sdl() -> String {
    build_schema(&Config::default()).sdl()
}
