//! OAuth2 clients: one per partner application, or a research client, which belongs to a
//! research organisation instead and holds only the `research` scope. The secret is shown once at creation and
//! stored only as an Argon2id hash; checking it is constant-time (argon2's verifier compares
//! digests in constant time, and an unknown client id still pays for one verification).

use std::collections::BTreeSet;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use diesel::prelude::*;
use ring::rand::SecureRandom;

use super::{parse_scopes, Scopes};
use crate::app::now;
use crate::error::{Error, FieldError, Result};
use crate::storage::schema::{oauth_clients, partners, revoked_tokens, sharing_agreements};
use crate::storage::AnyConnection;

/// What a research client's requests run as, before its organisation's slug: `research:NAME`.
/// No partner slug contains `:`, so this never names a partner; it is what the audit log, the
/// rate limits and the token's `partner` claim show for a research client.
pub const RESEARCH_PRINCIPAL: &str = "research:";

/// A client as stored, without its secret hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Client {
    pub id: String,
    /// Who the client acts for: its partner's slug, or `research:ORG` for a research client.
    pub partner: String,
    /// A research client's organisation.
    pub research_org: Option<String>,
    pub scopes: Scopes,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// A client just created: the only time its secret is known.
#[derive(Debug)]
pub struct NewClient {
    pub id: String,
    pub secret: String,
}

type Row = (
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    Option<String>,
);

fn client(row: Row) -> Client {
    let (id, partner, research_org, scopes, created_at, revoked_at) = row;
    let partner = match (&partner, &research_org) {
        (Some(p), _) => p.clone(),
        (None, Some(org)) => format!("{RESEARCH_PRINCIPAL}{org}"),
        // The table's CHECK forbids it; such a client matches no token's `partner`.
        (None, None) => String::new(),
    };
    Client {
        id,
        partner,
        research_org,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        created_at,
        revoked_at,
    }
}

const COLUMNS: (
    oauth_clients::id,
    oauth_clients::partner_id,
    oauth_clients::research_org,
    oauth_clients::scopes,
    oauth_clients::created_at,
    oauth_clients::revoked_at,
) = (
    oauth_clients::id,
    oauth_clients::partner_id,
    oauth_clients::research_org,
    oauth_clients::scopes,
    oauth_clients::created_at,
    oauth_clients::revoked_at,
);

fn random(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| Error::internal(anyhow::anyhow!("no randomness available")))?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

fn hash(secret: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| Error::internal(anyhow::anyhow!("no randomness available")))?;
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| Error::internal(anyhow::anyhow!("salt: {e}")))?;
    Ok(Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map_err(|e| Error::internal(anyhow::anyhow!("hashing a secret: {e}")))?
        .to_string())
}

fn checked_scopes(scopes: &str) -> Result<Scopes> {
    let scopes =
        parse_scopes(scopes).map_err(|m| Error::Invalid(vec![FieldError::new("scopes", m)]))?;
    if scopes.is_empty() {
        return Err(Error::Invalid(vec![FieldError::new(
            "scopes",
            "give at least one scope",
        )]));
    }
    Ok(scopes)
}

