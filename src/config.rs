//! One typed configuration, read from an optional TOML file and then from `PASSERELLE_*`
//! environment variables (which win). Unknown keys are refused, so a typo never passes silently.
//! The defaults run on a laptop: SQLite in `./passerelle.db`, listening on 127.0.0.1:8080.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::storage::{DatabaseUrl, PoolOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Who issues the access tokens Passerelle accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Passerelle's own authorization server (`/oauth/token`).
    #[default]
    Local,
    /// An external identity provider's JWTs, verified against its JWKS.
    External,
}

/// More async workers than this is a typo, not a machine.
const MAX_WORKER_THREADS: usize = 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `sqlite://FILE` (default `sqlite://passerelle.db`) or `postgres://USER@HOST/DB`.
    #[serde(deserialize_with = "from_str")]
    pub database_url: DatabaseUrl,
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    pub log_format: LogFormat,
    /// A `tracing` filter such as `info` or `passerelle=debug,info`.
    pub log_level: String,
    /// Largest request body accepted, in bytes (every route but `POST /import`).
    pub max_body_bytes: usize,
    /// Largest file `POST /import` accepts, in bytes; it is streamed to a temporary file, never
    /// held in memory. Beyond it: 413 `PAYLOAD_TOO_LARGE`, nothing written.
    pub import_max_bytes: u64,
    /// How long one `POST /import` (upload, checks and writes) may take, in seconds.
    pub import_timeout_secs: u64,
    /// Page size when a client does not say `first`.
    pub default_page_size: usize,
    /// Largest `first` a client may ask for.
    pub max_page_size: usize,
    /// Deepest selection set a query may have.
    pub max_query_depth: usize,
    /// Highest complexity a query may have (one per field; lists multiply by their `first`).
    pub max_query_complexity: usize,
    pub db_max_connections: u32,
    /// Threads that run requests' async work (HTTP, GraphQL resolution, serialization); `0`:
    /// one per core. Database work runs on threads of its own besides these. On 2 cores shared
    /// with PostgreSQL, one worker took 10-17% less CPU per dashboard than two (fewer wake-ups
    /// across cores), at the same throughput.
    pub worker_threads: usize,
    /// How long to wait for the database when opening a connection.
    pub db_connect_timeout_secs: u64,
    /// How long a request may run before it is answered 503.
    pub request_timeout_secs: u64,
    /// How long in-flight requests get to finish after SIGTERM.
    pub shutdown_grace_secs: u64,
    /// The `iss` of the access tokens Passerelle issues and accepts; empty (the default): the
    /// `public_url`.
    pub token_issuer: String,
    /// The `aud` of the access tokens Passerelle issues and accepts.
    pub token_audience: String,
    /// How long an access token lives.
    pub token_ttl_secs: u64,
    /// How long a replica may use its cached signing and verification keys before reading the
    /// key table again (an unknown `kid` reloads sooner).
    pub key_cache_secs: u64,
    /// How long a revocation made elsewhere (another replica, `passerelle client revoke`, a
    /// sharing agreement ended) may take to reach this replica: checked sessions are kept
    /// while the `auth_changes` counter, read every half of this, stands still. 0 checks the
    /// database on every request.
    pub session_recheck_ms: u64,
    /// On PostgreSQL, whether a query's audit entry waits for the WAL flush before the answer
    /// leaves. By default it waits for the commit only: the entry is committed (and a failure
    /// still fails the request), but a database crash can lose the last fraction of a second of
    /// read entries, and a slow disk flush no longer stalls every answer. Entries of mutations
    /// and ingests always wait for the flush. SQLite's commits never wait for one (WAL,
    /// `synchronous = NORMAL`).
    pub audit_reads_wait_for_flush: bool,
    /// How long the audit writer may wait, after an entry, for those of other audited requests
    /// being answered at the time, to commit them together (as PostgreSQL's `commit_delay`).
    /// A request answered alone is written at once; under load an answer may wait this much
    /// longer, for one statement and one commit per several entries. 0 writes at once.
    pub audit_group_wait_us: u64,
    /// Encrypts the token signing keys at rest (AES-256-GCM): 32 random bytes in base64, e.g.
    /// from `openssl rand -base64 32`. Keys stored in plaintext before it was set still load,
    /// and are encrypted at the next start.
    pub key_encryption_key: Option<Secret>,
    /// Research aggregates withhold cells resting on fewer records (or people) than this.
    pub research_min_cell: i64,
    /// `local` (Passerelle issues tokens) or `external` (an identity provider does).
    pub auth_mode: AuthMode,
    /// External mode: the provider's JWKS URL.
    pub external_jwks_url: Option<String>,
    /// External mode: the `iss` the provider's tokens carry.
    pub external_issuer: Option<String>,
    /// External mode: the `aud` tokens must carry for Passerelle.
    pub external_audience: Option<String>,
    /// External mode: the claim naming the caller's partner.
    pub external_partner_claim: String,
    /// External mode: the claim with the scopes (a space-separated string or a list).
    pub external_scope_claim: String,
    /// External mode: how long a fetched JWKS is trusted before it is fetched again.
    pub external_jwks_cache_secs: u64,
    /// External mode: the provider's RFC 7662 introspection endpoint, for opaque tokens.
    pub external_introspection_url: Option<String>,
    /// External mode: Passerelle's client id at the provider, to call introspection.
    pub external_client_id: Option<String>,
    /// External mode: Passerelle's client secret at the provider.
    pub external_client_secret: Option<String>,
    /// External mode: how long an introspection answer is reused, at most (never past the
    /// token's `exp`): the longest a token revoked at the provider keeps working here. 0 asks the
    /// provider at every request.
    pub external_introspection_cache_secs: u64,
    /// Most aliases one GraphQL document may use.
    pub max_query_aliases: usize,
    /// Most lexical tokens one GraphQL document may have (checked before it is parsed).
    pub max_query_tokens: usize,
    /// Most operations one batched POST may carry.
    pub max_batch_size: usize,
    /// How long one GraphQL operation may execute, in milliseconds, before it is answered `TIMEOUT`.
    pub execution_timeout_ms: u64,
    /// Most requests (GraphQL, import, export) handled at once; the others wait for a slot.
    pub max_concurrent_requests: usize,
    /// How long a request may wait for a slot before it is shed with 503 `OVERLOADED`, when
    /// the queue it joins has emptied within `queue_standing_after_ms` (a burst).
    pub queue_timeout_ms: u64,
    /// How long a request may wait for a slot when the queue it joins has not emptied for
    /// `queue_standing_after_ms` (a standing queue: the server is over capacity). Lower keeps
    /// the latency of fast requests admitted under sustained overload near their usual one, but
    /// sheds any request that takes longer than it to serve: at 50 ms, 90% of research
    /// aggregates (about 450 ms each) were shed at saturation.
    pub queue_timeout_standing_ms: u64,
    /// After how long without emptying the queue is standing; a standing queue then holds as
    /// many requests as the server admitted in the last such span (from half of
    /// `max_queued_requests` to all of it).
    pub queue_standing_after_ms: u64,
    /// Most requests waiting for a slot at once in a burst, and in a standing queue at least
    /// half as many; a request beyond them is shed at once (0: none wait). Bounds memory.
    pub max_queued_requests: usize,
    /// Lets every caller run introspection (`__schema`, `__type`); otherwise only callers with
    /// the `introspect` scope may. `serve --demo` turns it on so GraphiQL works.
    pub public_introspection: bool,
    /// Refuses GET and non-JSON POST requests without a preflight-forcing header
    /// (`apollo-require-preflight` or `x-apollo-operation-name`), as Apollo does.
    pub csrf_prevention: bool,
    /// Browser origins allowed by CORS, e.g. `https://app.example.org`. Empty: no CORS headers.
    /// `*` is refused: credentials are allowed, so origins must be listed.
    pub cors_allowed_origins: Vec<String>,
    /// An `apollo-persisted-query-manifest` v1 file imported as trusted documents at start.
    pub persisted_query_manifest: Option<PathBuf>,
    /// Persisted queries kept in memory in front of the database.
    pub persisted_query_cache_entries: u64,
    /// Client ids or partner slugs that may run only trusted documents, by id.
    pub persisted_only: Vec<String>,
    /// `max-age` of cacheable GET answers, in seconds.
    pub http_cache_max_age_secs: u64,
    /// Bytes (approximate) of parsed and checked documents kept by their text, so a document
    /// sent again is not parsed again; 0 turns it off.
    pub document_cache_bytes: u64,
    /// Responses kept in the response cache; 0 turns it off.
    pub response_cache_entries: u64,
    /// How long a cached response lives, in seconds.
    pub response_cache_ttl_secs: u64,
    /// How long a write by another process (another replica, the CLI, psql) may take to reach
    /// this one's response cache: cached answers are used only while the feed of data changes,
    /// read every half of this, is up to date. 0 turns the feed off: such a write then shows
    /// once the answers cached before it age out (`response_cache_ttl_secs`).
    pub response_cache_recheck_ms: u64,
    // Public address and signing (issue 33)
    /// The URL clients reach this deployment at, e.g. `https://passerelle.example.org`: the
    /// base of the URLs in the OAuth and OpenID discovery documents, and the tokens' `iss`
    /// unless `token_issuer` is set. Default: `http://` and `listen`, with 0.0.0.0 (or `::`)
    /// as 127.0.0.1 (or `::1`).
    pub public_url: Option<String>,
    /// The algorithm of new access tokens: `EdDSA` (Ed25519) or `ES256` (P-256, for verifiers
    /// without Ed25519). A change rotates the signing key at the next start; tokens signed by
    /// the old key are still accepted, and its key still published, until they expire.
    pub token_signing_algorithm: crate::auth::keys::SigningAlgorithm,
    // Connections and slow clients (issue 37)
    /// Most client connections open at once; further ones wait in the kernel's accept queue
    /// (under pressure, connections without a request in progress are closed first). Keep it
    /// under the open-file limit (`LimitNOFILE`) less `db_max_connections` and about 64.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, in milliseconds, from their
    /// first byte (a connection that sends nothing at all is idle: `idle_timeout_ms`).
    pub header_read_timeout_ms: u64,
    /// How long a connection without a request in progress and without traffic stays open
    /// (keep-alive idle timeout), in milliseconds.
    pub idle_timeout_ms: u64,
    /// How long a request body (every route but `POST /import`) may take to arrive in full, in
    /// milliseconds, within `request_timeout_secs`. It is read before the request takes a slot.
    pub body_read_timeout_ms: u64,
    /// Slowest a request body may arrive once `body_min_rate_grace_ms` has passed, in bytes per
    /// second on average (as Kestrel's `MinRequestBodyDataRate`); 0 turns it off. Past it: 408
    /// `BODY_TIMEOUT`. `POST /import` is held to it too.
    pub body_min_bytes_per_sec: u64,
    /// How long a body may take before `body_min_bytes_per_sec` applies, in milliseconds.
    pub body_min_rate_grace_ms: u64,
    /// Once requests found the database unreachable, how often a background probe tries it;
    /// meanwhile requests needing it are answered 503 `SERVICE_UNAVAILABLE` at once.
    pub db_probe_interval_ms: u64,
    pub rate_limit: RateLimitConfig,
    /// Pull connectors, one per partner source (`[[connectors]]` tables in the TOML file).
    pub connectors: Vec<ConnectorConfig>,
}

