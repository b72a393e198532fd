//! DataLoaders: each batches the keys a resolver level asks for into one storage call, so a page
//! of N actions costs the same number of statements whatever N is. Each loader carries the
//! request's row filter: it can only return what the viewer may see.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;

use crate::domain::{self, RowFilter};
use crate::storage::queries::{self, Detail, PartnershipQuery};
use crate::storage::{EntityKind, Store};

#[derive(Clone)]
pub struct LoaderScope {
    pub store: Store,
    pub rows: RowFilter,
    /// The satellite rows this request's document can ask for.
    pub detail: Detail,
    pub owners: super::context::OwnerLog,
    pub reads: super::context::ReadLog,
}

impl LoaderScope {
    /// Reads `keys` with `f`, which reads records of `kinds` (and their visibility rules').
    async fn load_many<T, F>(
        &self,
        kinds: &[EntityKind],
        keys: &[String],
        f: F,
    ) -> Result<Vec<T>, async_graphql::Error>
    where
        T: super::context::Owned + Send + 'static,
        F: FnOnce(
                &mut crate::storage::AnyConnection,
                &RowFilter,
                Detail,
                &[String],
            ) -> crate::error::Result<Vec<T>>
            + Send
            + 'static,
    {
        self.reads.read(kinds);
        let rows = self.rows.clone();
        let detail = self.detail;
        let keys = keys.to_vec();
        let found = self
            .store
            .run(move |conn| f(conn, &rows, detail, &keys))
            .await
            .map_err(async_graphql::Error::from)?;
        self.owners.note(&found);
        Ok(found)
    }
}

/// Declares a loader from id to one record.
macro_rules! by_id_loader {
    ($name:ident, $value:ty, $kinds:expr, $load:expr) => {
        pub struct $name(pub LoaderScope);

        impl Loader<String> for $name {
            type Value = Arc<$value>;
            type Error = async_graphql::Error;

            async fn load(
                &self,
                keys: &[String],
            ) -> Result<HashMap<String, Arc<$value>>, Self::Error> {
                let found = self.0.load_many($kinds, keys, $load).await?;
                Ok(found
                    .into_iter()
                    .map(|v| (v.id.clone(), Arc::new(v)))
                    .collect())
            }
        }
    };
}

/// Declares a loader from a parent id to the visible records that point at it.
macro_rules! grouped_loader {
    ($name:ident, $value:ty, $kinds:expr, $load:expr, $group:expr) => {
        pub struct $name(pub LoaderScope);

        impl Loader<String> for $name {
            type Value = Vec<Arc<$value>>;
            type Error = async_graphql::Error;

            async fn load(
                &self,
                keys: &[String],
            ) -> Result<HashMap<String, Vec<Arc<$value>>>, Self::Error> {
                let found = self.0.load_many($kinds, keys, $load).await?;
                let mut grouped: HashMap<String, Vec<Arc<$value>>> = HashMap::new();
                let group: fn(&$value, &[String]) -> Vec<String> = $group;
                for v in found {
                    let keys = group(&v, keys);
                    let v = Arc::new(v);
                    for key in keys {
                        grouped.entry(key).or_default().push(v.clone());
                    }
                }
                Ok(grouped)
            }
        }
    };
}

pub struct PartnerById(pub LoaderScope);

impl Loader<String> for PartnerById {
    type Value = domain::Partner;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, domain::Partner>, Self::Error> {
        // Partners are public: their names are what every record's `owner` shows.
        let found = self
            .0
            .load_many(&[EntityKind::Partner], keys, |c, _, _, ids| {
                queries::partners_by_ids(c, ids)
            })
            .await?;
        Ok(found.into_iter().map(|p| (p.id.clone(), p)).collect())
    }
}

/// Actors by id. Unlike the other by-id loaders it answers every key, `None` for an actor the
/// viewer may not see, so the request's cache remembers misses too: a page whose partnerships
/// name hidden actors does not ask for them again.
pub struct ActorById(pub LoaderScope);

impl Loader<String> for ActorById {
    type Value = Option<Arc<domain::Actor>>;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[String],
    ) -> Result<HashMap<String, Option<Arc<domain::Actor>>>, Self::Error> {
        let found = self
            .0
            .load_many(&[EntityKind::Actor], keys, |c, rf, _, ids| {
                queries::actors_by_ids(c, rf, ids)
            })
            .await?;
        let mut answers: HashMap<String, Option<Arc<domain::Actor>>> =
            keys.iter().map(|k| (k.clone(), None)).collect();
        for a in found {
            answers.insert(a.id.clone(), Some(Arc::new(a)));
        }
        Ok(answers)
    }
}
by_id_loader!(
    ActionById,
    domain::Action,
    &[EntityKind::Action],
    queries::actions_by_ids
);
// An outcome is visible with its action.
by_id_loader!(
    OutcomeById,
    domain::Outcome,
    &[EntityKind::Outcome, EntityKind::Action],
    queries::outcomes_by_ids
);
by_id_loader!(
    PartnershipById,
    domain::Partnership,
    &[EntityKind::Partnership],
    |c, rf, _, ids| queries::partnerships_by_ids(c, rf, ids)
);

grouped_loader!(
    OutcomesByAction,
    domain::Outcome,
    &[EntityKind::Outcome, EntityKind::Action],
    queries::outcomes_by_actions,
    |o, _| vec![o.action_id.clone()]
);
grouped_loader!(
    SubActions,
    domain::Action,
    &[EntityKind::Action],
    queries::actions_by_parents,
    |a, _| a.parent_action_id.clone().into_iter().collect()
);
grouped_loader!(
    PartnershipsByAction,
    domain::Partnership,
    &[EntityKind::Partnership],
    |c, rf, _, ids| queries::partnerships_for(
        c,
        rf,
        &PartnershipQuery {
            action_ids: ids.to_vec(),
            ..Default::default()
        }
    ),
    |p, _| p.action_id.clone().into_iter().collect()
);
grouped_loader!(
    PartnershipsByActor,
    domain::Partnership,
    &[EntityKind::Partnership],
    |c, rf, _, ids| queries::partnerships_for(
        c,
        rf,
        &PartnershipQuery {
            actor_ids: ids.to_vec(),
            ..Default::default()
        }
    ),
    |p, keys| {
        let mut members: Vec<String> = p
            .members
            .iter()
            .map(|m| m.actor_id.clone())
            .filter(|a| keys.contains(a))
            .collect();
        members.sort();
        members.dedup();
        members
    }
);
