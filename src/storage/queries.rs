//! Reads. Every function takes the viewer's `RowFilter` and applies `visible_to!` to every
//! partner-owned table it reads; there is no read path around it. Lists use keyset pagination on
//! (sort key, id), so pages are stable while rows are added.

use std::collections::HashMap;

use diesel::prelude::*;

use super::connection::{natively, MultiBackend};
use super::rows::*;
use super::schema::*;
use super::visibility::visible_to;
use super::{AnyConnection, EntityKind, RecordMap};
use crate::domain::{self, RowFilter};
use crate::error::Result;

/// Every row `query` reads, each made a `T` by `into`, in a Vec allocated once for the result's
/// row count. diesel's `load` collects through a `Result`, which hides that count: its Vec grew
/// by doubling and copied every row read so far at each step, and the rows were then copied once
/// more into records. PostgreSQL's results know their count; SQLite's do not, and there the Vec
/// grows as before.
fn load_into<'c, 'query: 'c, Q, C, R, T>(
    query: Q,
    conn: &'c mut C,
    into: impl Fn(R) -> T,
) -> QueryResult<Vec<T>>
where
    Q: diesel::query_dsl::LoadQuery<'query, C, R> + 'c,
    C: diesel::Connection,
    R: 'c,
{
    let rows = query.load_iter::<R, diesel::connection::DefaultLoadingMode>(conn)?;
    let mut out = Vec::with_capacity(rows.size_hint().0);
    for row in rows {
        out.push(into(row?));
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortDir {
    #[default]
    Asc,
    Desc,
}

/// Where a page starts: after the row with this sort key and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub key: String,
    pub id: String,
}

/// One page request.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub after: Option<After>,
    pub limit: i64,
    pub dir: SortDir,
}

/// A period filter: records known to overlap [from, to] (ISO days). A record with no date at
/// all never matches; a missing end counts as ongoing.
#[derive(Debug, Clone, Default)]
pub struct Period {
    pub from: Option<String>,
    pub to: Option<String>,
}

impl Period {
    pub fn is_set(&self) -> bool {
        self.from.is_some() || self.to.is_some()
    }
}

/// A `LIKE` pattern matching `text` anywhere, lower-cased, with wildcards escaped.
fn contains_pattern(text: &str) -> String {
    let mut p = String::from("%");
    for ch in text.to_lowercase().chars() {
        if matches!(ch, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(ch);
    }
    p.push('%');
    p
}

/// A territory filter: an INSEE department code (2-3 characters) also matches its communes.
fn territory_pattern(code: &str) -> String {
    let clean: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    if clean.len() <= 3 {
        format!("{clean}%")
    } else {
        clean
    }
}

macro_rules! apply_period {
    ($q:expr, $table:ident, $period:expr) => {{
        let mut q = $q;
        let period: &Period = $period;
        if period.is_set() {
            q = q.filter(
                $table::start_bound
                    .is_not_null()
                    .or($table::end_bound.is_not_null()),
            );
        }
        if let Some(from) = period.from.clone() {
            q = q.filter($table::end_bound.is_null().or($table::end_bound.ge(from)));
        }
        if let Some(to) = period.to.clone() {
            q = q.filter($table::start_bound.is_null().or($table::start_bound.le(to)));
        }
        q
    }};
}

macro_rules! apply_page {
    ($q:expr, $sort:expr, $id:expr, $page:expr) => {{
        let page: &PageRequest = $page;
        let mut q = $q;
        if let Some(a) = page.after.clone() {
            q = match page.dir {
                SortDir::Asc => q.filter(
                    $sort
                        .gt(a.key.clone())
                        .or($sort.eq(a.key).and($id.gt(a.id))),
                ),
                SortDir::Desc => q.filter(
                    $sort
                        .lt(a.key.clone())
                        .or($sort.eq(a.key).and($id.lt(a.id))),
                ),
            };
        }
        q = match page.dir {
            SortDir::Asc => q.order_by(($sort.asc(), $id.asc())),
            SortDir::Desc => q.order_by(($sort.desc(), $id.desc())),
        };
        q.limit(page.limit)
    }};
}

/// Which satellite rows a read of actions or outcomes loads beside the records themselves (each
/// costs one statement per batch), whether outcomes, partnerships and actors carry their
/// provenance columns (four strings a row, most of an outcome's bytes once read), and whether
/// outcomes and the members' actors read with a page carry their secondary columns. A GraphQL
/// document that never names `themes`, `places`, `disaggregations`, `provenance` or a
/// secondary field does not pay for them (the `limits` walk calls `Detail::note` on each field
/// name, whatever type it belongs to); every other read loads all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Detail {
    pub themes: bool,
    pub places: bool,
    pub disaggregations: bool,
    pub provenance: bool,
    /// Outcomes' columns beyond id, owner, action, indicator, value and unit, and actions'
    /// summary, schedule and website (on every read that takes a `Detail`; actions' provenance
    /// columns are read with either this or `provenance`), and the members' actors' columns
    /// beyond id, owner and name and the partnerships' description, read with a page of actions.
    /// A dashboard names none of them: without them an outcome is 6 values instead of 11, an
    /// actor 3 instead of 11 and an action 10 instead of 17; the whole request cost 8 to 13%
    /// less CPU for outcomes and actors, about 4% less again for actions and partnerships
    /// (docs/performance.md).
    pub secondary: bool,
}