/// The protocol a partner's API speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorKind {
    /// `GET base_url?limit=N&after=CURSOR` answering
    /// `{"records": [...], "cursor": "...", "has_more": bool}` with records in the import format.
    #[default]
    Rest,
    /// `POST base_url` with a GraphQL query taking `$after: String` and `$first: Int!`, whose
    /// single root field answers `{records, cursor, hasMore}`.
    Graphql,
}

/// A secret that never shows in logs or `Debug` output.
#[derive(Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One partner source Passerelle pulls from, authenticating with OAuth2 client credentials.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// The partner that owns what this source sends.
    pub partner: String,
    #[serde(default)]
    pub kind: ConnectorKind,
    pub base_url: url::Url,
    pub token_url: url::Url,
    pub client_id: String,
    pub client_secret: Secret,
    /// For `kind = "graphql"`: the query to send (see `connectors::DEFAULT_QUERY`).
    #[serde(default)]
    pub graphql_query: Option<String>,
    /// Scopes to ask the partner's token endpoint for.
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default = "default_connector_page")]
    pub page_size: u32,
    /// Seconds between scheduled passes under `serve`; 0 (the default) runs it only from
    /// `passerelle sync`.
    #[serde(default)]
    pub interval_secs: u64,
    /// How long a replica's lease on this connector lasts without a committed page; it must
    /// outlast one page fetch with its retries. Replicas sharing a database never run the same
    /// connector at once.
    #[serde(default = "default_lease")]
    pub lease_secs: u64,
    /// Attempts per request before a pass gives up (transient errors only).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// First retry delay in milliseconds; doubled at each attempt.
    #[serde(default = "default_backoff")]
    pub backoff_ms: u64,
    /// Per-request timeout in seconds.
    #[serde(default = "default_connector_timeout")]
    pub timeout_secs: u64,
}

