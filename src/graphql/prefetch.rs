//! Loads the relations a page of actions will ask for in one go, before its nodes resolve.
//!
//! DataLoaders batch the keys that arrive within a short window, which is enough in general but
//! depends on timing. For the dashboard shape (a page of actions with their outcomes, partners,
//! partnerships, parent and owner) we look ahead at the selection, read every relation for the
//! whole page in one connection checkout, and feed the results into the request's loaders, so
//! the statements per page are fixed whatever the page size or the machine's load. Every read
//! here is the same visibility-filtered query the loaders themselves use.

use std::collections::HashMap;

use async_graphql::Context;

use super::context::RequestContext;
use crate::domain;
use crate::error::Result;
use crate::storage::queries::{self, PartnershipQuery};

fn selects(ctx: &Context<'_>, field: &str) -> bool {
    let look = ctx.look_ahead();
    look.field("nodes").field(field).exists()
        || look.field("edges").field("node").field(field).exists()
}

fn nested(ctx: &Context<'_>, path: &[&str]) -> bool {
    let look = ctx.look_ahead();
    let mut a = look.field("nodes");
    let mut b = look.field("edges").field("node");
    for p in path {
        a = a.field(p);
        b = b.field(p);
    }
    a.exists() || b.exists()
}

#[derive(Default)]
struct Plan {
    outcomes: bool,
    partnerships: bool,
    member_actors: bool,
    sub_actions: bool,
    parents: bool,
    owners: bool,
}

#[derive(Default)]
struct Loaded {
    outcomes: Vec<domain::Outcome>,
    partnerships: Vec<domain::Partnership>,
    actors: Vec<domain::Actor>,
    /// Every member id asked for, so those the viewer may not see are remembered as such.
    actor_ids: Vec<String>,
    sub_actions: Vec<domain::Action>,
    parents: Vec<domain::Action>,
    owners: Vec<domain::Partner>,
}

fn group<T: Clone>(
    ids: &[String],
    items: &[T],
    keys_of: impl Fn(&T) -> Vec<String>,
) -> HashMap<String, Vec<T>> {
    let mut map: HashMap<String, Vec<T>> = ids.iter().map(|id| (id.clone(), Vec::new())).collect();
    for item in items {
        for key in keys_of(item) {
            if let Some(list) = map.get_mut(&key) {
                list.push(item.clone());
            }
        }
    }
    map
}

/// Prefetches what `ctx`'s selection will ask of these actions.
pub async fn actions(
    ctx: &Context<'_>,
    rc: &RequestContext,
    page: &[domain::Action],
) -> Result<()> {
    if page.is_empty() {
        return Ok(());
    }
    let plan = Plan {
        outcomes: selects(ctx, "outcomes"),
        partnerships: selects(ctx, "partnerships") || selects(ctx, "partners"),
        member_actors: nested(ctx, &["partners", "actor"])
            || nested(ctx, &["partnerships", "members", "actor"]),
        sub_actions: selects(ctx, "subActions"),
        parents: selects(ctx, "parent"),
        owners: selects(ctx, "owner"),
    };
    let ids: Vec<String> = page.iter().map(|a| a.id.clone()).collect();
    let parent_ids: Vec<String> = page
        .iter()
        .filter_map(|a| a.parent_action_id.clone())
        .collect();
    let owner_ids: Vec<String> = page.iter().map(|a| a.owner.clone()).collect();
    let ids_for_read = ids.clone();
    let detail = rc.detail;
    let loaded = rc
        .read(move |c, rf| {
            let mut l = Loaded::default();
            if plan.outcomes {
                l.outcomes = queries::outcomes_by_actions(c, rf, detail, &ids_for_read)?;
            }
            if plan.partnerships {
                let q = PartnershipQuery {
                    action_ids: ids_for_read.clone(),
                    ..Default::default()
                };
                l.partnerships = queries::partnerships_for(c, rf, &q)?;
                if plan.member_actors {
                    let mut actor_ids: Vec<String> = l
                        .partnerships
                        .iter()
                        .flat_map(|p| p.members.iter().map(|m| m.actor_id.clone()))
                        .collect();
                    actor_ids.sort();
                    actor_ids.dedup();
                    if !actor_ids.is_empty() {
                        l.actors = queries::actors_by_ids(c, rf, &actor_ids)?;
                    }
                    l.actor_ids = actor_ids;
                }
            }
            if plan.sub_actions {
                l.sub_actions = queries::actions_by_parents(c, rf, detail, &ids_for_read)?;
            }
            if plan.parents && !parent_ids.is_empty() {
                l.parents = queries::actions_by_ids(c, rf, detail, &parent_ids)?;
            }
            if plan.owners {
                l.owners = queries::partners_by_ids(c, &owner_ids)?;
            }
            Ok(l)
        })
        .await?;
    // What the prefetch read counts as read, for the audit log, like what loaders read.
    rc.owners.note(&loaded.outcomes);
    rc.owners.note(&loaded.partnerships);
    rc.owners.note(&loaded.actors);
    rc.owners.note(&loaded.sub_actions);
    rc.owners.note(&loaded.parents);
    let loaders = &rc.loaders;
    if !loaded.outcomes.is_empty() || selects(ctx, "outcomes") {
        loaders
            .outcomes_of_action
            .feed_many(group(&ids, &loaded.outcomes, |o| vec![o.action_id.clone()]))
            .await;
    }
    if selects(ctx, "partnerships") || selects(ctx, "partners") {
        loaders
            .partnerships_of_action
            .feed_many(group(&ids, &loaded.partnerships, |p| {
                p.action_id.clone().into_iter().collect()
            }))
            .await;
    }
    let mut actors: HashMap<String, Option<domain::Actor>> =
        loaded.actor_ids.into_iter().map(|id| (id, None)).collect();
    for a in loaded.actors {
        actors.insert(a.id.clone(), Some(a));
    }
    loaders.actor.feed_many(actors).await;
    if selects(ctx, "subActions") {
        loaders
            .sub_actions
            .feed_many(group(&ids, &loaded.sub_actions, |a| {
                a.parent_action_id.clone().into_iter().collect()
            }))
            .await;
    }
    loaders
        .action
        .feed_many(loaded.parents.into_iter().map(|a| (a.id.clone(), a)))
        .await;
    loaders
        .partner
        .feed_many(loaded.owners.into_iter().map(|p| (p.id.clone(), p)))
        .await;
    Ok(())
}