/// The fields of `Action`, `Outcome`, `Actor` and `Partnership` that read a secondary column
/// ([`Detail::secondary`]).
/// `tests/schema.rs` checks this list against the schema: a new field of any of these types
/// must be listed here or in that test's core list. A name is listed once, whatever the types
/// it widens the read for: naming `kind` or `parent`, say, widens actions' reads as well as
/// actors', which costs columns, never answers.
pub const SECONDARY_FIELDS: &[&str] = &[
    // Action
    "summary",
    "schedule",
    // Outcome
    "measure",
    "statement",
    "periodStart",
    "periodEnd",
    "visibility",
    // Actor (`description` for Partnership too, `website` for Action too)
    "kind",
    "acronym",
    "description",
    "website",
    "territoryCode",
    "territoryName",
    "parent",
];

impl Detail {
    /// Everything: exports, research, mutations' read-back.
    pub const FULL: Detail = Detail {
        themes: true,
        places: true,
        disaggregations: true,
        provenance: true,
        secondary: true,
    };

    /// The records alone.
    pub const NONE: Detail = Detail {
        themes: false,
        places: false,
        disaggregations: false,
        provenance: false,
        secondary: false,
    };

    /// Widens to what a field of this name can ask for.
    pub fn note(&mut self, field: &str) {
        match field {
            "themes" => self.themes = true,
            "places" => self.places = true,
            "disaggregations" => self.disaggregations = true,
            "provenance" => self.provenance = true,
            _ if SECONDARY_FIELDS.contains(&field) => self.secondary = true,
            _ => {}
        }
    }
}

// ---------------------------------------------------------------- partners

pub fn partners(conn: &mut AnyConnection) -> Result<Vec<domain::Partner>> {
    let rows = partners::table
        .select(PartnerRow::as_select())
        .order_by(partners::id)
        .load(conn)?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub fn partners_by_ids(conn: &mut AnyConnection, ids: &[String]) -> Result<Vec<domain::Partner>> {
    let rows = partners::table
        .filter(partners::id.eq_any(ids))
        .select(PartnerRow::as_select())
        .load(conn)?;
    Ok(rows.into_iter().map(Into::into).collect())
}

// ---------------------------------------------------------------- actors

#[derive(Debug, Clone, Default)]
pub struct ActorQuery {
    pub owners: Vec<String>,
    pub kinds: Vec<domain::ActorKind>,
    pub territory: Option<String>,
    pub text: Option<String>,
}

fn actor_query(rf: &RowFilter, q: &ActorQuery) -> actors::BoxedQuery<'static, MultiBackend> {
    let mut query = actors::table.filter(visible_to!(actors, rf)).into_boxed();
    if !q.owners.is_empty() {
        query = query.filter(actors::owner_partner_id.eq_any(q.owners.clone()));
    }
    if !q.kinds.is_empty() {
        query = query
            .filter(actors::kind.eq_any(q.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>()));
    }
    if let Some(t) = &q.territory {
        query = query.filter(actors::territory_code.like(territory_pattern(t)));
    }
    if let Some(text) = &q.text {
        query = query.filter(
            actors::search_text
                .like(contains_pattern(text))
                .escape('\\'),
        );
    }
    query
}

/// A page of actors sorted by name, each with its sort key.
pub fn actors_page(
    conn: &mut AnyConnection,
    rf: &RowFilter,
    q: &ActorQuery,
    page: &PageRequest,
) -> Result<Vec<(String, domain::Actor)>> {
    let rows: Vec<ActorRecord> = apply_page!(actor_query(rf, q), actors::name, actors::id, page)
        .select(ActorRecord::as_select())
        .load(conn)?;
    rows.into_iter()
        .map(|r| Ok((r.brief.name.clone(), r.into_domain()?)))
        .collect()
}

pub fn count_actors(conn: &mut AnyConnection, rf: &RowFilter, q: &ActorQuery) -> Result<i64> {
    Ok(actor_query(rf, q).count().get_result(conn)?)
}

pub fn actors_by_ids(
    conn: &mut AnyConnection,
    rf: &RowFilter,
    ids: &[String],
) -> Result<Vec<domain::Actor>> {
    let rows: Vec<ActorRecord> = actors::table
        .filter(visible_to!(actors, rf))
        .filter(actors::id.eq_any(ids))
        .select(ActorRecord::as_select())
        .load(conn)?;
    rows.into_iter().map(ActorRecord::into_domain).collect()
}

// ---------------------------------------------------------------- actions

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ActionSort {
    #[default]
    Title,
    Start,
}

#[derive(Debug, Clone, Default)]
pub struct ActionQuery {
    pub owners: Vec<String>,
    pub kinds: Vec<domain::ActionKind>,
    pub statuses: Vec<domain::ActionStatus>,
    pub territory: Option<String>,
    pub period: Period,
    pub themes: Vec<String>,
    pub text: Option<String>,
    pub parent: Option<String>,
}