fn default_connector_page() -> u32 {
    100
}
fn default_lease() -> u64 {
    300
}
fn default_attempts() -> u32 {
    4
}
fn default_backoff() -> u64 {
    500
}
fn default_connector_timeout() -> u64 {
    30
}

/// A token bucket: `per_second` tokens are added each second, up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    pub per_second: f64,
    pub burst: u32,
}

/// The tokens left in one bucket, as of `at`; refilled as time passes.
pub struct Tokens {
    left: f64,
    at: std::time::Instant,
}

impl Tokens {
    /// A full bucket.
    pub fn full(bucket: Bucket) -> Self {
        Tokens {
            left: f64::from(bucket.burst),
            at: std::time::Instant::now(),
        }
    }

    /// Takes one token, or says in how many whole seconds (at least 1) one will be back.
    pub fn take(&mut self, bucket: Bucket) -> std::result::Result<(), u64> {
        let now = std::time::Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.left = (self.left + elapsed * bucket.per_second).min(f64::from(bucket.burst));
        self.at = now;
        if self.left >= 1.0 {
            self.left -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.left) / bucket.per_second;
            Err(wait.ceil().clamp(1.0, 86_400.0) as u64)
        }
    }

    /// Puts back a token taken.
    pub fn put_back(&mut self, bucket: Bucket) {
        self.left = (self.left + 1.0).min(f64::from(bucket.burst));
    }
}

