//! `node(id:)` and `nodes(ids:)`: refetch any object by its global id, through the same loaders
//! (and so the same visibility) as every other path.

use async_graphql::{Context, Interface, Object, ID};

use super::actions::Action;
use super::actors::Actor;
use super::context::request;
use super::ids::{self, Kind};
use super::outcomes::Outcome;
use super::partners::Partner;
use super::partnerships::Partnership;

/// An object with a global id.
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID"))]
pub enum Node {
    Partner(Partner),
    Actor(Actor),
    Action(Action),
    Outcome(Outcome),
    Partnership(Partnership),
}

async fn load(ctx: &Context<'_>, id: &ID) -> async_graphql::Result<Option<Node>> {
    let rc = request(ctx)?;
    let Some((kind, local)) = ids::decode(id) else {
        return Ok(None);
    };
    let l = &rc.loaders;
    Ok(match kind {
        Kind::Partner => l
            .partner
            .load_one(local)
            .await?
            .map(|v| Node::Partner(Partner(v))),
        Kind::Actor => l
            .actor
            .load_one(local)
            .await?
            .flatten()
            .map(|v| Node::Actor(Actor(v))),
        Kind::Action => l
            .action
            .load_one(local)
            .await?
            .map(|v| Node::Action(Action(v))),
        Kind::Outcome => l
            .outcome
            .load_one(local)
            .await?
            .map(|v| Node::Outcome(Outcome(v))),
        Kind::Partnership => l
            .partnership
            .load_one(local)
            .await?
            .map(|v| Node::Partnership(Partnership(v))),
    })
}

#[derive(Default)]
pub struct NodeQueries;

#[Object]
impl NodeQueries {
    /// Any object by its global id; null if it does not exist or you may not see it.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Node>> {
        load(ctx, &id).await
    }

    /// Several objects by global id, in the order asked (at most 100).
    #[graphql(complexity = "ids.len() * child_complexity")]
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        ids: Vec<ID>,
    ) -> async_graphql::Result<Vec<Option<Node>>> {
        if ids.len() > 100 {
            return Err(
                crate::error::Error::Invalid(vec![crate::error::FieldError::new(
                    "ids",
                    "at most 100 ids",
                )])
                .into(),
            );
        }
        let loads = ids.iter().map(|id| load(ctx, id));
        futures_join_all(loads).await.into_iter().collect()
    }
}

/// Awaits futures together so the loaders see all their keys in one batch.
async fn futures_join_all<F: std::future::Future>(
    futs: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<_> = futs.into_iter().collect();
    let mut out = Vec::with_capacity(handles.len());
    let joined = async_graphql::futures_util::future::join_all(handles).await;
    out.extend(joined);
    out
}