/// `rf`'s visible actions that `q` selects, as a boxed query for backend `$db`: `MultiBackend`,
/// or a backend's own inside [`natively!`].
macro_rules! action_query {
    ($rf:expr, $q:expr, $db:ty) => {{
        let rf: &RowFilter = $rf;
        let q: &ActionQuery = $q;
        let mut query = actions::table
            .filter(visible_to!(actions, rf))
            .into_boxed::<$db>();
        match q.owners.as_slice() {
            [] => {}
            // An equality, not `= ANY` of one: only then does the database read a partner's page
            // in order from `actions_owner_title_idx` or `actions_owner_start_idx` (a dashboard's
            // query), rather than walk the whole ordering and skip other partners' rows.
            [one] => query = query.filter(actions::owner_partner_id.eq(one.clone())),
            many => query = query.filter(actions::owner_partner_id.eq_any(many.to_vec())),
        }
        if !q.kinds.is_empty() {
            query = query.filter(
                actions::kind.eq_any(q.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>()),
            );
        }
        if !q.statuses.is_empty() {
            query = query.filter(
                actions::status.eq_any(q.statuses.iter().map(|k| k.as_str()).collect::<Vec<_>>()),
            );
        }
        if let Some(t) = &q.territory {
            let places = action_places::table
                .filter(action_places::insee_code.like(territory_pattern(t)))
                .select(action_places::action_id);
            query = query.filter(actions::id.eq_any(places));
        }
        if !q.themes.is_empty() {
            let themed = action_themes::table
                .filter(action_themes::theme.eq_any(q.themes.clone()))
                .select(action_themes::action_id);
            query = query.filter(actions::id.eq_any(themed));
        }
        if let Some(text) = &q.text {
            query = query.filter(
                actions::search_text
                    .like(contains_pattern(text))
                    .escape('\\'),
            );
        }
        if let Some(parent) = &q.parent {
            // Seen through the reader's rows first ([`seen_parent`]).
            query = query.filter(actions::parent_action_id.eq(parent.clone()));
        }
        apply_period!(query, actions, &q.period)
    }};
}

/// `q` with its `parent` seen through the reader's rows: a parent the reader may not see becomes
/// an id no record has, so it selects what a missing one does.
fn seen_parent<'q>(
    conn: &mut AnyConnection,
    rf: &RowFilter,
    q: &'q ActionQuery,
) -> Result<std::borrow::Cow<'q, ActionQuery>> {
    let Some(parent) = &q.parent else {
        return Ok(std::borrow::Cow::Borrowed(q));
    };
    let seen: i64 = actions::table
        .filter(visible_to!(actions, rf))
        .filter(actions::id.eq(parent))
        .count()
        .get_result(conn)?;
    if seen > 0 {
        return Ok(std::borrow::Cow::Borrowed(q));
    }
    Ok(std::borrow::Cow::Owned(ActionQuery {
        // Ids are never empty (`domain::write`).
        parent: Some(String::new()),
        ..q.clone()
    }))
}

fn action_query(rf: &RowFilter, q: &ActionQuery) -> actions::BoxedQuery<'static, MultiBackend> {
    action_query!(rf, q, MultiBackend)
}

/// The actions `$query` selects, read with the columns `$detail` asks for: all of them for a
/// document that names a secondary field or `provenance`, the core ones otherwise.
macro_rules! load_actions {
    ($query:expr, $detail:expr, $conn:expr) => {{
        let detail: Detail = $detail;
        if detail.secondary || detail.provenance {
            load_into(
                $query.select(ActionRecord::as_select()),
                $conn,
                |r: ActionRecord| r,
            )?
        } else {
            load_into(
                $query.select(ActionCore::as_select()),
                $conn,
                |r: ActionCore| ActionRecord::from(r),
            )?
        }
    }};
}

/// Loads the themes and places of the given action rows (as far as `detail` asks): one statement
/// each whatever their number.
fn hydrate_actions(
    conn: &mut AnyConnection,
    detail: Detail,
    rows: Vec<ActionRecord>,
) -> Result<Vec<domain::Action>> {
    let ids: Vec<&String> = rows.iter().map(|r| &r.id).collect();
    let mut themes: HashMap<String, Vec<String>> = HashMap::new();
    let mut places: HashMap<String, Vec<domain::Place>> = HashMap::new();
    if !ids.is_empty() && detail.themes {
        let theme_rows: Vec<ThemeRow> = action_themes::table
            .filter(action_themes::action_id.eq_any(&ids))
            .order_by((action_themes::action_id, action_themes::theme))
            .select(ThemeRow::as_select())
            .load(conn)?;
        for t in theme_rows {
            themes.entry(t.action_id).or_default().push(t.theme);
        }
    }
    if !ids.is_empty() && detail.places {
        let place_rows: Vec<PlaceRow> = action_places::table
            .filter(action_places::action_id.eq_any(&ids))
            .order_by((action_places::action_id, action_places::position))
            .select(PlaceRow::as_select())
            .load(conn)?;
        for p in place_rows {
            let id = p.action_id.clone();
            places.entry(id).or_default().push(p.into_domain()?);
        }
    }
    rows.into_iter()
        .map(|r| {
            let t = themes.remove(&r.id).unwrap_or_default();
            let p = places.remove(&r.id).unwrap_or_default();
            r.into_domain(t, p)
        })
        .collect()
}

pub fn actions_page(
    conn: &mut AnyConnection,
    rf: &RowFilter,
    detail: Detail,
    q: &ActionQuery,
    sort: ActionSort,
    page: &PageRequest,
) -> Result<Vec<(String, domain::Action)>> {
    let q = &*seen_parent(conn, rf, q)?;
    // On the backend's own connection: a dashboard's page, read at every request.
    let rows: Vec<ActionRecord> = natively!(conn, |c: Db| match sort {
        ActionSort::Title => load_actions!(
            apply_page!(action_query!(rf, q, Db), actions::title, actions::id, page),
            detail,
            c
        ),
        ActionSort::Start => load_actions!(
            apply_page!(
                action_query!(rf, q, Db),
                actions::sort_start,
                actions::id,
                page
            ),
            detail,
            c
        ),
    });
    let keys: Vec<String> = rows
        .iter()
        .map(|r| match sort {
            ActionSort::Title => r.title.clone(),
            ActionSort::Start => r.sort_start.clone(),
        })
        .collect();
    Ok(keys
        .into_iter()
        .zip(hydrate_actions(conn, detail, rows)?)
        .collect())
}