/// Per-caller rate limits. A caller is matched by client id first, then by partner slug; a
/// caller with neither shares the `anonymous` bucket with every other anonymous caller.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Shared by all anonymous callers.
    pub anonymous: Bucket,
    /// For identified callers without their own entry (one bucket each).
    pub default: Bucket,
    /// By partner slug.
    pub partners: BTreeMap<String, Bucket>,
    /// By OAuth2 client id.
    pub clients: BTreeMap<String, Bucket>,
    /// Failed client authentications at `/oauth/*`, per client id claimed (see
    /// `auth::lockout`): once used up, that id is answered 429 until a token is back.
    pub client_auth_failures: Bucket,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            anonymous: Bucket {
                per_second: 50.0,
                burst: 200,
            },
            default: Bucket {
                per_second: 20.0,
                burst: 100,
            },
            partners: BTreeMap::new(),
            clients: BTreeMap::new(),
            // Ten wrong secrets in a row, then one more try every ten seconds.
            client_auth_failures: Bucket {
                per_second: 0.1,
                burst: 10,
            },
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: DatabaseUrl::from_str("sqlite://passerelle.db")
                .unwrap_or_else(|_| unreachable!()),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            max_body_bytes: 1024 * 1024,
            import_max_bytes: 256 * 1024 * 1024,
            import_timeout_secs: 600,
            default_page_size: 20,
            max_page_size: 100,
            max_query_depth: 12,
            max_query_complexity: 20_000,
            db_max_connections: 10,
            worker_threads: 0,
            db_connect_timeout_secs: 5,
            request_timeout_secs: 30,
            shutdown_grace_secs: 20,
            max_query_aliases: 30,
            max_query_tokens: 2_000,
            max_batch_size: 10,
            execution_timeout_ms: 10_000,
            max_concurrent_requests: 16,
            queue_timeout_ms: 500,
            queue_timeout_standing_ms: 500,
            queue_standing_after_ms: 100,
            max_queued_requests: 128,
            public_introspection: false,
            csrf_prevention: true,
            cors_allowed_origins: Vec::new(),
            persisted_query_manifest: None,
            persisted_query_cache_entries: 10_000,
            persisted_only: Vec::new(),
            http_cache_max_age_secs: 60,
            document_cache_bytes: 8 << 20,
            response_cache_entries: 10_000,
            response_cache_ttl_secs: 60,
            response_cache_recheck_ms: 500,
            // Public address and signing (issue 33)
            public_url: None,
            token_signing_algorithm: Default::default(),
            // Connections and slow clients (issue 37)
            max_connections: 512,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 30_000,
            body_read_timeout_ms: 10_000,
            body_min_bytes_per_sec: 1024,
            body_min_rate_grace_ms: 3_000,
            db_probe_interval_ms: 1_000,
            rate_limit: RateLimitConfig::default(),
            connectors: Vec::new(),
            token_issuer: String::new(),
            token_audience: "passerelle".into(),
            token_ttl_secs: 900,
            key_cache_secs: 60,
            session_recheck_ms: 500,
            audit_reads_wait_for_flush: false,
            audit_group_wait_us: 2_000,
            key_encryption_key: None,
            research_min_cell: 11,
            auth_mode: AuthMode::Local,
            external_jwks_url: None,
            external_issuer: None,
            external_audience: None,
            external_partner_claim: "partner".into(),
            external_scope_claim: "scope".into(),
            external_jwks_cache_secs: 300,
            external_introspection_url: None,
            external_client_id: None,
            external_client_secret: None,
            external_introspection_cache_secs: 30,
        }
    }
}

