//! The state every handler shares: configuration, store and schema. Built once at start.

use std::sync::Arc;

use crate::auth::audit::AuditWriter;
use crate::auth::external::ExternalVerifier;
use crate::auth::keys::{self, KeyRing};
use crate::config::Config;
use crate::connectors::{Scheduler, SyncStats};
use crate::error::Result;
use crate::graphql::{PageLimits, Schemas};
use crate::http::admission::Admission;
use crate::http::cache::ResponseCache;
use crate::http::rate_limit::RateLimiter;
use crate::persisted::{manifest::Manifest, PersistedQueries};
use crate::storage::Store;

/// Shared by every handler and middleware, each of which holds its own handle: cloning one is
/// one reference count, not one per part (axum clones the state for every extractor).
#[derive(Clone)]
pub struct App(Arc<AppState>);

impl std::ops::Deref for App {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.0
    }
}

/// What an [`App`] holds.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    /// The schema, with the limits for data and those for introspection.
    pub schema: Schemas,
    pub persisted: PersistedQueries,
    pub response_cache: ResponseCache,
    /// Documents parsed and checked, by their text.
    pub documents: crate::http::documents::Documents,
    pub rate_limiter: RateLimiter,
    /// The audit log's writer (group commit).
    pub audit: AuditWriter,
    /// Load shedding: the request slots.
    pub admission: Admission,
    /// Client secrets checked a bounded number at once, off the database connections.
    pub secret_checks: crate::auth::clients::SecretChecks,
    /// Failed client authentications, limited per client id.
    pub client_lockout: crate::auth::lockout::ClientLockout,
    /// The keys that sign and verify access tokens.
    pub keys: KeyRing,
    /// Access tokens already verified (signature and claims), until they expire.
    pub verified_tokens: crate::auth::tokens::VerifiedTokens,
    /// Tokens' sessions checked recently, until a revocation or sharing change anywhere.
    pub sessions: crate::auth::sessions::Sessions,
    /// In external mode, the identity provider's token verifier.
    pub external: Option<Arc<ExternalVerifier>>,
    /// Outcomes of scheduled connector passes, for `/metrics`.
    pub sync_stats: Arc<SyncStats>,
}

impl App {
    /// Connects to the database, applies pending migrations, makes sure a signing key exists and
    /// imports the configured persisted query manifest.
    pub async fn start(mut config: Config) -> Result<Self> {
        // Resolved once: every token and discovery document uses the same issuer.
        config.token_issuer = config.issuer();
        let store = Store::connect(&config.database_url, &config.pool_options())?;
        let applied = store.migrate().await?;
        if applied > 0 {
            tracing::info!(applied, backend = %store.backend(), "migrations applied");
        }
        let cipher = keys::KeyCipher::from_config(&config)?;
        let c = cipher.clone();
        let sealed = store
            .run(move |conn| keys::seal_plaintext_keys(conn, &c))
            .await?;
        if sealed > 0 {
            tracing::info!(
                sealed,
                "encrypted the token signing keys stored in plaintext"
            );
        }
        let c = cipher.clone();
        let algorithm = config.token_signing_algorithm;
        if store
            .run(move |conn| keys::ensure_signing_key(conn, &c, algorithm))
            .await?
        {
            tracing::info!(
                algorithm = algorithm.name(),
                "created the first token signing key"
            );
        }
        let keys = KeyRing::new(
            store.clone(),
            cipher,
            algorithm,
            config.token_ttl_secs,
            config.key_cache_secs,
        );
        // A signing key that cannot be decrypted stops the start, with its own code.
        keys.reload().await?;
        let external = ExternalVerifier::from_config(&config)?.map(Arc::new);
        let schema = Schemas::new(&config);
        let persisted = PersistedQueries::new(store.clone(), config.persisted_query_cache_entries);
        if let Some(path) = &config.persisted_query_manifest {
            let imported = persisted.import(Manifest::read(path)?).await?;
            tracing::info!(operations = imported.len(), manifest = %path.display(), "trusted documents imported");
        }
        Ok(App(Arc::new(AppState {
            response_cache: ResponseCache::new(&config, store.clone()),
            documents: crate::http::documents::Documents::new(&config),
            rate_limiter: RateLimiter::new(&config.rate_limit),
            audit: AuditWriter::start(
                store.clone(),
                config.audit_reads_wait_for_flush,
                std::time::Duration::from_micros(config.audit_group_wait_us),
            )?,
            admission: Admission::new(
                config.max_concurrent_requests,
                crate::http::admission::Waits::from_config(&config),
                config.max_queued_requests,
            ),
            persisted,
            secret_checks: Default::default(),
            client_lockout: crate::auth::lockout::ClientLockout::new(&config.rate_limit),
            verified_tokens: Default::default(),
            sessions: crate::auth::sessions::Sessions::new(
                store.clone(),
                std::time::Duration::from_millis(config.session_recheck_ms),
                10_000,
            ),
            config: Arc::new(config),
            store,
            schema,
            keys,
            external,
            sync_stats: Arc::default(),
        })))
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