pub fn count_actions(conn: &mut AnyConnection, rf: &RowFilter, q: &ActionQuery) -> Result<i64> {
    let q = &*seen_parent(conn, rf, q)?;
    Ok(action_query(rf, q).count().get_result(conn)?)
}

pub fn actions_by_ids(
    conn: &mut AnyConnection,
    rf: &RowFilter,
    detail: Detail,
    ids: &[String],
) -> Result<Vec<domain::Action>> {
    let rows = load_actions!(
        actions::table
            .filter(visible_to!(actions, rf))
            .filter(actions::id.eq_any(ids)),
        detail,
        conn
    );
    hydrate_actions(conn, detail, rows)
}

/// The visible sub-actions of each of the given actions.
pub fn actions_by_parents(
    conn: &mut AnyConnection,
    rf: &RowFilter,
    detail: Detail,
    parents: &[String],
) -> Result<Vec<domain::Action>> {
    let rows = load_actions!(
        actions::table
            .filter(visible_to!(actions, rf))
            .filter(actions::parent_action_id.eq_any(parents))
            .order_by((actions::sort_start, actions::id)),
        detail,
        conn
    );
    hydrate_actions(conn, detail, rows)
}

// ---------------------------------------------------------------- outcomes

#[derive(Debug, Clone, Default)]
pub struct OutcomeQuery {
    pub owners: Vec<String>,
    pub measures: Vec<domain::OutcomeMeasure>,
    pub action_ids: Vec<String>,
    pub territory: Option<String>,
    pub themes: Vec<String>,
    pub period: Period,
    pub text: Option<String>,
}

fn outcome_query(rf: &RowFilter, q: &OutcomeQuery) -> outcomes::BoxedQuery<'static, MultiBackend> {
    // An outcome is readable only where its action is too. Asked for given actions, only those
    // are checked (an index lookup), not every visible action.
    let visible = outcomes::table.filter(visible_to!(outcomes, rf));
    let mut query = if q.action_ids.is_empty() {
        let visible_actions = actions::table
            .filter(visible_to!(actions, rf))
            .select(actions::id);
        visible
            .filter(outcomes::action_id.eq_any(visible_actions))
            .into_boxed()
    } else {
        let visible_actions = actions::table
            .filter(visible_to!(actions, rf))
            .filter(actions::id.eq_any(q.action_ids.clone()))
            .select(actions::id);
        visible
            .filter(outcomes::action_id.eq_any(visible_actions))
            .into_boxed()
    };
    if !q.owners.is_empty() {
        query = query.filter(outcomes::owner_partner_id.eq_any(q.owners.clone()));
    }
    if !q.measures.is_empty() {
        query = query.filter(
            outcomes::measure.eq_any(q.measures.iter().map(|k| k.as_str()).collect::<Vec<_>>()),
        );
    }
    if !q.action_ids.is_empty() {
        query = query.filter(outcomes::action_id.eq_any(q.action_ids.clone()));
    }
    if let Some(t) = &q.territory {
        let places = action_places::table
            .filter(action_places::insee_code.like(territory_pattern(t)))
            .select(action_places::action_id);
        query = query.filter(outcomes::action_id.eq_any(places));
    }
    if !q.themes.is_empty() {
        let themed = action_themes::table
            .filter(action_themes::theme.eq_any(q.themes.clone()))
            .select(action_themes::action_id);
        query = query.filter(outcomes::action_id.eq_any(themed));
    }
    if let Some(text) = &q.text {
        query = query.filter(
            outcomes::search_text
                .like(contains_pattern(text))
                .escape('\\'),
        );
    }
    apply_period!(query, outcomes, &q.period)
}

/// The outcome records `$query` selects: with their provenance only when `$detail` asks for it
/// (otherwise `OutcomeRecord::provenance` is empty), and with their secondary columns only when
/// it asks for those or for provenance (otherwise the placeholders of `OutcomeCore`). A macro,
/// so that `$conn` may be either `AnyConnection` or a backend's own ([`natively!`]).
macro_rules! load_outcomes {
    ($query:expr, $detail:expr, $conn:expr) => {{
        let detail: Detail = $detail;
        let query = $query;
        if detail.provenance {
            load_into(
                query.select(OutcomeRecord::as_select()),
                $conn,
                |r: OutcomeRecord| r,
            )?
        } else if detail.secondary {
            load_into(
                query.select(OutcomeBrief::as_select()),
                $conn,
                |r: OutcomeBrief| OutcomeRecord::from(r),
            )?
        } else {
            load_into(
                query.select(OutcomeCore::as_select()),
                $conn,
                |r: OutcomeCore| OutcomeRecord::from(r),
            )?
        }
    }};
}

fn hydrate_outcomes(
    conn: &mut AnyConnection,
    detail: Detail,
    rows: Vec<OutcomeRecord>,
) -> Result<Vec<domain::Outcome>> {
    let mut cells: RecordMap<String, Vec<domain::Disaggregation>> = RecordMap::default();
    if !rows.is_empty() && detail.disaggregations {
        let ids: Vec<&String> = rows.iter().map(|r| &r.brief.id).collect();
        let found: Vec<DisaggregationRow> = outcome_disaggregations::table
            .filter(outcome_disaggregations::outcome_id.eq_any(&ids))
            .order_by((
                outcome_disaggregations::outcome_id,
                outcome_disaggregations::position,
            ))
            .select(DisaggregationRow::as_select())
            .load(conn)?;
        for d in found {
            cells
                .entry(d.outcome_id)
                .or_default()
                .push(domain::Disaggregation {
                    dimension: d.dimension,
                    category: d.category,
                    value: d.value,
                });
        }
    }
    rows.into_iter()
        .map(|r| {
            // Not hashed for nothing when the document asks for no disaggregation.
            let c = if cells.is_empty() {
                Vec::new()
            } else {
                cells.remove(&r.brief.id).unwrap_or_default()
            };
            r.into_domain(c)
        })
        .collect()
}

