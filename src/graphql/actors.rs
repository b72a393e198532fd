//! Actors: organisations and groups.

use async_graphql::parser::types::Field;
use async_graphql::resolver_utils::enum_value;
use async_graphql::{Context, Enum, InputObject, Object, Value, ID};

use super::actions::Action;
use super::common::{bounded_filter, Provenance, MAX_SEARCH_CHARS, MAX_TERRITORY_CHARS};
use super::context::request;
use super::ids::{self, Kind};
use super::leaves::{nullable, text, Leaves};
use super::pagination::{connection_types, page_request, SortDirection};
use super::partners::{owner, Partner};
use super::partnerships::Partnership;
use crate::domain;
use crate::storage::queries::{self, ActorQuery};

/// Shared with the request's loaders, which hand out the same record to every field that
/// asks for it without copying it.
pub struct Actor(pub std::sync::Arc<domain::Actor>);

impl From<domain::Actor> for Actor {
    fn from(record: domain::Actor) -> Self {
        Actor(std::sync::Arc::new(record))
    }
}

/// An organisation (a collective, a local authority, a network, an association...) or a group
/// such as a users' resource group. Never a person.
#[Object]
impl Actor {
    pub async fn id(&self) -> ID {
        ids::encode(Kind::Actor, &self.0.id)
    }
    /// The id the owning partner uses for this record.
    async fn local_id(&self) -> &str {
        &self.0.id
    }
    async fn kind(&self) -> domain::ActorKind {
        self.0.kind
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn acronym(&self) -> Option<&str> {
        self.0.acronym.as_deref()
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    async fn website(&self) -> Option<&str> {
        self.0.website.as_deref()
    }
    /// INSEE code of the territory the actor is based in or covers, where known.
    async fn territory_code(&self) -> Option<&str> {
        self.0.territory_code.as_deref()
    }
    async fn territory_name(&self) -> Option<&str> {
        self.0.territory_name.as_deref()
    }
    /// The organisation this one belongs to, if visible to you.
    async fn parent(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Actor>> {
        let Some(parent) = &self.0.parent_actor_id else {
            return Ok(None);
        };
        Ok(request(ctx)?
            .loaders
            .actor
            .load_one(parent.clone())
            .await?
            .flatten()
            .map(Actor))
    }
    /// The partnerships this actor is a member of.
    async fn partnerships(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Partnership>> {
        let found = request(ctx)?
            .loaders
            .partnerships_of_actor
            .load_one(self.0.id.clone())
            .await?;
        Ok(found
            .unwrap_or_default()
            .into_iter()
            .map(Partnership)
            .collect())
    }
    /// The actions this actor takes part in, through its partnerships.
    async fn actions(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Action>> {
        let rc = request(ctx)?;
        let partnerships = rc
            .loaders
            .partnerships_of_actor
            .load_one(self.0.id.clone())
            .await?
            .unwrap_or_default();
        let mut action_ids: Vec<String> = partnerships
            .into_iter()
            .filter_map(|p| p.action_id.clone())
            .collect();
        action_ids.sort();
        action_ids.dedup();
        let found = rc.loaders.action.load_many(action_ids.clone()).await?;
        Ok(action_ids
            .into_iter()
            .filter_map(|id| found.get(&id).cloned())
            .map(Action)
            .collect())
    }
    async fn visibility(&self) -> domain::Visibility {
        self.0.visibility
    }
    /// The partner that owns this record.
    async fn owner(&self, ctx: &Context<'_>) -> async_graphql::Result<Partner> {
        owner(ctx, &self.0.owner).await
    }
    async fn provenance(&self) -> Provenance {
        (&self.0.provenance).into()
    }
}

/// The fields of an actor that are plain values of the record, as their resolvers above give
/// them (`tests/api.rs` compares the two).
impl Leaves for Actor {
    fn leaf(&self, field: &Field) -> Option<Value> {
        let a = &self.0;
        Some(match field.name.node.as_str() {
            "id" => Value::String(ids::encode(Kind::Actor, &a.id).0),
            "localId" => text(&a.id),
            "kind" => enum_value(a.kind),
            "name" => text(&a.name),
            "acronym" => nullable(a.acronym.as_deref(), text),
            "description" => nullable(a.description.as_deref(), text),
            "website" => nullable(a.website.as_deref(), text),
            "territoryCode" => nullable(a.territory_code.as_deref(), text),
            "territoryName" => nullable(a.territory_name.as_deref(), text),
            "visibility" => enum_value(a.visibility),
            _ => return None,
        })
    }
}

#[derive(InputObject, Default)]
pub struct ActorFilter {
    /// Owning partners, by slug.
    pub partners: Option<Vec<String>>,
    pub kinds: Option<Vec<domain::ActorKind>>,
    /// An INSEE code; a department code also matches its communes.
    pub territory: Option<String>,
    /// Words in the name, acronym, description or territory (case-insensitive).
    pub text: Option<String>,
}

impl ActorFilter {
    fn into_query(self) -> Result<ActorQuery, crate::error::Error> {
        Ok(ActorQuery {
            owners: self.partners.unwrap_or_default(),
            kinds: self.kinds.unwrap_or_default(),
            territory: bounded_filter(self.territory, "filter.territory", MAX_TERRITORY_CHARS)?,
            text: bounded_filter(self.text, "filter.text", MAX_SEARCH_CHARS)?,
        })
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq, Default)]
pub enum ActorOrderField {
    #[default]
    Name,
}

#[derive(InputObject, Default)]
pub struct ActorOrder {
    #[graphql(default)]
    pub field: ActorOrderField,
    #[graphql(default)]
    pub direction: SortDirection,
}

/// Pages resolve as usual.
impl super::leaves::PageLeaves for Actor {}

connection_types!(
    ActorConnection,
    ActorEdge,
    Actor,
    ActorQuery,
    queries::count_actors
);

#[derive(Default)]
pub struct ActorQueries;

#[Object]
impl ActorQueries {
    /// Actors you may see, sorted by name then id.
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity + 1")]
    async fn actors(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<ActorFilter>,
        order_by: Option<ActorOrder>,
    ) -> async_graphql::Result<ActorConnection> {
        let rc = request(ctx)?;
        let order = order_by.unwrap_or_default();
        let (page, size) = page_request(rc.limits, first, after, order.direction)?;
        let query = filter.unwrap_or_default().into_query()?;
        let q = query.clone();
        let rows = rc
            .read(move |c, rf| queries::actors_page(c, rf, &q, &page))
            .await?;
        rc.owners.note(rows.iter().take(size));
        Ok(ActorConnection::new(
            rows,
            size,
            query,
            |a| &a.id,
            Actor::from,
        ))
    }

    /// One actor by its global id; null if it does not exist or you may not see it.
    async fn actor(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Actor>> {
        let local = ids::decode_as(Kind::Actor, &id, "id")?;
        Ok(request(ctx)?
            .loaders
            .actor
            .load_one(local)
            .await?
            .flatten()
            .map(Actor))
    }
}
