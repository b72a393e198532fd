//! Partners: the organisations whose data Passerelle holds.

use async_graphql::{Context, Object, ID};

use super::context::request;
use super::ids::{self, Kind};
use crate::domain;

pub struct Partner(pub domain::Partner);

/// An organisation whose data Passerelle holds. Every record has an owning partner.
#[Object(serial)]
impl Partner {
    pub async fn id(&self) -> ID {
        ids::encode(Kind::Partner, &self.0.id)
    }
    /// The partner's short name, as used in filters (`partners: ["caravan"]`).
    async fn slug(&self) -> &str {
        &self.0.id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
}

#[derive(Default)]
pub struct PartnerQueries;

#[Object]
impl PartnerQueries {
    /// Every partner, by slug.
    async fn partners(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Partner>> {
        let rc = request(ctx)?;
        let all = rc
            .read_kinds(&[crate::storage::EntityKind::Partner], |c, _| {
                crate::storage::queries::partners(c)
            })
            .await?;
        Ok(all.into_iter().map(Partner).collect())
    }
}

/// Loads the owner of a record (partners are public).
pub async fn owner(ctx: &Context<'_>, id: &str) -> async_graphql::Result<Partner> {
    let rc = request(ctx)?;
    rc.loaders
        .partner
        .load_one(id.to_owned())
        .await?
        .map(Partner)
        .ok_or_else(|| {
            crate::error::Error::internal(anyhow::anyhow!("record owned by unknown partner {id}"))
                .into()
        })
}
