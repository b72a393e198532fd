//! Loads the relations a page of actions will ask for in one go, before its nodes resolve.
//!
//! DataLoaders batch the keys that arrive within a short window, which is enough in general but
//! depends on timing. For the dashboard shape (a page of actions with their outcomes, partners,
//! partnerships, parent and owner) we look ahead at the selection ([`Plan::of`]), read every
//! relation for the whole page in the same connection checkout as the page itself
//! ([`Plan::load`]), and feed the results into the request's loaders ([`feed`]), so the
//! statements per page are fixed whatever the page size or the machine's load. Every read here
//! applies the same visibility policy (`visible_to!`) as the loaders' own queries; the members'
//! actors come with their partnerships, in one join.

use std::sync::Arc;

use async_graphql::Context;

use super::context::RequestContext;
use crate::domain::{self, RowFilter};
use crate::error::Result;
use crate::storage::queries::{self, Detail, PartnershipQuery};
use crate::storage::{AnyConnection, RecordMap};

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

/// What a selection of actions will ask for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plan {
    outcomes: bool,
    partnerships: bool,
    member_actors: bool,
    sub_actions: bool,
    parents: bool,
    owners: bool,
}

/// What [`Plan::load`] read, for [`feed`].
#[derive(Default)]
pub struct Loaded {
    /// The page's action ids, in order.
    ids: Vec<String>,
    outcomes: Vec<domain::Outcome>,
    partnerships: Vec<domain::Partnership>,
    actors: Vec<domain::Actor>,
    /// Every member id asked for, so those the viewer may not see are remembered as such.
    actor_ids: Vec<String>,
    sub_actions: Vec<domain::Action>,
    parents: Vec<domain::Action>,
    owners: Vec<domain::Partner>,
}

impl Plan {
    /// The relations `ctx`'s selection (a connection of actions) names.
    pub fn of(ctx: &Context<'_>) -> Plan {
        Plan {
            outcomes: selects(ctx, "outcomes"),
            partnerships: selects(ctx, "partnerships") || selects(ctx, "partners"),
            member_actors: nested(ctx, &["partners", "actor"])
                || nested(ctx, &["partnerships", "members", "actor"]),
            sub_actions: selects(ctx, "subActions"),
            parents: selects(ctx, "parent"),
            owners: selects(ctx, "owner"),
        }
    }

    /// Reads what the plan names for these actions, on the connection that read them.
    pub fn load<'a>(
        &self,
        c: &mut AnyConnection,
        rf: &RowFilter,
        detail: Detail,
        page: impl Iterator<Item = &'a domain::Action>,
    ) -> Result<Loaded> {
        let mut l = Loaded::default();
        let mut parent_ids = Vec::new();
        let mut owner_ids = Vec::new();
        for a in page {
            l.ids.push(a.id.clone());
            parent_ids.extend(a.parent_action_id.clone());
            owner_ids.push(a.owner.clone());
        }
        if l.ids.is_empty() {
            return Ok(l);
        }
        if self.outcomes {
            l.outcomes = queries::outcomes_of_read_actions(c, rf, detail, &l.ids)?;
        }
        if self.partnerships {
            let q = PartnershipQuery {
                action_ids: l.ids.clone(),
                ..Default::default()
            };
            if self.member_actors {
                (l.partnerships, l.actors) = queries::partnerships_with_actors(c, rf, detail, &q)?;
                let mut actor_ids: Vec<String> = l
                    .partnerships
                    .iter()
                    .flat_map(|p| p.members.iter().map(|m| m.actor_id.clone()))
                    .collect();
                actor_ids.sort();
                actor_ids.dedup();
                l.actor_ids = actor_ids;
            } else {
                l.partnerships = queries::partnerships_for(c, rf, &q)?;
            }
        }
        if self.sub_actions {
            l.sub_actions = queries::actions_by_parents(c, rf, detail, &l.ids)?;
        }
        if self.parents && !parent_ids.is_empty() {
            l.parents = queries::actions_by_ids(c, rf, detail, &parent_ids)?;
        }
        if self.owners {
            l.owners = queries::partners_by_ids(c, &owner_ids)?;
        }
        Ok(l)
    }
}

/// Each of `ids` with the items whose key it is (an empty list for none), in their order, as
/// the loaders hold them.
fn group<T>(
    ids: &[String],
    items: Vec<T>,
    key_of: impl Fn(&T) -> Option<&String>,
) -> RecordMap<String, Vec<Arc<T>>> {
    let mut map: RecordMap<String, Vec<Arc<T>>> =
        ids.iter().map(|id| (id.clone(), Vec::new())).collect();
    for item in items {
        if let Some(list) = key_of(&item).and_then(|k| map.get_mut(k)) {
            list.push(Arc::new(item));
        }
    }
    map
}

/// Feeds what was read into the request's loaders (and the audit's record of what was read).
pub async fn feed(plan: Plan, rc: &RequestContext, loaded: Loaded) {
    if loaded.ids.is_empty() {
        return;
    }
    rc.owners.note(&loaded.outcomes);
    rc.owners.note(&loaded.partnerships);
    rc.owners.note(&loaded.actors);
    rc.owners.note(&loaded.sub_actions);
    rc.owners.note(&loaded.parents);
    let loaders = &rc.loaders;
    let ids = &loaded.ids;
    if plan.outcomes {
        let mut by_action = group(ids, loaded.outcomes, |o| Some(&o.action_id));
        for outcomes in by_action.values_mut() {
            outcomes.sort_unstable_by(|a, b| queries::outcome_order(a, b));
        }
        loaders.outcomes_of_action.feed_many(by_action).await;
    }
    if plan.partnerships {
        loaders
            .partnerships_of_action
            .feed_many(group(ids, loaded.partnerships, |p| p.action_id.as_ref()))
            .await;
    }
    let mut actors: RecordMap<String, Option<Arc<domain::Actor>>> =
        loaded.actor_ids.into_iter().map(|id| (id, None)).collect();
    for a in loaded.actors {
        actors.insert(a.id.clone(), Some(Arc::new(a)));
    }
    loaders.actor.feed_many(actors).await;
    if plan.sub_actions {
        loaders
            .sub_actions
            .feed_many(group(ids, loaded.sub_actions, |a| {
                a.parent_action_id.as_ref()
            }))
            .await;
    }
    loaders
        .action
        .feed_many(
            loaded
                .parents
                .into_iter()
                .map(|a| (a.id.clone(), Arc::new(a))),
        )
        .await;
    loaders
        .partner
        .feed_many(loaded.owners.into_iter().map(|p| (p.id.clone(), p)))
        .await;
}
