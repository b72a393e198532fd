//! Push: partners create, update and retire their own records. One mutation object per domain
//! concept, merged into the root.
//!
//! Every mutation takes the record's id from the client (`input.id`, any 1-100 characters of
//! letters, digits, `-`, `_`; a UUID is fine): the same id with the same content is `UNCHANGED`,
//! so a client retrying over a flaky network never creates a duplicate, and retiring twice is
//! harmless. Writes need the `write` scope; the owner is always the caller's partner. Each write
//! is one transaction through `storage::writes`, with provenance `push:<partner>`.

pub mod actions;
pub mod actors;
pub mod outcomes;
pub mod partners;
pub mod partnerships;

use crate::storage::EntityKind;
use async_graphql::{Context, Enum, MergedObject, SimpleObject};

use super::context::{request, RequestContext};
use crate::error::Result;
use crate::storage::writes;

/// What a write did.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum WriteEffect {
    /// The record did not exist; it does now.
    Created,
    /// The record existed with other content (or was retired); it has this content now.
    Updated,
    /// The record already had exactly this content: nothing changed.
    Unchanged,
}

impl From<writes::WriteEffect> for WriteEffect {
    fn from(e: writes::WriteEffect) -> Self {
        match e {
            writes::WriteEffect::Created => WriteEffect::Created,
            writes::WriteEffect::Updated => WriteEffect::Updated,
            writes::WriteEffect::Unchanged => WriteEffect::Unchanged,
        }
    }
}

/// What a retirement did.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum RetireEffect {
    /// The record is retired: no query returns it any more.
    Retired,
    /// It was retired already.
    Unchanged,
}

impl From<writes::RetireEffect> for RetireEffect {
    fn from(e: writes::RetireEffect) -> Self {
        match e {
            writes::RetireEffect::Retired => RetireEffect::Retired,
            writes::RetireEffect::Unchanged => RetireEffect::Unchanged,
        }
    }
}

/// The result of a `retire*` mutation.
#[derive(SimpleObject)]
pub struct RetirePayload {
    /// The id you retired (your own id for the record).
    pub local_id: String,
    pub effect: RetireEffect,
}

/// The request and the partner it may write as.
pub(crate) fn writer<'a>(ctx: &'a Context<'_>) -> Result<(&'a RequestContext, String)> {
    let rc = request(ctx)?;
    let partner = crate::ingest::writer_partner(&rc.viewer)?.to_owned();
    Ok((rc, partner))
}

/// The provenance of a record `partner` pushes.
pub(crate) fn pushed_by(partner: &str, source_ref: Option<String>) -> crate::domain::Provenance {
    crate::domain::Provenance {
        source: format!("push:{partner}"),
        source_ref,
        imported_at: String::new(),
        updated_at: String::new(),
    }
}

type Upsert<R> = fn(
    &mut crate::storage::AnyConnection,
    &crate::domain::RowFilter,
    &R,
    &str,
) -> crate::error::Result<crate::storage::writes::WriteEffect>;
type ReadBack<T> = fn(
    &mut crate::storage::AnyConnection,
    &crate::domain::RowFilter,
    &[String],
) -> crate::error::Result<Vec<T>>;

/// Writes `record` through the one write path as the caller, then reads it back as the caller
/// sees it (null if its visibility hides it from the caller's own scopes).
pub(crate) async fn upsert_then_read<R, T>(
    rc: &RequestContext,
    touches: &'static [EntityKind],
    id: String,
    record: R,
    upsert: Upsert<R>,
    read_back: ReadBack<T>,
) -> Result<(WriteEffect, Option<T>)>
where
    R: Send + 'static,
    T: Send + 'static,
{
    let rows = rc.viewer.writer_rows();
    let effect = rc
        .store
        .run(move |c| upsert(c, &rows, &record, &crate::app::now()))
        .await?;
    if !matches!(effect, writes::WriteEffect::Unchanged) {
        // Cached answers holding these kinds are stale from now on.
        rc.store.write_log().written(touches.iter().copied());
    }
    let stored = rc.read(move |c, rf| read_back(c, rf, &[id])).await?;
    Ok((effect.into(), stored.into_iter().next()))
}

type Retire = fn(
    &mut crate::storage::AnyConnection,
    &str,
    &str,
    &str,
) -> crate::error::Result<crate::storage::writes::RetireEffect>;

/// Retires one of the caller's records.
pub(crate) async fn retire(
    ctx: &Context<'_>,
    touches: &'static [EntityKind],
    id: String,
    retire: Retire,
) -> Result<RetirePayload> {
    let (rc, partner) = writer(ctx)?;
    let local = id.clone();
    let effect = rc
        .store
        .run(move |c| retire(c, &partner, &local, &crate::app::now()))
        .await?;
    if !matches!(effect, writes::RetireEffect::Unchanged) {
        rc.store.write_log().written(touches.iter().copied());
    }
    let effect = effect.into();
    Ok(RetirePayload {
        local_id: id,
        effect,
    })
}

#[derive(MergedObject, Default)]
pub struct Mutation(
    actors::ActorMutations,
    actions::ActionMutations,
    outcomes::OutcomeMutations,
    partnerships::PartnershipMutations,
    partners::PartnerMutations,
);
