//! One typed configuration, read from an optional TOML file and then from `PASSERELLE_*`
//! environment variables (which win). Unknown keys are refused, so a typo never passes silently.
//! The defaults run on a laptop: SQLite in `./passerelle.db`, listening on 127.0.0.1:8080.

use std::net::SocketAddr;
use std::path::Path;
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
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Page size when a client does not say `first`.
    pub default_page_size: usize,
    /// Largest `first` a client may ask for.
    pub max_page_size: usize,
    /// Deepest selection set a query may have.
    pub max_query_depth: usize,
    /// Highest complexity a query may have (one per field; lists multiply by their `first`).
    pub max_query_complexity: usize,
    pub db_max_connections: u32,
    /// How long to wait for the database when opening a connection.
    pub db_connect_timeout_secs: u64,
    /// How long a request may run before it is answered 503.
    pub request_timeout_secs: u64,
    /// How long in-flight requests get to finish after SIGTERM.
    pub shutdown_grace_secs: u64,
    /// The `iss` of the access tokens Passerelle issues, and the base of the URLs in its
    /// authorization-server metadata: the public URL of this deployment.
    pub token_issuer: String,
    /// The `aud` of the access tokens Passerelle issues and accepts.
    pub token_audience: String,
    /// How long an access token lives.
    pub token_ttl_secs: u64,
    /// How long a replica may use its cached signing and verification keys before reading the
    /// key table again (an unknown `kid` reloads sooner).
    pub key_cache_secs: u64,
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
            default_page_size: 20,
            max_page_size: 100,
            max_query_depth: 12,
            max_query_complexity: 20_000,
            db_max_connections: 10,
            db_connect_timeout_secs: 5,
            request_timeout_secs: 30,
            shutdown_grace_secs: 20,
            token_issuer: "http://127.0.0.1:8080".into(),
            token_audience: "passerelle".into(),
            token_ttl_secs: 900,
            key_cache_secs: 60,
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
        let mut from_env = Vec::new();
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
            table.insert(key.clone(), env_value(&value));
            from_env.push(format!("{name}={value}"));
        }
        let config: Config =
            table
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    origin: if from_env.is_empty() {
                        String::new()
                    } else {
                        " (file and environment)".into()
                    },
                    message: e.message().to_owned(),
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
        if self.max_query_depth == 0 || self.max_query_complexity == 0 {
            return bad("max_query_depth and max_query_complexity must be positive".into());
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
        if self.research_min_cell < 2 {
            return bad(format!(
                "research_min_cell must be at least 2, not {}",
                self.research_min_cell
            ));
        }
        if self.token_issuer.is_empty() || self.token_audience.is_empty() {
            return bad("token_issuer and token_audience must not be empty".into());
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return bad(format!(
                "log_level `{}` is not a tracing filter such as `info`",
                self.log_level
            ));
        }
        Ok(())
    }

    pub fn pool_options(&self) -> PoolOptions {
        PoolOptions {
            max_connections: self.db_max_connections,
            connect_timeout: Duration::from_secs(self.db_connect_timeout_secs.max(1)),
        }
    }
}

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
        std::fs::write(&path, "lisen = \"0.0.0.0:9000\"\n").unwrap();
        assert!(Config::load(Some(&path), Vec::new())
            .unwrap_err()
            .to_string()
            .contains("lisen"));
    }
}
