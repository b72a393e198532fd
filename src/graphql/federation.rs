//! Apollo Federation v2: Passerelle as a subgraph. Actors, actions, outcomes, partnerships and
//! partners are entities keyed by their global `id`. `_entities` resolves representations
//! concurrently and each resolver goes through the request's DataLoaders, so a batch of
//! representations costs one query per type, filtered by the caller's row filter exactly like
//! every other read: an entity the caller may not see resolves to null, exactly like one that
//! does not exist. A representation that is not one of these entities (unknown `__typename`, no
//! `id`) is the caller's mistake: [`invalid_representation`] refuses it with `BAD_USER_INPUT`
//! before execution, where async-graphql would fail the whole `_entities` field.

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Context, Object, ServerError, Value as ConstValue, Variables, ID};

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

/// The entities this subgraph resolves, by `__typename`.
const ENTITY_TYPES: [&str; 5] = ["Actor", "Action", "Outcome", "Partnership", "Partner"];

/// The first representation passed to `_entities` in `doc` (with `variables`) that no entity
/// resolver can take, as a `BAD_USER_INPUT` error naming its position; `None` when every one is
/// an object with one of [`ENTITY_TYPES`] as `__typename` and an `id` an `ID` accepts.
pub fn invalid_representation(
    doc: &ExecutableDocument,
    variables: &Variables,
) -> Option<ServerError> {
    fn in_set(
        doc: &ExecutableDocument,
        set: &SelectionSet,
        vars: &Variables,
        depth: usize,
    ) -> Option<ServerError> {
        // Root fields only, through fragments (bounded: cycles fail validation).
        if depth > 8 {
            return None;
        }
        set.items.iter().find_map(|item| match &item.node {
            Selection::Field(f) if f.node.name.node == "_entities" => {
                let (_, value) = f
                    .node
                    .arguments
                    .iter()
                    .find(|(name, _)| name.node == "representations")?;
                // Unknown variables and wrong types are validation's to report.
                let value = value
                    .node
                    .clone()
                    .into_const_with(|name| vars.get(&name).cloned().ok_or(()))
                    .ok()?;
                let ConstValue::List(items) = value else {
                    return None;
                };
                items.iter().position(|r| !representable(r)).map(|i| {
                    let mut error = ServerError::new(
                        format!(
                            "representation {i} is not an entity of this subgraph: each needs a \
                             `__typename` among {} and a string `id`",
                            ENTITY_TYPES.join(", ")
                        ),
                        Some(f.pos),
                    );
                    error
                        .extensions
                        .get_or_insert_with(Default::default)
                        .set("code", "BAD_USER_INPUT");
                    error
                })
            }
            Selection::Field(_) => None,
            Selection::InlineFragment(f) => {
                in_set(doc, &f.node.selection_set.node, vars, depth + 1)
            }
            Selection::FragmentSpread(s) => doc
                .fragments
                .get(&s.node.fragment_name.node)
                .and_then(|f| in_set(doc, &f.node.selection_set.node, vars, depth + 1)),
        })
    }
    doc.operations
        .iter()
        .find_map(|(_, op)| in_set(doc, &op.node.selection_set.node, variables, 0))
}

/// Whether an entity resolver takes `representation` (resolving it to a record or to null).
fn representable(representation: &ConstValue) -> bool {
    let ConstValue::Object(fields) = representation else {
        return false;
    };
    let typename = matches!(fields.get("__typename"), Some(ConstValue::String(t)) if ENTITY_TYPES.contains(&t.as_str()));
    let id = matches!(
        fields.get("id"),
        Some(ConstValue::String(_) | ConstValue::Number(_))
    );
    typename && id
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
