//! What every resolver may use: the request's viewer and its row filter, the store, the page
//! limits and this request's DataLoaders. Built once per request by the HTTP layer; loaders are
//! never shared between requests, so nothing one caller loaded can reach another. Their caches
//! live as long as the request.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use async_graphql::dataloader::{DataLoader, HashMapCache};
use async_graphql::Context;

use super::loaders::*;
use super::pagination::PageLimits;
use crate::domain::{self, RowFilter, Viewer};
use crate::error::{Error, Result};
use crate::storage::queries::Detail;
use crate::storage::{AnyConnection, EntityKind, Store};

pub struct RequestContext {
    pub viewer: Viewer,
    pub rows: RowFilter,
    pub store: Store,
    pub limits: PageLimits,
    /// The satellite rows (themes, places, disaggregations) the document can ask for: reads
    /// skip the others. Decided once for the whole document, so every loader agrees.
    pub detail: Detail,
    pub loaders: Loaders,
    /// The partners whose records this request has read, for the audit log.
    pub owners: OwnerLog,
    /// What this request's execution read, for the response cache.
    pub reads: ReadLog,
}

/// What an execution read, recorded where it reads (the loaders, [`RequestContext::read`]) so
/// that the response cache follows what an answer depends on whatever the document's shape:
/// the kinds of record (a write of any of them makes the answer stale), and whether it read
/// something the cache may not keep at all (the audit log).
#[derive(Clone, Default)]
pub struct ReadLog(Arc<ReadState>);

#[derive(Default)]
struct ReadState {
    /// One bit per `EntityKind`.
    kinds: AtomicU8,
    uncacheable: AtomicBool,
}

impl ReadLog {
    pub fn read(&self, kinds: &[EntityKind]) {
        let bits = kinds.iter().fold(0u8, |b, k| b | (1 << *k as u8));
        self.0.kinds.fetch_or(bits, Ordering::Relaxed);
    }

    /// The answer must not be cached.
    pub fn uncacheable(&self) {
        self.0.uncacheable.store(true, Ordering::Relaxed);
    }

    pub fn cacheable(&self) -> bool {
        !self.0.uncacheable.load(Ordering::Relaxed)
    }

    pub fn kinds(&self) -> BTreeSet<EntityKind> {
        let bits = self.0.kinds.load(Ordering::Relaxed);
        EntityKind::ALL
            .into_iter()
            .filter(|k| bits & (1 << *k as u8) != 0)
            .collect()
    }
}

/// A record owned by a partner.
pub trait Owned {
    /// The owning partner; `None` for records nobody owns (partners themselves).
    fn owner_id(&self) -> Option<&str>;
}

macro_rules! owned {
    ($($t:ty),*) => {$(
        impl Owned for $t {
            fn owner_id(&self) -> Option<&str> {
                Some(&self.owner)
            }
        }
    )*};
}
owned!(
    domain::Actor,
    domain::Action,
    domain::Outcome,
    domain::Partnership
);

impl Owned for domain::Partner {
    fn owner_id(&self) -> Option<&str> {
        None
    }
}

/// A page row: (cursor, record).
impl<T: Owned> Owned for (String, T) {
    fn owner_id(&self) -> Option<&str> {
        self.1.owner_id()
    }
}

/// The owners of the records a request read. Shared by the context and its loaders.
#[derive(Clone, Default)]
pub struct OwnerLog(Arc<Mutex<BTreeSet<String>>>);

impl OwnerLog {
    pub fn note<'a, T: Owned + 'a>(&self, records: impl IntoIterator<Item = &'a T>) {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for r in records {
            if let Some(o) = r.owner_id() {
                if !set.contains(o) {
                    set.insert(o.to_owned());
                }
            }
        }
    }

    /// Notes a partner by its slug (a partner managed by the request).
    pub fn note_id(&self, partner: &str) {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !set.contains(partner) {
            set.insert(partner.to_owned());
        }
    }

    pub fn snapshot(&self) -> BTreeSet<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The request's DataLoader caches, hashed as [`crate::storage::RecordMap`]s are.
type Cache = HashMapCache<foldhash::fast::RandomState>;

pub struct Loaders {
    pub partner: DataLoader<PartnerById, Cache>,
    pub actor: DataLoader<ActorById, Cache>,
    pub action: DataLoader<ActionById, Cache>,
    pub outcome: DataLoader<OutcomeById, Cache>,
    pub partnership: DataLoader<PartnershipById, Cache>,
    pub outcomes_of_action: DataLoader<OutcomesByAction, Cache>,
    pub partnerships_of_action: DataLoader<PartnershipsByAction, Cache>,
    pub partnerships_of_actor: DataLoader<PartnershipsByActor, Cache>,
    pub sub_actions: DataLoader<SubActions, Cache>,
}

impl RequestContext {
    /// A context whose reads load every satellite row.
    pub fn new(viewer: Viewer, store: Store, limits: PageLimits) -> Self {
        Self::for_document(viewer, store, limits, Detail::FULL)
    }

    /// A context for a document that can ask for `detail` and no more.
    pub fn for_document(viewer: Viewer, store: Store, limits: PageLimits, detail: Detail) -> Self {
        let rows = viewer.row_filter();
        let owners = OwnerLog::default();
        let reads = ReadLog::default();
        let scope = LoaderScope {
            store: store.clone(),
            rows: rows.clone(),
            detail,
            owners: owners.clone(),
            reads: reads.clone(),
        };
        let loaders = Loaders {
            partner: loader(PartnerById(scope.clone())),
            actor: loader(ActorById(scope.clone())),
            action: loader(ActionById(scope.clone())),
            outcome: loader(OutcomeById(scope.clone())),
            partnership: loader(PartnershipById(scope.clone())),
            outcomes_of_action: loader(OutcomesByAction(scope.clone())),
            partnerships_of_action: loader(PartnershipsByAction(scope.clone())),
            partnerships_of_actor: loader(PartnershipsByActor(scope.clone())),
            sub_actions: DataLoader::with_cache(SubActions(scope), tokio::spawn, Cache::new()),
        };
        RequestContext {
            viewer,
            rows,
            store,
            limits,
            detail,
            loaders,
            owners,
            reads,
        }
    }

    /// Runs a read with this request's row filter. Lists and counts read through here; their
    /// answers count as depending on every kind of record (a filter or a visibility rule may
    /// join any of them).
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection, &RowFilter) -> Result<T> + Send + 'static,
    {
        self.read_kinds(&EntityKind::ALL, f).await
    }

    /// [`read`](Self::read) for a read of records of `kinds` only (and their visibility rules').
    pub async fn read_kinds<T, F>(&self, kinds: &[EntityKind], f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection, &RowFilter) -> Result<T> + Send + 'static,
    {
        self.reads.read(kinds);
        let rows = self.rows.clone();
        self.store.run(move |conn| f(conn, &rows)).await
    }
}

fn loader<T: async_graphql::dataloader::Loader<String>>(l: T) -> DataLoader<T, Cache> {
    DataLoader::with_cache(l, tokio::spawn, Cache::new())
}

/// The request context, or an internal error if the HTTP layer did not attach one.
pub fn request<'a>(ctx: &'a Context<'_>) -> Result<&'a RequestContext> {
    ctx.data::<RequestContext>()
        .map_err(|_| Error::internal(anyhow::anyhow!("request context missing")))
}
