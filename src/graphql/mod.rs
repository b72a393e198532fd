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

/// The SDL of the schema, as checked in at `schema.graphql`.
pub fn sdl() -> String {
    build_schema(&Config::default()).sdl()
}