fn from_str<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String>,
{
    let s = String::deserialize(d)?;
    T::from_str(&s).map_err(serde::de::Error::custom)
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid configuration{origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// The longest `audit_group_wait_us`: 100 ms.
const MAX_AUDIT_GROUP_WAIT_US: u64 = 100_000;

const ENV_PREFIX: &str = "PASSERELLE_";
/// Environment variables with the prefix that are not settings.
const NOT_SETTINGS: &[&str] = &["PASSERELLE_CONFIG"];

impl Config {
    /// Reads `file` (if any), then the environment. `DATABASE_URL` is accepted as well as
    /// `PASSERELLE_DATABASE_URL`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                toml::from_str::<toml::Table>(&text).map_err(|e| ConfigError::Invalid {
                    origin: format!(" in {}", path.display()),
                    message: e.message().to_owned(),
                })?
            }
            None => toml::Table::new(),
        };
        // Which environment variable set each key, to name it in errors.
        let mut from_env = std::collections::HashMap::new();
        for (name, value) in env {
            let key = if name == "DATABASE_URL" {
                "database_url".to_owned()
            } else if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
                if NOT_SETTINGS.contains(&name.as_str()) || rest.starts_with("TEST_") {
                    continue;
                }
                rest.to_lowercase()
            } else {
                continue;
            };
            let parsed = if LIST_SETTINGS.contains(&key.as_str()) {
                toml::Value::Array(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(|v| toml::Value::String(v.to_owned()))
                        .collect(),
                )
            } else {
                env_value(&value)
            };
            table.insert(key.clone(), parsed);
            from_env.insert(key, name);
        }
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                let origin = match (from_env.get(&key), file) {
                    (Some(var), _) => format!(" in {var}"),
                    (None, Some(path)) => format!(" in {}", path.display()),
                    (None, None) => String::new(),
                };
                let message = if key == "." {
                    e.inner().to_string()
                } else {
                    format!("{key}: {}", e.inner())
                };
                ConfigError::Invalid { origin, message }
            })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |message: String| {
            Err(ConfigError::Invalid {
                origin: String::new(),
                message,
            })
        };
        if self.max_page_size == 0 || self.max_page_size > 1000 {
            return bad(format!(
                "max_page_size must be between 1 and 1000, not {}",
                self.max_page_size
            ));
        }
        if self.default_page_size == 0 || self.default_page_size > self.max_page_size {
            return bad(format!(
                "default_page_size must be between 1 and max_page_size ({}), not {}",
                self.max_page_size, self.default_page_size
            ));
        }
        if self.max_body_bytes < 1024 {
            return bad("max_body_bytes must be at least 1024".into());
        }
        if self.import_max_bytes < 1024 || self.import_timeout_secs == 0 {
            return bad(
                "import_max_bytes must be at least 1024 and import_timeout_secs positive".into(),
            );
        }
        if self.max_query_depth == 0 || self.max_query_complexity == 0 {
            return bad("max_query_depth and max_query_complexity must be positive".into());
        }
        if self.max_query_aliases == 0 || self.max_query_tokens == 0 || self.max_batch_size == 0 {
            return bad(
                "max_query_aliases, max_query_tokens and max_batch_size must be positive".into(),
            );
        }
        if self.execution_timeout_ms == 0 {
            return bad("execution_timeout_ms must be positive".into());
        }
        if self.max_concurrent_requests == 0 {
            return bad("max_concurrent_requests must be positive".into());
        }
        // Connections and slow clients (issue 37)
        if self.max_connections == 0
            || self.header_read_timeout_ms == 0
            || self.idle_timeout_ms == 0
            || self.body_read_timeout_ms == 0
            || self.db_probe_interval_ms == 0
        {
            return bad("max_connections, header_read_timeout_ms, idle_timeout_ms, body_read_timeout_ms and db_probe_interval_ms must be positive".into());
        }
        if self.audit_group_wait_us > MAX_AUDIT_GROUP_WAIT_US {
            return bad(format!(
                "audit_group_wait_us must be at most {MAX_AUDIT_GROUP_WAIT_US} (every audited answer may wait this long)"
            ));
        }
        if self.worker_threads > MAX_WORKER_THREADS {
            return bad(format!(
                "worker_threads must be at most {MAX_WORKER_THREADS} (0: one per core)"
            ));
        }
        for origin in &self.cors_allowed_origins {
            let parsed = url::Url::parse(origin).ok().filter(|u| {
                matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.path() == "/"
            });
            if origin.contains('*') || parsed.is_none() || origin.ends_with('/') {
                return bad(format!(
                    "cors_allowed_origins: `{origin}` is not an origin such as https://app.example.org (wildcards are refused)"
                ));
            }
        }
        let buckets = [
            &self.rate_limit.anonymous,
            &self.rate_limit.default,
            &self.rate_limit.client_auth_failures,
        ]
        .into_iter()
        .chain(self.rate_limit.partners.values())
        .chain(self.rate_limit.clients.values());
        for b in buckets {
            if !(b.per_second > 0.0 && b.per_second.is_finite()) || b.burst == 0 {
                return bad("rate_limit buckets need per_second > 0 and burst >= 1".into());
            }
        }
        let mut partners = std::collections::BTreeSet::new();
        for c in &self.connectors {
            if !partners.insert(c.partner.as_str()) {
                return bad(format!("two connectors for partner `{}`", c.partner));
            }
            if c.page_size == 0 || c.page_size > 10_000 || c.max_attempts == 0 || c.lease_secs == 0
            {
                return bad(format!(
                    "connector `{}`: page_size must be 1-10000, max_attempts and lease_secs positive",
                    c.partner
                ));
            }
        }
        if self.token_ttl_secs == 0 || self.token_ttl_secs > 86_400 {
            return bad(format!(
                "token_ttl_secs must be between 1 and 86400, not {}",
                self.token_ttl_secs
            ));
        }
        let jwks = self.external_jwks_url.is_some()
            && self.external_issuer.is_some()
            && self.external_audience.is_some();
        let introspection = self.external_introspection_url.is_some()
            && self.external_client_id.is_some()
            && self.external_client_secret.is_some();
        if self.auth_mode == AuthMode::External && !jwks && !introspection {
            return bad(
                "auth_mode = \"external\" needs external_jwks_url, external_issuer and external_audience, or external_introspection_url, external_client_id and external_client_secret"
                    .into(),
            );
        }
        if let Some(key) = &self.key_encryption_key {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::STANDARD.decode(key.0.trim());
            if decoded.map(|k| k.len()) != Ok(32) {
                return bad(
                    "key_encryption_key must be 32 bytes in base64 (e.g. from `openssl rand -base64 32`)"
                        .into(),
                );
            }
        }
        if self.research_min_cell < 2 {
            return bad(format!(
                "research_min_cell must be at least 2, not {}",
                self.research_min_cell
            ));
        }
        if self.token_audience.is_empty() {
            return bad("token_audience must not be empty".into());
        }
        if let Some(public) = &self.public_url {
            let parsed = url::Url::parse(public).ok().filter(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.query().is_none()
                    && u.fragment().is_none()
            });
            if parsed.is_none() {
                return bad(format!(
                    "public_url: `{public}` is not an http(s) URL such as https://passerelle.example.org"
                ));
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return bad(format!(
                "log_level `{}` is not a tracing filter such as `info`",
                self.log_level
            ));
        }
        Ok(())
    }

    /// `public_url`, or the URL derived from `listen`; without a trailing `/`.
    pub fn public_url(&self) -> String {
        if let Some(url) = &self.public_url {
            return url.trim_end_matches('/').to_owned();
        }
        let ip = match self.listen.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
                std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
            }
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
                std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
            }
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.listen.port()))
    }

    /// The `iss` of Passerelle's tokens: `token_issuer`, else [`Config::public_url`].
    pub fn issuer(&self) -> String {
        if self.token_issuer.is_empty() {
            self.public_url()
        } else {
            self.token_issuer.clone()
        }
    }

    pub fn pool_options(&self) -> PoolOptions {
        PoolOptions {
            max_connections: self.db_max_connections,
            connect_timeout: Duration::from_secs(self.db_connect_timeout_secs.max(1)),
            probe_interval: Duration::from_millis(self.db_probe_interval_ms.max(1)),
        }
    }
}

