//! Outcomes: what actions achieved, as figures or in words.

use async_graphql::parser::types::Field;
use async_graphql::resolver_utils::enum_value;
use async_graphql::{Context, InputObject, Object, ScalarType, SimpleObject, Value, ID};

use super::actions::Action;
use super::common::{
    bounded_filter, PeriodFilter, Provenance, MAX_SEARCH_CHARS, MAX_TERRITORY_CHARS,
};
use super::context::request;
use super::ids::{self, Kind};
use super::leaves::{nullable, text, Leaves};
use super::pagination::{connection_types, page_request, SortDirection};
use super::partners::{owner, Partner};
use crate::domain::{self, PartialDate};
use crate::error::Error;
use crate::storage::queries::{self, OutcomeQuery};

/// Shared with the request's loaders, which hand out the same record to every field that
/// asks for it without copying it.
pub struct Outcome(pub std::sync::Arc<domain::Outcome>);

impl From<domain::Outcome> for Outcome {
    fn from(record: domain::Outcome) -> Self {
        Outcome(std::sync::Arc::new(record))
    }
}

/// One cell of a breakdown of an outcome's value.
#[derive(SimpleObject)]
#[graphql(serial)]
pub struct Disaggregation {
    /// What the breakdown is by, e.g. `district`.
    pub dimension: String,
    pub category: String,
    pub value: Option<f64>,
}

/// A result of an action: an indicator with a value, unit and period (IATI's baseline, target
/// or actual), or a result stated in words.
// Serial: a dashboard resolves hundreds of outcomes, and concurrent resolution allocates a task
// per field. Only `action` and `owner` wait on DataLoaders; asked together, they take one
// batch after the other.
#[Object(serial)]
impl Outcome {
    pub async fn id(&self) -> ID {
        ids::encode(Kind::Outcome, &self.0.id)
    }
    /// The id the owning partner uses for this record.
    async fn local_id(&self) -> &str {
        &self.0.id
    }
    /// What is measured, e.g. "People supported in accessing their rights".
    async fn indicator(&self) -> &str {
        &self.0.indicator
    }
    async fn measure(&self) -> domain::OutcomeMeasure {
        self.0.measure
    }
    /// Null where the source gives no figure.
    async fn value(&self) -> Option<f64> {
        self.0.value
    }
    async fn unit(&self) -> Option<&str> {
        self.0.unit.as_deref()
    }
    /// The result in words, as the source states it.
    async fn statement(&self) -> Option<&str> {
        self.0.statement.as_deref()
    }
    async fn period_start(&self) -> Option<PartialDate> {
        self.0.period_start
    }
    async fn period_end(&self) -> Option<PartialDate> {
        self.0.period_end
    }
    /// Breakdowns of the value, e.g. by district. Small cells can identify people, so this field
    /// needs the `read:sensitive` scope: without it, it is null with a `FORBIDDEN_FIELD` error.
    async fn disaggregations(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<Vec<Disaggregation>>> {
        let viewer = &request(ctx)?.viewer;
        if !viewer.field_access().sensitive {
            // The same rule as every other path's (`domain::policy`), with the error naming the scope.
            viewer.require_for_field(crate::auth::READ_SENSITIVE, "disaggregations")?;
        }
        Ok(Some(
            self.0
                .disaggregations
                .iter()
                .map(|d| Disaggregation {
                    dimension: d.dimension.clone(),
                    category: d.category.clone(),
                    value: d.value,
                })
                .collect(),
        ))
    }
    /// The action this outcome reports on.
    async fn action(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Action>> {
        Ok(request(ctx)?
            .loaders
            .action
            .load_one(self.0.action_id.clone())
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

/// The fields of an outcome that are plain values of the record, as their resolvers above give
/// them (`tests/api.rs` compares the two).
impl Leaves for Outcome {
    fn leaf(&self, field: &Field) -> Option<Value> {
        let o = &self.0;
        Some(match field.name.node.as_str() {
            "id" => Value::String(ids::encode(Kind::Outcome, &o.id).0),
            "localId" => text(&o.id),
            "indicator" => text(&o.indicator),
            "measure" => enum_value(o.measure),
            "value" => nullable(o.value, |v| v.to_value()),
            "unit" => nullable(o.unit.as_deref(), text),
            "statement" => nullable(o.statement.as_deref(), text),
            "periodStart" => nullable(o.period_start, |d| d.to_value()),
            "periodEnd" => nullable(o.period_end, |d| d.to_value()),
            "visibility" => enum_value(o.visibility),
            _ => return None,
        })
    }
}

#[derive(InputObject, Default)]
pub struct OutcomeFilter {
    /// Owning partners, by slug.
    pub partners: Option<Vec<String>>,
    pub measures: Option<Vec<domain::OutcomeMeasure>>,
    /// Only outcomes of these actions.
    pub actions: Option<Vec<ID>>,
    /// An INSEE code the outcome's action covers; a department code also matches its communes.
    pub territory: Option<String>,
    /// Any of these themes of the outcome's action.
    pub themes: Option<Vec<String>>,
    pub period: Option<PeriodFilter>,
    /// Words in the indicator, statement or unit (case-insensitive).
    pub text: Option<String>,
}

impl OutcomeFilter {
    fn into_query(self) -> Result<OutcomeQuery, Error> {
        let action_ids = self
            .actions
            .unwrap_or_default()
            .iter()
            .map(|id| ids::decode_as(Kind::Action, id, "filter.actions"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OutcomeQuery {
            owners: self.partners.unwrap_or_default(),
            measures: self.measures.unwrap_or_default(),
            action_ids,
            territory: bounded_filter(self.territory, "filter.territory", MAX_TERRITORY_CHARS)?,
            themes: self.themes.unwrap_or_default(),
            period: self.period.into(),
            text: bounded_filter(self.text, "filter.text", MAX_SEARCH_CHARS)?,
        })
    }
}

/// Pages resolve as usual.
impl super::leaves::PageLeaves for Outcome {}

connection_types!(
    OutcomeConnection,
    OutcomeEdge,
    Outcome,
    OutcomeQuery,
    queries::count_outcomes
);

#[derive(Default)]
pub struct OutcomeQueries;

#[Object]
impl OutcomeQueries {
    /// Outcomes you may see, sorted by indicator then id.
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity + 1")]
    async fn outcomes(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<OutcomeFilter>,
        direction: Option<SortDirection>,
    ) -> async_graphql::Result<OutcomeConnection> {
        let rc = request(ctx)?;
        let (page, size) = page_request(rc.limits, first, after, direction.unwrap_or_default())?;
        let query = filter.unwrap_or_default().into_query()?;
        let q = query.clone();
        let detail = rc.detail;
        let rows = rc
            .read(move |c, rf| queries::outcomes_page(c, rf, detail, &q, &page))
            .await?;
        rc.owners.note(rows.iter().take(size));
        Ok(OutcomeConnection::new(
            rows,
            size,
            query,
            |o| &o.id,
            Outcome::from,
        ))
    }

    /// One outcome by its global id; null if it does not exist or you may not see it.
    async fn outcome(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Outcome>> {
        let local = ids::decode_as(Kind::Outcome, &id, "id")?;
        Ok(request(ctx)?
            .loaders
            .outcome
            .load_one(local)
            .await?
            .map(Outcome))
    }
}