/// A page of outcomes sorted by indicator.
pub fn outcomes_page(
    conn: &mut AnyConnection,
    rf: &RowFilter,
    detail: Detail,
    q: &OutcomeQuery,
    page: &PageRequest,
) -> Result<Vec<(String, domain::Outcome)>> {
    let query = apply_page!(
        outcome_query(rf, q),
        outcomes::indicator,
        outcomes::id,
        page
    );
    let rows = load_outcomes!(query, detail, conn);
    let keys: Vec<String> = rows.iter().map(|r| r.brief.indicator.clone()).collect();
    Ok(keys
        .into_iter()
        .zip(hydrate_outcomes(conn, detail, rows)?)
        .collect())
}

pub fn count_outcomes(conn: &mut AnyConnection, rf: &RowFilter, q: &OutcomeQuery) -> Result<i64> {
    Ok(outcome_query(rf, q).count().get_result(conn)?)
}

pub fn outcomes_by_ids(
    conn: &mut AnyConnection,
    rf: &RowFilter,
    detail: Detail,
    ids: &[String],
) -> Result<Vec<domain::Outcome>> {
    let q = OutcomeQuery::default();
    let query = outcome_query(rf, &q).filter(outcomes::id.eq_any(ids.to_vec()));
    let rows = load_outcomes!(query, detail, conn);
    hydrate_outcomes(conn, detail, rows)
}

/// The visible outcomes of each of the given actions, by indicator then id (in byte order,
/// the same on both backends).
pub fn outcomes_by_actions(
    conn: &mut AnyConnection,
    rf: &RowFilter,
    detail: Detail,
    action_ids: &[String],
) -> Result<Vec<domain::Outcome>> {
    let q = OutcomeQuery {
        action_ids: action_ids.to_vec(),
        ..Default::default()
    };
    let rows = load_outcomes!(outcome_query(rf, &q), detail, conn);
    let mut outcomes = hydrate_outcomes(conn, detail, rows)?;
    outcomes.sort_unstable_by(outcome_order);
    Ok(outcomes)
}

/// [`outcomes_by_actions`] for actions just read with the same `rf` (a page's own actions,
/// [`crate::graphql::prefetch`]): the outcomes' own visibility is checked, their actions' is
/// not checked a second time. That check was a third of the statement's time. Never for
/// action ids a client gave: those go through [`outcomes_by_actions`]. In no particular
/// order: the caller sorts each action's by [`outcome_order`], fewer and cheaper to sort than
/// all of them at once.
pub fn outcomes_of_read_actions(
    conn: &mut AnyConnection,
    rf: &RowFilter,
    detail: Detail,
    read_action_ids: &[String],
) -> Result<Vec<domain::Outcome>> {
    // On the backend's own connection. On PostgreSQL the ids are one array parameter, so the
    // statement is the same whatever the page's size, prepared once per connection (its SQL is
    // still written at each execution: diesel gives a list of values no static identity).
    let rows = natively!(conn, |c: Db| load_outcomes!(
        outcomes::table
            .filter(visible_to!(outcomes, rf))
            .filter(outcomes::action_id.eq_any(read_action_ids)),
        detail,
        c
    ));
    hydrate_outcomes(conn, detail, rows)
}

/// The order of an action's outcomes: by indicator then id, in byte order (the same on both
/// backends). Sorted here rather than by the database: there it was half the statement's time,
/// and nothing pages through these lists.
pub fn outcome_order(a: &domain::Outcome, b: &domain::Outcome) -> std::cmp::Ordering {
    (&a.indicator, &a.id).cmp(&(&b.indicator, &b.id))
}

// ---------------------------------------------------------------- partnerships

#[derive(Debug, Clone, Default)]
pub struct PartnershipQuery {
    pub owners: Vec<String>,
    /// Partnerships serving any of these actions, or with any of these actors as members. A
    /// reader's filter is seen through its rows first ([`seen_names`]); loaders' keys were read
    /// for the reader already.
    pub action_ids: Vec<String>,
    pub actor_ids: Vec<String>,
    pub period: Period,
    pub text: Option<String>,
}

/// `rf`'s visible partnerships that `q` selects, on any query that reads `partnerships`
/// (alone or joined with its members).
macro_rules! partnership_filters {
    ($query:expr, $rf:expr, $q:expr) => {{
        let q: &PartnershipQuery = $q;
        let mut query = $query.filter(visible_to!(partnerships, $rf));
        if !q.owners.is_empty() {
            query = query.filter(partnerships::owner_partner_id.eq_any(q.owners.clone()));
        }
        if !q.action_ids.is_empty() {
            query = query.filter(partnerships::action_id.eq_any(q.action_ids.clone()));
        }
        if !q.actor_ids.is_empty() {
            // An alias, so the query may also join the members it returns.
            let m = diesel::alias!(partnership_members as with_actor);
            let with_actor = m
                .filter(
                    m.field(partnership_members::actor_id)
                        .eq_any(q.actor_ids.clone()),
                )
                .select(m.field(partnership_members::partnership_id));
            query = query.filter(partnerships::id.eq_any(with_actor));
        }
        if let Some(text) = &q.text {
            query = query.filter(
                partnerships::search_text
                    .like(contains_pattern(text))
                    .escape('\\'),
            );
        }
        apply_period!(query, partnerships, &q.period)
    }};
}

