//! Actions: programmes, campaigns, working groups, interventions, events, publications.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::parser::types::{Field, Selection};
use async_graphql::resolver_utils::enum_value;
use async_graphql::{
    Context, ContextSelectionSet, Enum, InputObject, Object, ScalarType, Value, ID,
};

use super::actors::Actor;
use super::common::{
    bounded_filter, PeriodFilter, Place, Provenance, MAX_SEARCH_CHARS, MAX_TERRITORY_CHARS,
};
use super::context::{request, RequestContext};
use super::ids::{self, Kind};
use super::leaves::{self, nullable, text, LeafList, Leaves, PageLeaves};
use super::outcomes::Outcome;
use super::pagination::{connection_types, page_request, SortDirection};
use super::partners::{owner, Partner};
use super::partnerships::Partnership;
use crate::domain::{self, PartialDate};
use crate::error::Error;
use crate::storage::queries::{self, ActionQuery, ActionSort};

/// Shared with the request's loaders, which hand out the same record to every field that
/// asks for it without copying it.
pub struct Action(pub std::sync::Arc<domain::Action>);

impl From<domain::Action> for Action {
    fn from(record: domain::Action) -> Self {
        Action(std::sync::Arc::new(record))
    }
}

/// Something a partner does: a programme, a campaign, a working group, an intervention, an
/// event, a publication...
#[Object]
impl Action {
    pub async fn id(&self) -> ID {
        ids::encode(Kind::Action, &self.0.id)
    }
    /// The id the owning partner uses for this record.
    async fn local_id(&self) -> &str {
        &self.0.id
    }
    async fn kind(&self) -> domain::ActionKind {
        self.0.kind
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn summary(&self) -> Option<&str> {
        self.0.summary.as_deref()
    }
    /// Null where the source does not say.
    async fn status(&self) -> Option<domain::ActionStatus> {
        self.0.status
    }
    async fn starts_on(&self) -> Option<PartialDate> {
        self.0.starts_on
    }
    async fn ends_on(&self) -> Option<PartialDate> {
        self.0.ends_on
    }
    /// How often it happens, in words.
    async fn schedule(&self) -> Option<&str> {
        self.0.schedule.as_deref()
    }
    async fn website(&self) -> Option<&str> {
        self.0.website.as_deref()
    }
    /// Theme slugs such as `access-to-rights`.
    async fn themes(&self) -> &[String] {
        &self.0.themes
    }
    /// The territories the action covers.
    async fn places(&self) -> Vec<Place> {
        self.0.places.iter().map(Place::from).collect()
    }
    /// The programme this action is part of, if visible to you.
    async fn parent(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Action>> {
        let Some(parent) = &self.0.parent_action_id else {
            return Ok(None);
        };
        Ok(request(ctx)?
            .loaders
            .action
            .load_one(parent.clone())
            .await?
            .map(Action))
    }
    /// The actions that are part of this one.
    async fn sub_actions(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Action>> {
        let found = request(ctx)?
            .loaders
            .sub_actions
            .load_one(self.0.id.clone())
            .await?;
        Ok(found.unwrap_or_default().into_iter().map(Action).collect())
    }
    /// What the action achieved or aims at.
    async fn outcomes(&self, ctx: &Context<'_>) -> async_graphql::Result<LeafList<Outcome>> {
        let found = request(ctx)?
            .loaders
            .outcomes_of_action
            .load_one(self.0.id.clone())
            .await?;
        Ok(LeafList(
            found.unwrap_or_default().into_iter().map(Outcome).collect(),
        ))
    }
    /// The partnerships that serve this action.
    async fn partnerships(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Partnership>> {
        let found = request(ctx)?
            .loaders
            .partnerships_of_action
            .load_one(self.0.id.clone())
            .await?;
        Ok(found
            .unwrap_or_default()
            .into_iter()
            .map(Partnership)
            .collect())
    }
    /// Every actor involved, with its role, across the action's partnerships.
    async fn partners(&self, ctx: &Context<'_>) -> async_graphql::Result<LeafList<ActionPartner>> {
        let rc = request(ctx)?;
        let partnerships = rc
            .loaders
            .partnerships_of_action
            .load_one(self.0.id.clone())
            .await?
            .unwrap_or_default();
        let actors = rc
            .loaders
            .actor
            .load_many(member_ids(&partnerships))
            .await?;
        Ok(LeafList(action_partners(&partnerships, &actors)))
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

/// The members of `partnerships`.
fn member_ids<'a>(
    partnerships: impl IntoIterator<Item = &'a Arc<domain::Partnership>>,
) -> Vec<String> {
    partnerships
        .into_iter()
        .flat_map(|p| p.members.iter().map(|m| m.actor_id.clone()))
        .collect()
}

/// An action's partners from its partnerships and their members' actors, as the viewer may see
/// them: a member whose actor is hidden is left out rather than shown empty.
fn action_partners(
    partnerships: &[Arc<domain::Partnership>],
    actors: &HashMap<String, Option<Arc<domain::Actor>>>,
) -> Vec<ActionPartner> {
    let mut out = Vec::new();
    for p in partnerships {
        for m in &p.members {
            if let Some(actor) = actors.get(&m.actor_id).and_then(Option::as_ref) {
                out.push(ActionPartner {
                    actor: actor.clone(),
                    role: m.role,
                    partnership_id: p.id.clone(),
                });
            }
        }
    }
    out
}

/// As the resolvers above give them (`tests/api.rs` compares the two).
impl Leaves for Action {
    fn leaf(&self, field: &Field) -> Option<Value> {
        let a = &self.0;
        Some(match field.name.node.as_str() {
            "id" => Value::String(ids::encode(Kind::Action, &a.id).0),
            "localId" => text(&a.id),
            "kind" => enum_value(a.kind),
            "title" => text(&a.title),
            "summary" => nullable(a.summary.as_deref(), text),
            "status" => nullable(a.status, enum_value),
            "startsOn" => nullable(a.starts_on, |d| d.to_value()),
            "endsOn" => nullable(a.ends_on, |d| d.to_value()),
            "schedule" => nullable(a.schedule.as_deref(), text),
            "website" => nullable(a.website.as_deref(), text),
            "themes" => Value::List(a.themes.iter().map(|t| text(t)).collect()),
            "visibility" => enum_value(a.visibility),
            _ => return None,
        })
    }
}

/// A page of actions whose selection is plain fields (see [`Leaves`]), `outcomes` and
/// `partners` among them, is built directly: each relation is taken from the request's loaders
/// once for the whole page (a dashboard's page fed them already, `prefetch`), not once per
/// action through a resolver each. Any other selection, or a loader error, resolves as usual.
impl PageLeaves for Action {
    async fn page(items: &[&Self], ctx: &ContextSelectionSet<'_>) -> Option<Vec<Value>> {
        let selection = &ctx.item.node;
        // A fragment, directive or argument among the fields of the page's objects: resolved as
        // usual, before anything is loaded for it here.
        let shape = leaves::Shape::of(selection)?;
        // The shapes of the relations' objects, by the field's place in the selection: the
        // same for every action of the page.
        let relations: Vec<Option<leaves::Shape>> = selection
            .items
            .iter()
            .map(|s| match &s.node {
                Selection::Field(f)
                    if matches!(f.node.name.node.as_str(), "outcomes" | "partners") =>
                {
                    leaves::Shape::of(&f.node.selection_set.node)
                }
                _ => None,
            })
            .collect();
        let names = |name: &str| {
            selection
                .items
                .iter()
                .any(|s| matches!(&s.node, Selection::Field(f) if f.node.name.node == name))
        };
        let (wants_outcomes, wants_partners) = (names("outcomes"), names("partners"));
        let rc = ctx.data::<RequestContext>().ok()?;
        let ids: Vec<String> = items.iter().map(|a| a.0.id.clone()).collect();
        let outcomes = if wants_outcomes {
            rc.loaders
                .outcomes_of_action
                .load_many(ids.clone())
                .await
                .ok()?
        } else {
            HashMap::new()
        };
        let (partnerships, actors) = if wants_partners {
            let partnerships = rc
                .loaders
                .partnerships_of_action
                .load_many(ids)
                .await
                .ok()?;
            let members = member_ids(partnerships.values().flatten());
            (
                partnerships,
                rc.loaders.actor.load_many(members).await.ok()?,
            )
        } else {
            (HashMap::new(), HashMap::new())
        };
        items
            .iter()
            .map(|action| {
                shape.object(*action, |i, f| match f.name.node.as_str() {
                    "outcomes" => {
                        let found = outcomes.get(&action.0.id).map_or(&[][..], Vec::as_slice);
                        let found: Vec<Outcome> = found.iter().cloned().map(Outcome).collect();
                        relations.get(i)?.as_ref()?.list(&found)
                    }
                    "partners" => {
                        let found = partnerships
                            .get(&action.0.id)
                            .map_or(&[][..], Vec::as_slice);
                        relations
                            .get(i)?
                            .as_ref()?
                            .list(&action_partners(found, &actors))
                    }
                    _ => action.leaf(f),
                })
            })
            .collect()
    }
}

/// An actor involved in an action, and its role.
pub struct ActionPartner {
    actor: std::sync::Arc<domain::Actor>,
    role: domain::PartnershipRole,
    partnership_id: String,
}

#[Object(serial)]
impl ActionPartner {
    async fn actor(&self) -> Actor {
        Actor(self.actor.clone())
    }
    async fn role(&self) -> domain::PartnershipRole {
        self.role
    }
    /// The partnership that gives the actor this role.
    async fn partnership_id(&self) -> ID {
        ids::encode(Kind::Partnership, &self.partnership_id)
    }
}

/// As the resolvers above give them (`tests/api.rs` compares the two).
impl Leaves for ActionPartner {
    fn leaf(&self, field: &Field) -> Option<Value> {
        Some(match field.name.node.as_str() {
            "actor" => leaves::object(&Actor(self.actor.clone()), &field.selection_set.node)?,
            "role" => enum_value(self.role),
            "partnershipId" => {
                Value::String(ids::encode(Kind::Partnership, &self.partnership_id).0)
            }
            _ => return None,
        })
    }
}

#[derive(InputObject, Default)]
pub struct ActionFilter {
    /// Owning partners, by slug.
    pub partners: Option<Vec<String>>,
    pub kinds: Option<Vec<domain::ActionKind>>,
    pub statuses: Option<Vec<domain::ActionStatus>>,
    /// An INSEE code; a department code also matches its communes.
    pub territory: Option<String>,
    pub period: Option<PeriodFilter>,
    /// Any of these theme slugs.
    pub themes: Option<Vec<String>>,
    /// Words in the title, summary, themes or places (case-insensitive).
    pub text: Option<String>,
    /// Only the sub-actions of this action.
    pub parent: Option<ID>,
}

impl ActionFilter {
    fn into_query(self) -> Result<ActionQuery, Error> {
        Ok(ActionQuery {
            owners: self.partners.unwrap_or_default(),
            kinds: self.kinds.unwrap_or_default(),
            statuses: self.statuses.unwrap_or_default(),
            territory: bounded_filter(self.territory, "filter.territory", MAX_TERRITORY_CHARS)?,
            period: self.period.into(),
            themes: self.themes.unwrap_or_default(),
            text: bounded_filter(self.text, "filter.text", MAX_SEARCH_CHARS)?,
            parent: self
                .parent
                .map(|p| ids::decode_as(Kind::Action, &p, "filter.parent"))
                .transpose()?,
        })
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq, Default)]
pub enum ActionOrderField {
    #[default]
    Title,
    /// Start date; actions with no known start come last.
    StartsOn,
}

#[derive(InputObject, Default)]
pub struct ActionOrder {
    #[graphql(default)]
    pub field: ActionOrderField,
    #[graphql(default)]
    pub direction: SortDirection,
}

connection_types!(
    ActionConnection,
    ActionEdge,
    Action,
    ActionQuery,
    queries::count_actions
);

#[derive(Default)]
pub struct ActionQueries;

#[Object]
impl ActionQueries {
    /// Actions you may see, sorted by `orderBy` then id.
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity + 1")]
    async fn actions(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<ActionFilter>,
        order_by: Option<ActionOrder>,
    ) -> async_graphql::Result<ActionConnection> {
        let rc = request(ctx)?;
        let order = order_by.unwrap_or_default();
        let (page, size) = page_request(rc.limits, first, after, order.direction)?;
        let query = filter.unwrap_or_default().into_query()?;
        let sort = match order.field {
            ActionOrderField::Title => ActionSort::Title,
            ActionOrderField::StartsOn => ActionSort::Start,
        };
        let q = query.clone();
        let detail = rc.detail;
        let plan = super::prefetch::Plan::of(ctx);
        // The page and what its selection asks of it, in one connection checkout.
        let (rows, loaded) = rc
            .read(move |c, rf| {
                let rows = queries::actions_page(c, rf, detail, &q, sort, &page)?;
                let in_page = rows.iter().take(size).map(|(_, a)| a);
                let loaded = plan.load(c, rf, detail, in_page)?;
                Ok((rows, loaded))
            })
            .await?;
        super::prefetch::feed(plan, rc, loaded).await;
        rc.owners.note(rows.iter().take(size));
        Ok(ActionConnection::new(
            rows,
            size,
            query,
            |a| &a.id,
            Action::from,
        ))
    }

    /// One action by its global id; null if it does not exist or you may not see it.
    async fn action(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Action>> {
        let local = ids::decode_as(Kind::Action, &id, "id")?;
        Ok(request(ctx)?
            .loaders
            .action
            .load_one(local)
            .await?
            .map(Action))
    }
}