fn insert(
    conn: &mut AnyConnection,
    partner: Option<&str>,
    research_org: Option<&str>,
    scopes: &Scopes,
) -> Result<NewClient> {
    let id = format!("pc_{}", random(12)?);
    let secret = random(32)?;
    let secret_hash = hash(&secret)?;
    diesel::insert_into(oauth_clients::table)
        .values((
            oauth_clients::id.eq(&id),
            oauth_clients::partner_id.eq(partner),
            oauth_clients::research_org.eq(research_org),
            oauth_clients::scopes.eq(scopes.iter().cloned().collect::<Vec<_>>().join(" ")),
            oauth_clients::secret_hash.eq(secret_hash),
            oauth_clients::created_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(NewClient { id, secret })
}

/// Registers a client for `partner` allowed to ask for `scopes` (space-separated). Refused for
/// an unknown or retired partner.
pub fn create(conn: &mut AnyConnection, partner: &str, scopes: &str) -> Result<NewClient> {
    let scopes = checked_scopes(scopes)?;
    let found: Option<Option<String>> = partners::table
        .filter(partners::id.eq(partner))
        .select(partners::retired_at)
        .first(conn)
        .optional()?;
    match found {
        None => Err(Error::Invalid(vec![FieldError::new(
            "partner",
            format!("no partner `{partner}`; create it with `passerelle partner create {partner} --name NAME`"),
        )])),
        Some(Some(_)) => Err(Error::Invalid(vec![FieldError::new(
            "partner",
            format!("the partner `{partner}` is retired"),
        )])),
        Some(None) => insert(conn, Some(partner), None, &scopes),
    }
}

/// Registers a research client for the research organisation `org` (a slug, as partners'):
/// it may hold the `research` scope and nothing else, and sees public rows only.
pub fn create_research(conn: &mut AnyConnection, org: &str, scopes: &str) -> Result<NewClient> {
    if let Some(problem) = crate::storage::partners::slug_problem(org) {
        return Err(Error::Invalid(vec![FieldError::new(
            "research_org",
            format!("`{org}`: {problem}"),
        )]));
    }
    let scopes = checked_scopes(scopes)?;
    if let Some(other) = scopes.iter().find(|s| s.as_str() != super::RESEARCH) {
        return Err(Error::Invalid(vec![FieldError::new(
            "scopes",
            format!("a research client holds only the `research` scope, not `{other}`"),
        )]));
    }
    insert(conn, None, Some(org), &scopes)
}

/// Every client, oldest first.
pub fn list(conn: &mut AnyConnection) -> Result<Vec<Client>> {
    let rows: Vec<Row> = oauth_clients::table
        .select(COLUMNS)
        .order((oauth_clients::created_at.asc(), oauth_clients::id.asc()))
        .load(conn)?;
    Ok(rows.into_iter().map(client).collect())
}

/// The client `id` if it exists and is not revoked.
pub fn active(conn: &mut AnyConnection, id: &str) -> Result<Option<Client>> {
    let row: Option<Row> = oauth_clients::table
        .filter(oauth_clients::id.eq(id))
        .filter(oauth_clients::revoked_at.is_null())
        .select(COLUMNS)
        .first(conn)
        .optional()?;
    Ok(row.map(client))
}

/// In one statement, what a request with a verified token runs as: the active client `id`
/// unless token `jti` has been revoked, with the partners sharing with the client's partner on
/// `day` (`YYYY-MM-DD`, as `sharing::grantors_for` reads them).
pub fn session(
    conn: &mut AnyConnection,
    id: &str,
    jti: &str,
    day: &str,
) -> Result<Option<(Client, BTreeSet<String>)>> {
    use diesel::dsl::{exists, not};
    // A research client (no partner) matches no agreement: NULL is equal to nothing.
    let sharing = sharing_agreements::grantee_partner_id
        .eq(oauth_clients::partner_id.assume_not_null())
        .and(super::sharing::in_force_on!(day));
    let rows: Vec<(Row, Option<String>)> = oauth_clients::table
        .left_join(sharing_agreements::table.on(sharing))
        .filter(oauth_clients::id.eq(id))
        .filter(oauth_clients::revoked_at.is_null())
        .filter(not(exists(
            revoked_tokens::table.filter(revoked_tokens::jti.eq(jti)),
        )))
        .select((COLUMNS, sharing_agreements::grantor_partner_id.nullable()))
        .load(conn)?;
    let mut rows = rows.into_iter();
    let Some((row, first)) = rows.next() else {
        return Ok(None);
    };
    let grantors = first
        .into_iter()
        .chain(rows.filter_map(|(_, g)| g))
        .collect();
    Ok(Some((client(row), grantors)))
}

/// Revokes a client: it can no longer obtain tokens, and the tokens it holds stop working.
/// Returns false when there was no such active client.
pub fn revoke(conn: &mut AnyConnection, id: &str) -> Result<bool> {
    let n = diesel::update(
        oauth_clients::table
            .filter(oauth_clients::id.eq(id))
            .filter(oauth_clients::revoked_at.is_null()),
    )
    .set(oauth_clients::revoked_at.eq(now()))
    .execute(conn)?;
    Ok(n > 0)
}

/// A hash of a random secret, verified when the client id is unknown so that the answer takes
/// as long as for a known one.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Hr3J0m9nPpPoBVPg6DvXaDDpf6XO5a3Yg8oljdDRQ3w";

/// The active client with this id and its stored secret hash; for an unknown or revoked id, no
/// client and a decoy hash, so that checking a secret against it takes as long.
pub fn with_secret_hash(conn: &mut AnyConnection, id: &str) -> Result<(Option<Client>, String)> {
    let row: Option<(Row, String)> = oauth_clients::table
        .filter(oauth_clients::id.eq(id))
        .filter(oauth_clients::revoked_at.is_null())
        .select((COLUMNS, oauth_clients::secret_hash))
        .first(conn)
        .optional()?;
    Ok(match row {
        Some((row, hash)) => (Some(client(row)), hash),
        None => (None, DECOY_HASH.to_owned()),
    })
}

/// Whether `secret` is the one `hash` was made from (Argon2id, constant-time).
fn secret_matches(hash: &str, secret: &str) -> Result<bool> {
    let parsed = PasswordHash::new(hash)
        .map_err(|e| Error::internal(anyhow::anyhow!("stored secret hash unreadable: {e}")))?;
    Ok(Argon2::default()
        .verify_password(secret.as_bytes(), &parsed)
        .is_ok())
}

/// Checks client secrets off the database connections and the async workers, a bounded number
/// at once. Each check is Argon2id: some milliseconds of CPU and 19 MiB of memory, on purpose.
/// Checked while holding a database connection, a flood of token requests with wrong secrets
/// held every connection and starved GraphQL; unbounded, it would take memory without end.
#[derive(Clone)]
pub struct SecretChecks {
    slots: Arc<tokio::sync::Semaphore>,
}

impl SecretChecks {
    /// At most one check per core at once.
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        SecretChecks {
            slots: Arc::new(tokio::sync::Semaphore::new(cores)),
        }
    }

    /// The client whose stored hash `hash` is, if `secret` matches it; `None` for any mismatch
    /// (an unknown client included: `hash` is then the decoy).
    pub async fn authenticate(
        &self,
        found: (Option<Client>, String),
        secret: String,
    ) -> Result<Option<Client>> {
        let _slot = self.slots.acquire().await.map_err(Error::internal)?;
        let (client, hash) = found;
        let matches = tokio::task::spawn_blocking(move || secret_matches(&hash, &secret)).await??;
        Ok(client.filter(|_| matches))
    }
}

impl Default for SecretChecks {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoy_hash_is_a_valid_argon2_hash() {
        let parsed = PasswordHash::new(DECOY_HASH).unwrap();
        assert!(Argon2::default().verify_password(b"x", &parsed).is_err());
    }

    #[test]
    fn hashes_verify_only_their_secret() {
        let h = hash("s3cret").unwrap();
        let parsed = PasswordHash::new(&h).unwrap();
        assert!(Argon2::default()
            .verify_password(b"s3cret", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"s3cre", &parsed)
            .is_err());
        assert!(!h.contains("s3cret"));
    }
}