/// `q` with the actions and actors it names seen through the reader's rows: those the reader may
/// not see are left out, and a list left empty becomes one id no record has, so a hidden record
/// selects what a missing one does.
fn seen_names<'q>(
    conn: &mut AnyConnection,
    rf: &RowFilter,
    q: &'q PartnershipQuery,
) -> Result<std::borrow::Cow<'q, PartnershipQuery>> {
    if q.action_ids.is_empty() && q.actor_ids.is_empty() {
        return Ok(std::borrow::Cow::Borrowed(q));
    }
    let named = domain::References {
        actors: q.actor_ids.clone(),
        actions: q.action_ids.clone(),
    };
    let seen = visible(conn, rf, &named)?;
    let keep = |ids: &[String], seen: &std::collections::HashSet<String>| -> Vec<String> {
        if ids.is_empty() {
            return Vec::new();
        }
        let kept: Vec<String> = ids.iter().filter(|i| seen.contains(*i)).cloned().collect();
        // Ids are never empty (`domain::write`).
        if kept.is_empty() {
            vec![String::new()]
        } else {
            kept
        }
    };
    Ok(std::borrow::Cow::Owned(PartnershipQuery {
        action_ids: keep(&q.action_ids, &seen.actions),
        actor_ids: keep(&q.actor_ids, &seen.actors),
        ..q.clone()
    }))
}

fn partnership_query(
    rf: &RowFilter,
    q: &PartnershipQuery,
) -> partnerships::BoxedQuery<'static, MultiBackend> {
    partnership_filters!(partnerships::table.into_boxed(), rf, q)
}

fn hydrate_partnerships(
    conn: &mut AnyConnection,
    rows: Vec<PartnershipRecord>,
) -> Result<Vec<domain::Partnership>> {
    let ids: Vec<&String> = rows.iter().map(|r| &r.brief.id).collect();
    let mut members: RecordMap<String, Vec<domain::Member>> = RecordMap::default();
    if !ids.is_empty() {
        let found: Vec<MemberRow> = partnership_members::table
            .filter(partnership_members::partnership_id.eq_any(&ids))
            .order_by((
                partnership_members::partnership_id,
                partnership_members::position,
            ))
            .select(MemberRow::as_select())
            .load(conn)?;
        for m in found {
            let id = m.partnership_id.clone();
            members.entry(id).or_default().push(m.into_domain()?);
        }
    }
    rows.into_iter()
        .map(|r| {
            let m = members.remove(&r.brief.id).unwrap_or_default();
            r.into_domain(m)
        })
        .collect()
}

/// A page of partnerships sorted by name.
pub fn partnerships_page(
    conn: &mut AnyConnection,
    rf: &RowFilter,
    q: &PartnershipQuery,
    page: &PageRequest,
) -> Result<Vec<(String, domain::Partnership)>> {
    let q = &*seen_names(conn, rf, q)?;
    let rows: Vec<PartnershipRecord> = apply_page!(
        partnership_query(rf, q),
        partnerships::name,
        partnerships::id,
        page
    )
    .select(PartnershipRecord::as_select())
    .load(conn)?;
    let keys: Vec<String> = rows.iter().map(|r| r.brief.name.clone()).collect();
    Ok(keys
        .into_iter()
        .zip(hydrate_partnerships(conn, rows)?)
        .collect())
}

pub fn count_partnerships(
    conn: &mut AnyConnection,
    rf: &RowFilter,
    q: &PartnershipQuery,
) -> Result<i64> {
    let q = &*seen_names(conn, rf, q)?;
    Ok(partnership_query(rf, q).count().get_result(conn)?)
}

pub fn partnerships_by_ids(
    conn: &mut AnyConnection,
    rf: &RowFilter,
    ids: &[String],
) -> Result<Vec<domain::Partnership>> {
    let rows: Vec<PartnershipRecord> = partnership_query(rf, &PartnershipQuery::default())
        .filter(partnerships::id.eq_any(ids.to_vec()))
        .select(PartnershipRecord::as_select())
        .load(conn)?;
    hydrate_partnerships(conn, rows)
}

/// Visible partnerships that serve any of the given actions, or have any of the given actors
/// as a member, with their members: one statement for the whole batch.
pub fn partnerships_for(
    conn: &mut AnyConnection,
    rf: &RowFilter,
    q: &PartnershipQuery,
) -> Result<Vec<domain::Partnership>> {
    // A row per member.
    let rows: Vec<(PartnershipRecord, Option<MemberRow>)> = partnership_filters!(
        partnerships::table
            .left_join(partnership_members::table)
            .into_boxed(),
        rf,
        q
    )
    .select((
        PartnershipRecord::as_select(),
        Option::<MemberRow>::as_select(),
    ))
    .load(conn)?;
    Ok(group_members(rows.into_iter().map(|(p, m)| (p, m, None)))?.0)
}