/// Settings that are lists; from the environment they are comma-separated.
const LIST_SETTINGS: &[&str] = &["cors_allowed_origins", "persisted_only"];

/// An environment value as TOML: numbers and booleans typed, anything else a string.
fn env_value(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    match raw {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(raw.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Backend;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_run_on_sqlite() {
        let c = Config::load(None, env(&[("HOME", "/root")])).unwrap();
        assert_eq!(c.database_url.backend(), Backend::Sqlite);
        assert_eq!(c.listen.port(), 8080);
    }

    #[test]
    fn environment_overrides_and_is_typed() {
        let c = Config::load(
            None,
            env(&[
                ("DATABASE_URL", "postgres://postgres@127.0.0.1/x"),
                ("PASSERELLE_MAX_PAGE_SIZE", "50"),
            ]),
        )
        .unwrap();
        assert_eq!(c.database_url.backend(), Backend::Postgres);
        assert_eq!(c.max_page_size, 50);
    }

    #[test]
    fn bad_values_and_unknown_keys_are_named() {
        let e = Config::load(None, env(&[("PASSERELLE_LISTEN", "nowhere")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid configuration"), "{e}");
        let e = Config::load(None, env(&[("PASSERELLE_MAX_PAGE_SIZ", "5")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_page_siz"), "{e}");
        let e = Config::load(None, env(&[("PASSERELLE_DEFAULT_PAGE_SIZE", "500")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("default_page_size"), "{e}");
        let e = Config::load(None, env(&[("DATABASE_URL", "mysql://x")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sqlite://"), "{e}");
    }

    #[test]
    fn the_example_file_in_deploy_is_valid_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/passerelle.example.toml");
        let from_file = Config::load(Some(&path), Vec::new()).unwrap();
        let defaults = Config::default();
        assert_eq!(format!("{from_file:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn protection_settings_are_checked() {
        let c = Config::load(
            None,
            env(&[(
                "PASSERELLE_CORS_ALLOWED_ORIGINS",
                "https://a.example.org, http://localhost:3000",
            )]),
        )
        .unwrap();
        assert_eq!(c.cors_allowed_origins.len(), 2);
        let e = Config::load(None, env(&[("PASSERELLE_CORS_ALLOWED_ORIGINS", "*")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("wildcards are refused"), "{e}");
        let e = Config::load(None, env(&[("PASSERELLE_WORKER_THREADS", "100000")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("worker_threads must be at most"), "{e}");
        let c = Config::load(None, env(&[("PASSERELLE_WORKER_THREADS", "1")])).unwrap();
        assert_eq!(c.worker_threads, 1);
        let e = Config::load(None, env(&[("PASSERELLE_AUDIT_GROUP_WAIT_US", "100001")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("audit_group_wait_us must be at most"), "{e}");
        let c = Config::load(None, env(&[("PASSERELLE_AUDIT_GROUP_WAIT_US", "0")])).unwrap();
        assert_eq!(c.audit_group_wait_us, 0);
        let e = Config::load(None, env(&[("PASSERELLE_MAX_BATCH_SIZE", "0")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_batch_size"), "{e}");
        let c = Config::load(None, env(&[("PASSERELLE_PERSISTED_ONLY", "ios,android")])).unwrap();
        assert_eq!(c.persisted_only, vec!["ios", "android"]);
    }

    #[test]
    fn the_public_url_follows_listen_unless_set() {
        let c = Config::load(None, env(&[("PASSERELLE_LISTEN", "127.0.0.1:18082")])).unwrap();
        assert_eq!(c.public_url(), "http://127.0.0.1:18082");
        assert_eq!(c.issuer(), "http://127.0.0.1:18082");
        let c = Config::load(None, env(&[("PASSERELLE_LISTEN", "0.0.0.0:9000")])).unwrap();
        assert_eq!(c.issuer(), "http://127.0.0.1:9000");
        let c = Config::load(None, env(&[("PASSERELLE_LISTEN", "[::]:9000")])).unwrap();
        assert_eq!(c.issuer(), "http://[::1]:9000");
        let c = Config::load(
            None,
            env(&[
                ("PASSERELLE_LISTEN", "0.0.0.0:9000"),
                ("PASSERELLE_PUBLIC_URL", "https://hub.example.org/"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (c.public_url().as_str(), c.issuer().as_str()),
            ("https://hub.example.org", "https://hub.example.org")
        );
        let c = Config::load(
            None,
            env(&[
                ("PASSERELLE_PUBLIC_URL", "https://hub.example.org"),
                ("PASSERELLE_TOKEN_ISSUER", "https://issuer.example.org"),
            ]),
        )
        .unwrap();
        assert_eq!(c.issuer(), "https://issuer.example.org");
        let e = Config::load(None, env(&[("PASSERELLE_PUBLIC_URL", "hub.example.org")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("public_url"), "{e}");
        let c = Config::load(
            None,
            env(&[("PASSERELLE_TOKEN_SIGNING_ALGORITHM", "ES256")]),
        )
        .unwrap();
        assert_eq!(
            c.token_signing_algorithm,
            crate::auth::keys::SigningAlgorithm::ES256
        );
        let e = Config::load(
            None,
            env(&[("PASSERELLE_TOKEN_SIGNING_ALGORITHM", "RS256")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("token_signing_algorithm"), "{e}");
    }

    #[test]
    fn external_mode_needs_the_provider_settings() {
        let e = Config::load(None, env(&[("PASSERELLE_AUTH_MODE", "external")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("external_jwks_url"), "{e}");
        let c = Config::load(
            None,
            env(&[
                ("PASSERELLE_AUTH_MODE", "external"),
                ("PASSERELLE_EXTERNAL_JWKS_URL", "http://127.0.0.1:9/jwks"),
                ("PASSERELLE_EXTERNAL_ISSUER", "http://127.0.0.1:9"),
                ("PASSERELLE_EXTERNAL_AUDIENCE", "passerelle"),
            ]),
        )
        .unwrap();
        assert_eq!(c.auth_mode, AuthMode::External);
        assert_eq!(c.external_partner_claim, "partner");
    }

    #[test]
    fn the_key_encryption_key_must_be_32_bytes_of_base64() {
        let c = Config::load(
            None,
            env(&[(
                "PASSERELLE_KEY_ENCRYPTION_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            )]),
        )
        .unwrap();
        assert_eq!(c.key_encryption_key.unwrap().0.len(), 44);
        assert!(!format!("{:?}", Config::default()).contains("AAEC"));
        for bad in ["short", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd"] {
            let e = Config::load(None, env(&[("PASSERELLE_KEY_ENCRYPTION_KEY", bad)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains("key_encryption_key must be 32 bytes"), "{e}");
        }
    }

    #[test]
    fn file_is_read_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:9000\"\nmax_page_size = 10\ndefault_page_size = 5\n",
        )
        .unwrap();
        let c = Config::load(Some(&path), Vec::new()).unwrap();
        assert_eq!((c.listen.port(), c.max_page_size), (9000, 10));
        std::fs::write(
            &path,
            "[rate_limit.partners.caravan]\nper_second = 1.5\nburst = 3\n",
        )
        .unwrap();
        let c = Config::load(Some(&path), Vec::new()).unwrap();
        assert_eq!(c.rate_limit.partners["caravan"].burst, 3);
        std::fs::write(&path, "[rate_limit.partners.caravan]\nper_sec = 1.5\n").unwrap();
        assert!(Config::load(Some(&path), Vec::new())
            .unwrap_err()
            .to_string()
            .contains("per_sec"));
        std::fs::write(&path, "lisen = \"0.0.0.0:9000\"\n").unwrap();
        assert!(Config::load(Some(&path), Vec::new())
            .unwrap_err()
            .to_string()
            .contains("lisen"));
    }
}
