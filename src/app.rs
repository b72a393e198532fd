//! The state every handler shares: configuration, store and schema. Built once at start.

use std::sync::Arc;

use crate::auth::external::ExternalVerifier;
use crate::auth::keys::{self, KeyRing};
use crate::config::Config;
use crate::connectors::{Scheduler, SyncStats};
use crate::error::Result;
use crate::graphql::{build_schema, PageLimits, PasserelleSchema};
use crate::http::cache::ResponseCache;
use crate::http::rate_limit::RateLimiter;
use crate::persisted::{manifest::Manifest, PersistedQueries};
use crate::storage::Store;

#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub store: Store,
    pub schema: PasserelleSchema,
    pub persisted: PersistedQueries,
    pub response_cache: ResponseCache,
    pub rate_limiter: RateLimiter,
    /// The keys that sign and verify access tokens.
    pub keys: KeyRing,
    /// In external mode, the identity provider's token verifier.
    pub external: Option<Arc<ExternalVerifier>>,
    /// Outcomes of scheduled connector passes, for `/metrics`.
    pub sync_stats: Arc<SyncStats>,
}

impl App {
    /// Connects to the database, applies pending migrations, makes sure a signing key exists and
    /// imports the configured persisted query manifest.
    pub async fn start(config: Config) -> Result<Self> {
        let store = Store::connect(&config.database_url, &config.pool_options())?;
        let applied = store.migrate().await?;
        if applied > 0 {
            tracing::info!(applied, backend = %store.backend(), "migrations applied");
        }
        if store.run(keys::ensure_signing_key).await? {
            tracing::info!("created the first token signing key");
        }
        let keys = KeyRing::new(store.clone(), config.token_ttl_secs, config.key_cache_secs);
        let external = ExternalVerifier::from_config(&config)?.map(Arc::new);
        let schema = build_schema(&config);
        let persisted = PersistedQueries::new(store.clone(), config.persisted_query_cache_entries);
        if let Some(path) = &config.persisted_query_manifest {
            let imported = persisted.import(Manifest::read(path)?).await?;
            tracing::info!(operations = imported.len(), manifest = %path.display(), "trusted documents imported");
        }
        Ok(App {
            response_cache: ResponseCache::new(&config, store.clone()),
            rate_limiter: RateLimiter::new(&config.rate_limit),
            persisted,
            config: Arc::new(config),
            store,
            schema,
            keys,
            external,
            sync_stats: Arc::default(),
        })
    }

    /// Starts the connectors with an `interval_secs` on their schedule (what `serve` does);
    /// stop them with `Scheduler::stop`.
    pub fn schedule_connectors(&self) -> Scheduler {
        Scheduler::start(
            self.store.clone(),
            &self.config.connectors,
            self.sync_stats.clone(),
        )
    }

    pub fn page_limits(&self) -> PageLimits {
        PageLimits {
            default: self.config.default_page_size,
            max: self.config.max_page_size,
        }
    }
}

/// The current time as RFC 3339, for provenance.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}