/// [`partnerships_for`] with the members' actors that `rf` allows (a hidden actor comes back
/// as no actor), still in one statement; without the provenance columns of either when
/// `detail` does not ask for them.
pub fn partnerships_with_actors(
    conn: &mut AnyConnection,
    rf: &RowFilter,
    detail: Detail,
    q: &PartnershipQuery,
) -> Result<(Vec<domain::Partnership>, Vec<domain::Actor>)> {
    // The same join, on the backend's own connection, read into the row types `detail` asks
    // for, then made whole records.
    macro_rules! read_as {
        ($partnership:ty, $actor:ty) => {{
            natively!(conn, |c: Db| {
                let visible_member = actors::id
                    .eq(partnership_members::actor_id)
                    .and(visible_to!(actors, rf));
                let query = partnership_filters!(
                    partnerships::table
                        .left_join(partnership_members::table)
                        .left_join(actors::table.on(visible_member))
                        .into_boxed::<Db>(),
                    rf,
                    q
                );
                let rows = load_into(
                    query.select((
                        <$partnership>::as_select(),
                        Option::<MemberRow>::as_select(),
                        Option::<$actor>::as_select(),
                    )),
                    c,
                    |(p, m, a): ($partnership, Option<MemberRow>, Option<$actor>)| {
                        (PartnershipRecord::from(p), m, a.map(ActorRecord::from))
                    },
                )?;
                group_members(rows.into_iter())
            })
        }};
    }
    if detail.provenance {
        read_as!(PartnershipRecord, ActorRecord)
    } else if detail.secondary {
        read_as!(PartnershipBrief, ActorBrief)
    } else {
        read_as!(PartnershipCore, ActorCore)
    }
}

/// Partnerships from rows of (partnership, member, member's actor), in any order: by name then
/// id, each with its members in their order; each actor once. Ordered here rather than by the
/// database (`ORDER BY` was a fifth of the join's time), in byte order on both backends, as
/// outcomes are.
fn group_members(
    rows: impl Iterator<Item = (PartnershipRecord, Option<MemberRow>, Option<ActorRecord>)>,
) -> Result<(Vec<domain::Partnership>, Vec<domain::Actor>)> {
    let mut found: Vec<(PartnershipRecord, Vec<MemberRow>)> = Vec::new();
    let mut index: RecordMap<String, usize> = RecordMap::default();
    let mut actors: RecordMap<String, domain::Actor> = RecordMap::default();
    for (partnership, member, actor) in rows {
        if let Some(a) = actor {
            if !actors.contains_key(&a.brief.id) {
                actors.insert(a.brief.id.clone(), a.into_domain()?);
            }
        }
        let at = match index.get(&partnership.brief.id) {
            Some(&at) => at,
            None => {
                index.insert(partnership.brief.id.clone(), found.len());
                found.push((partnership, Vec::new()));
                found.len() - 1
            }
        };
        found[at].1.extend(member);
    }
    found.sort_unstable_by(|(a, _), (b, _)| {
        (&a.brief.name, &a.brief.id).cmp(&(&b.brief.name, &b.brief.id))
    });
    let partnerships = found
        .into_iter()
        .map(|(p, mut members)| {
            members.sort_unstable_by_key(|m| m.position);
            let members = members
                .into_iter()
                .map(MemberRow::into_domain)
                .collect::<Result<_>>()?;
            p.into_domain(members)
        })
        .collect::<Result<_>>()?;
    Ok((partnerships, actors.into_values().collect()))
}

/// What the database groups research figures by. Each grouping reads one row per group, so a
/// research aggregate's memory follows the number of cells it can have, not the number of
/// outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactGroup {
    /// The owning partner.
    Owner,
    /// The period's start day.
    PeriodStart,
    /// The action, with its parent and title.
    Action,
    /// Each theme of the action (a figure once per theme; `None` for an action with none).
    Theme,
    /// Each place of the action (a figure once per place; `None` for an action with none).
    Place,
}

/// The key of one group of research figures; which variant follows the `FactGroup`.
#[derive(Debug, Clone, PartialEq)]
pub enum FactKey {
    Owner(String),
    PeriodStart(Option<String>),
    Action {
        id: String,
        parent: Option<String>,
        title: String,
    },
    Theme(Option<String>),
    Place {
        insee_code: Option<String>,
        name: Option<String>,
    },
}

/// One group of research figures, counted and summed in the database.
#[derive(Debug, Clone, PartialEq)]
pub struct ResearchFact {
    pub key: FactKey,
    /// How many figures.
    pub records: i64,
    pub sum: f64,
}

/// The research figures' row policy, for every grouping: the `actual` outcome figures in
/// `unit` that `rf` allows (the outcome and its action visible, as in `outcome_query`).
/// A query that joins `actions` already filters it directly (`joined actions`).
macro_rules! research_figures {
    ($query:expr, $rf:expr, $unit:expr) => {{
        let rf: &RowFilter = $rf;
        let visible_actions = actions::table
            .filter(visible_to!(actions, rf))
            .select(actions::id);
        research_figures!(@outcomes $query.filter(outcomes::action_id.eq_any(visible_actions)), rf, $unit)
    }};
    (joined actions $query:expr, $rf:expr, $unit:expr) => {{
        let rf: &RowFilter = $rf;
        research_figures!(@outcomes $query.filter(visible_to!(actions, rf)), rf, $unit)
    }};
    (@outcomes $query:expr, $rf:expr, $unit:expr) => {
        $query
            .filter(visible_to!(outcomes, $rf))
            .filter(outcomes::measure.eq(domain::OutcomeMeasure::Actual.as_str()))
            .filter(outcomes::unit.eq($unit.to_owned()))
            .filter(outcomes::value.is_not_null())
    };
}

