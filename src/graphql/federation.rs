//! Apollo Federation v2: Passerelle as a subgraph. Actors, actions, outcomes, partnerships and
//! partners are entities keyed by their global `id`. `_entities` resolves representations
//! concurrently and each resolver goes through the request's DataLoaders, so a batch of
//! representations costs one query per type, filtered by the caller's row filter exactly like
//! every other read: an entity the caller may not see resolves to null.

use async_graphql::{Context, Object, ID};

use super::actions::Action;
use super::actors::Actor;
use super::context::request;
use super::ids::{self, Kind};
use super::outcomes::Outcome;
use super::partners::Partner;
use super::partnerships::Partnership;

/// The local id behind a representation's global id, or `None` (a null entity) when it is not
/// an id of `kind`.
fn local(kind: Kind, id: &ID) -> Option<String> {
    match ids::decode(id) {
        Some((k, local)) if k == kind => Some(local),
        _ => None,
    }
}

#[derive(Default)]
pub struct EntityQueries;

#[Object]
impl EntityQueries {
    #[graphql(entity)]
    async fn find_actor_by_id(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<Actor>> {
        let Some(local) = local(Kind::Actor, &id) else {
            return Ok(None);
        };
        Ok(request(ctx)?
            .loaders
            .actor
            .load_one(local)
            .await?
            .flatten()
            .map(Actor))
    }

    #[graphql(entity)]
    async fn find_action_by_id(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<Action>> {
        let Some(local) = local(Kind::Action, &id) else {
            return Ok(None);
        };
        Ok(request(ctx)?
            .loaders
            .action
            .load_one(local)
            .await?
            .map(Action))
    }

    #[graphql(entity)]
    async fn find_outcome_by_id(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<Outcome>> {
        let Some(local) = local(Kind::Outcome, &id) else {
            return Ok(None);
        };
        Ok(request(ctx)?
            .loaders
            .outcome
            .load_one(local)
            .await?
            .map(Outcome))
    }

    #[graphql(entity)]
    async fn find_partnership_by_id(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<Partnership>> {
        let Some(local) = local(Kind::Partnership, &id) else {
            return Ok(None);
        };
        Ok(request(ctx)?
            .loaders
            .partnership
            .load_one(local)
            .await?
            .map(Partnership))
    }

    #[graphql(entity)]
    async fn find_partner_by_id(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<Partner>> {
        let Some(local) = local(Kind::Partner, &id) else {
            return Ok(None);
        };
        Ok(request(ctx)?
            .loaders
            .partner
            .load_one(local)
            .await?
            .map(Partner))
    }
}
