//! Partnerships: organisations working together, with roles, for an action.

use async_graphql::{Context, InputObject, Object, ID};

use super::actions::Action;
use super::actors::Actor;
use super::common::{bounded_filter, PeriodFilter, Provenance, MAX_SEARCH_CHARS};
use super::context::request;
use super::ids::{self, Kind};
use super::pagination::{connection_types, page_request, SortDirection};
use super::partners::{owner, Partner};
use crate::domain::{self, PartialDate};
use crate::error::Error;
use crate::storage::queries::{self, PartnershipQuery};

/// Shared with the request's loaders, which hand out the same record to every field that
/// asks for it without copying it.
pub struct Partnership(pub std::sync::Arc<domain::Partnership>);

impl From<domain::Partnership> for Partnership {
    fn from(record: domain::Partnership) -> Self {
        Partnership(std::sync::Arc::new(record))
    }
}

/// Organisations working together, each with a role, usually for one action.
#[Object]
impl Partnership {
    pub async fn id(&self) -> ID {
        ids::encode(Kind::Partnership, &self.0.id)
    }
    /// The id the owning partner uses for this record.
    async fn local_id(&self) -> &str {
        &self.0.id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    async fn starts_on(&self) -> Option<PartialDate> {
        self.0.starts_on
    }
    async fn ends_on(&self) -> Option<PartialDate> {
        self.0.ends_on
    }
    /// The members you may see, with their roles.
    async fn members(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Member>> {
        let rc = request(ctx)?;
        let ids: Vec<String> = self.0.members.iter().map(|m| m.actor_id.clone()).collect();
        let actors = rc.loaders.actor.load_many(ids).await?;
        Ok(self
            .0
            .members
            .iter()
            .filter_map(|m| {
                actors
                    .get(&m.actor_id)
                    .and_then(Option::as_ref)
                    .map(|a| Member {
                        actor: a.clone(),
                        role: m.role,
                    })
            })
            .collect())
    }
    /// The action the partnership serves, if any and visible to you.
    async fn action(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Action>> {
        let Some(action) = &self.0.action_id else {
            return Ok(None);
        };
        Ok(request(ctx)?
            .loaders
            .action
            .load_one(action.clone())
            .await?
            .map(Action))
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

/// An actor in a partnership and its role.
pub struct Member {
    actor: std::sync::Arc<domain::Actor>,
    role: domain::PartnershipRole,
}

#[Object(serial)]
impl Member {
    async fn actor(&self) -> Actor {
        Actor(self.actor.clone())
    }
    async fn role(&self) -> domain::PartnershipRole {
        self.role
    }
}

#[derive(InputObject, Default)]
pub struct PartnershipFilter {
    /// Owning partners, by slug.
    pub partners: Option<Vec<String>>,
    /// Only partnerships serving these actions.
    pub actions: Option<Vec<ID>>,
    /// Only partnerships with any of these actors as members.
    pub actors: Option<Vec<ID>>,
    pub period: Option<PeriodFilter>,
    /// Words in the name or description (case-insensitive).
    pub text: Option<String>,
}

impl PartnershipFilter {
    fn into_query(self) -> Result<PartnershipQuery, Error> {
        let decode = |list: Option<Vec<ID>>, kind, field| {
            list.unwrap_or_default()
                .iter()
                .map(|id| ids::decode_as(kind, id, field))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(PartnershipQuery {
            owners: self.partners.unwrap_or_default(),
            action_ids: decode(self.actions, Kind::Action, "filter.actions")?,
            actor_ids: decode(self.actors, Kind::Actor, "filter.actors")?,
            period: self.period.into(),
            text: bounded_filter(self.text, "filter.text", MAX_SEARCH_CHARS)?,
        })
    }
}

/// Pages resolve as usual.
impl super::leaves::PageLeaves for Partnership {}

connection_types!(
    PartnershipConnection,
    PartnershipEdge,
    Partnership,
    PartnershipQuery,
    queries::count_partnerships
);

#[derive(Default)]
pub struct PartnershipQueries;

#[Object]
impl PartnershipQueries {
    /// Partnerships you may see, sorted by name then id.
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity + 1")]
    async fn partnerships(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<PartnershipFilter>,
        direction: Option<SortDirection>,
    ) -> async_graphql::Result<PartnershipConnection> {
        let rc = request(ctx)?;
        let (page, size) = page_request(rc.limits, first, after, direction.unwrap_or_default())?;
        let query = filter.unwrap_or_default().into_query()?;
        let q = query.clone();
        let rows = rc
            .read(move |c, rf| queries::partnerships_page(c, rf, &q, &page))
            .await?;
        rc.owners.note(rows.iter().take(size));
        Ok(PartnershipConnection::new(
            rows,
            size,
            query,
            |p| &p.id,
            Partnership::from,
        ))
    }

    /// One partnership by its global id; null if it does not exist or you may not see it.
    async fn partnership(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<Partnership>> {
        let local = ids::decode_as(Kind::Partnership, &id, "id")?;
        Ok(request(ctx)?
            .loaders
            .partnership
            .load_one(local)
            .await?
            .map(Partnership))
    }
}
