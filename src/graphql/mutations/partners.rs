//! Partner management over GraphQL, for `admin` clients: the same rules and storage as
//! `passerelle partner ...` (`storage::partners`). Audited as every authenticated request is,
//! with the partner concerned named in the entry.

use async_graphql::{Context, InputObject, Object, SimpleObject};

use super::RetireEffect;
use crate::auth::ADMIN;
use crate::graphql::context::{request, RequestContext};
use crate::graphql::partners::Partner;
use crate::storage::partners::{self, PartnerEntry};
use crate::storage::EntityKind;

/// A partner to register.
#[derive(InputObject)]
pub struct CreatePartnerInput {
    /// 2-40 of a-z, 0-9 and `-`, starting with a letter, not ending with `-`; neither a
    /// `-`-prefix of another partner's slug nor the other way round (`cara` and `cara-van`):
    /// the records a partner writes have ids starting with `{slug}-`.
    pub slug: String,
    pub name: String,
    pub description: Option<String>,
}

/// Changes to a partner; absent fields are left as they are, a null description clears it.
#[derive(InputObject)]
pub struct UpdatePartnerInput {
    pub slug: String,
    pub name: Option<String>,
    pub description: async_graphql::MaybeUndefined<String>,
}

/// A partner as the administration sees it.
#[derive(SimpleObject)]
pub struct PartnerAdminPayload {
    pub partner: Partner,
    /// When it was retired (RFC 3339); null while active.
    pub retired_at: Option<String>,
}

/// The result of `retirePartner`.
#[derive(SimpleObject)]
pub struct RetirePartnerPayload {
    pub slug: String,
    pub effect: RetireEffect,
    /// The partner's clients revoked by this call.
    pub clients_revoked: i32,
}

fn payload(e: PartnerEntry) -> PartnerAdminPayload {
    PartnerAdminPayload {
        retired_at: e.retired_at,
        partner: Partner(crate::domain::Partner {
            id: e.id,
            name: e.name,
            description: e.description,
        }),
    }
}

/// The request, once its viewer is known to hold `admin`.
fn admin<'a>(ctx: &'a Context<'_>) -> crate::error::Result<&'a RequestContext> {
    let rc = request(ctx)?;
    rc.viewer.require(ADMIN, "managing partners")?;
    Ok(rc)
}

/// Names `slug` in this request's audit entry and drops the cached answers listing partners.
fn written(rc: &RequestContext, slug: &str) {
    rc.owners.note_id(slug);
    rc.store.write_log().written([EntityKind::Partner]);
}

#[derive(Default)]
pub struct PartnerMutations;

#[Object]
impl PartnerMutations {
    /// Registers a partner. Needs the `admin` scope. `BAD_USER_INPUT` on `slug` when the slug
    /// is malformed, taken or overlaps another partner's.
    async fn create_partner(
        &self,
        ctx: &Context<'_>,
        input: CreatePartnerInput,
    ) -> async_graphql::Result<PartnerAdminPayload> {
        let rc = admin(ctx)?;
        let slug = input.slug.clone();
        let created = rc
            .store
            .run(move |c| {
                partners::create(
                    c,
                    &input.slug,
                    &input.name,
                    input.description.as_deref(),
                    &crate::app::now(),
                )
            })
            .await?;
        written(rc, &slug);
        Ok(payload(created))
    }

    /// Changes a partner's name or description. Needs the `admin` scope.
    async fn update_partner(
        &self,
        ctx: &Context<'_>,
        input: UpdatePartnerInput,
    ) -> async_graphql::Result<PartnerAdminPayload> {
        let rc = admin(ctx)?;
        let slug = input.slug.clone();
        let description = match input.description {
            async_graphql::MaybeUndefined::Undefined => None,
            async_graphql::MaybeUndefined::Null => Some(None),
            async_graphql::MaybeUndefined::Value(d) => Some(Some(d)),
        };
        let updated = rc
            .store
            .run(move |c| {
                partners::update(
                    c,
                    &input.slug,
                    input.name.as_deref(),
                    description.as_ref().map(|d| d.as_deref()),
                )
            })
            .await?;
        written(rc, &slug);
        Ok(payload(updated))
    }

    /// Retires a partner: its clients are revoked at once (their tokens stop working) and no
    /// client can be created for it; its records stay. Needs the `admin` scope.
    async fn retire_partner(
        &self,
        ctx: &Context<'_>,
        slug: String,
    ) -> async_graphql::Result<RetirePartnerPayload> {
        let rc = admin(ctx)?;
        let s = slug.clone();
        let retired = rc
            .store
            .run(move |c| partners::retire(c, &s, &crate::app::now()))
            .await?;
        written(rc, &slug);
        Ok(RetirePartnerPayload {
            slug,
            effect: if retired.newly {
                RetireEffect::Retired
            } else {
                RetireEffect::Unchanged
            },
            clients_revoked: i32::try_from(retired.clients_revoked).unwrap_or(i32::MAX),
        })
    }
}