/// The research figures in `unit` that `rf` allows, counted and summed by `by` in the
/// database (one statement).
pub fn research_facts(
    conn: &mut AnyConnection,
    rf: &RowFilter,
    unit: &str,
    by: FactGroup,
) -> Result<Vec<ResearchFact>> {
    use diesel::dsl::{count_star, sum};
    let fact = |key, records, sum: Option<f64>| ResearchFact {
        key,
        records,
        sum: sum.unwrap_or(0.0),
    };
    Ok(match by {
        FactGroup::Owner => {
            let rows: Vec<(String, i64, Option<f64>)> =
                research_figures!(outcomes::table, rf, unit)
                    .group_by(outcomes::owner_partner_id)
                    .select((
                        outcomes::owner_partner_id,
                        count_star(),
                        sum(outcomes::value),
                    ))
                    .load(conn)?;
            rows.into_iter()
                .map(|(k, r, s)| fact(FactKey::Owner(k), r, s))
                .collect()
        }
        FactGroup::PeriodStart => {
            let rows: Vec<(Option<String>, i64, Option<f64>)> =
                research_figures!(outcomes::table, rf, unit)
                    .group_by(outcomes::period_start)
                    .select((outcomes::period_start, count_star(), sum(outcomes::value)))
                    .load(conn)?;
            rows.into_iter()
                .map(|(k, r, s)| fact(FactKey::PeriodStart(k), r, s))
                .collect()
        }
        FactGroup::Action => {
            type Row = (String, Option<String>, String, i64, Option<f64>);
            let rows: Vec<Row> =
                research_figures!(joined actions outcomes::table.inner_join(actions::table), rf, unit)
                    .group_by((actions::id, actions::parent_action_id, actions::title))
                    .select((
                        actions::id,
                        actions::parent_action_id,
                        actions::title,
                        count_star(),
                        sum(outcomes::value),
                    ))
                    .load(conn)?;
            rows.into_iter()
                .map(|(id, parent, title, r, s)| fact(FactKey::Action { id, parent, title }, r, s))
                .collect()
        }
        FactGroup::Theme => {
            let rows: Vec<(Option<String>, i64, Option<f64>)> = research_figures!(
                outcomes::table.left_join(
                    action_themes::table.on(action_themes::action_id.eq(outcomes::action_id))
                ),
                rf,
                unit
            )
            .group_by(action_themes::theme)
            .select((
                action_themes::theme.nullable(),
                count_star(),
                sum(outcomes::value),
            ))
            .load(conn)?;
            rows.into_iter()
                .map(|(k, r, s)| fact(FactKey::Theme(k), r, s))
                .collect()
        }
        FactGroup::Place => {
            type Row = (Option<String>, Option<String>, i64, Option<f64>);
            let rows: Vec<Row> = research_figures!(
                outcomes::table.left_join(
                    action_places::table.on(action_places::action_id.eq(outcomes::action_id))
                ),
                rf,
                unit
            )
            .group_by((action_places::insee_code, action_places::name))
            .select((
                action_places::insee_code.nullable(),
                action_places::name.nullable(),
                count_star(),
                sum(outcomes::value),
            ))
            .load(conn)?;
            rows.into_iter()
                .map(|(insee_code, name, r, s)| fact(FactKey::Place { insee_code, name }, r, s))
                .collect()
        }
    })
}

/// The count and sum of every research figure in `unit` that `rf` allows, each once.
pub fn research_total(conn: &mut AnyConnection, rf: &RowFilter, unit: &str) -> Result<(i64, f64)> {
    use diesel::dsl::{count_star, sum};
    let (records, total): (i64, Option<f64>) = research_figures!(outcomes::table, rf, unit)
        .select((count_star(), sum(outcomes::value)))
        .first(conn)?;
    Ok((records, total.unwrap_or(0.0)))
}

/// The partners owning at least one record of `kind` that `rf` lets its viewer read: whose
/// records an export of that kind returns, for the audit log (one statement).
pub fn visible_owners(
    conn: &mut AnyConnection,
    rf: &RowFilter,
    kind: EntityKind,
) -> Result<std::collections::BTreeSet<String>> {
    let owners: Vec<String> = match kind {
        EntityKind::Partner => Vec::new(),
        EntityKind::Actor => actor_query(rf, &Default::default())
            .select(actors::owner_partner_id)
            .distinct()
            .load(conn)?,
        EntityKind::Action => action_query(rf, &Default::default())
            .select(actions::owner_partner_id)
            .distinct()
            .load(conn)?,
        EntityKind::Outcome => outcome_query(rf, &Default::default())
            .select(outcomes::owner_partner_id)
            .distinct()
            .load(conn)?,
        EntityKind::Partnership => partnership_query(rf, &Default::default())
            .select(partnerships::owner_partner_id)
            .distinct()
            .load(conn)?,
    };
    Ok(owners.into_iter().collect())
}

/// Of the ids `refs` names, those `rf` lets the reader see: what [`domain::Project`] keeps of a
/// record's references. One statement per kind named, none when there is nothing to ask.
pub fn visible(
    conn: &mut AnyConnection,
    rf: &RowFilter,
    refs: &domain::References,
) -> Result<domain::Visible> {
    let mut visible = domain::Visible::default();
    if !refs.actors.is_empty() {
        let ids: Vec<String> = actors::table
            .filter(visible_to!(actors, rf))
            .filter(actors::id.eq_any(refs.actors.clone()))
            .select(actors::id)
            .load(conn)?;
        visible.actors = ids.into_iter().collect();
    }
    if !refs.actions.is_empty() {
        let ids: Vec<String> = actions::table
            .filter(visible_to!(actions, rf))
            .filter(actions::id.eq_any(refs.actions.clone()))
            .select(actions::id)
            .load(conn)?;
        visible.actions = ids.into_iter().collect();
    }
    Ok(visible)
}
