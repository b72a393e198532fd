//! The audit log: one row per authenticated request, saying who (client, partner), when, which
//! operation, and which partners' records the response carried; and one per call to the OAuth
//! endpoints (token, introspection, revocation: which client asked and how it ended, never a
//! secret or a token). Append-only: the application only ever inserts and selects; it is
//! readable with the `admin` scope.

use std::collections::BTreeSet;

use diesel::prelude::*;

use crate::app::App;
use crate::domain::Viewer;
use crate::error::{Error, Result};
use crate::graphql::context::OwnerLog;
use crate::storage::schema::audit_log;
use crate::storage::AnyConnection;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, serde::Serialize)]
pub struct Entry {
    pub id: String,
    pub at: String,
    pub client_id: Option<String>,
    pub partner_id: Option<String>,
    pub operation: String,
    /// Comma-separated partner ids.
    pub partners: String,
    pub outcome: String,
}

/// Now, in RFC 3339 with a fixed nanosecond fraction, so entries sort by time as text.
fn timestamp() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_else(|_| crate::app::now())
}

/// Appends one entry.
pub fn record(
    conn: &mut AnyConnection,
    viewer: &Viewer,
    operation: &str,
    partners: &BTreeSet<String>,
    outcome: &str,
) -> Result<()> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::id.eq(uuid::Uuid::new_v4().to_string()),
            audit_log::at.eq(timestamp()),
            audit_log::client_id.eq(&viewer.client_id),
            audit_log::partner_id.eq(&viewer.partner),
            audit_log::operation.eq(operation),
            audit_log::partners.eq(partners.iter().cloned().collect::<Vec<_>>().join(",")),
            audit_log::outcome.eq(outcome),
        ))
        .execute(conn)?;
    Ok(())
}

/// The latest `limit` entries, newest first.
pub fn recent(conn: &mut AnyConnection, limit: i64) -> Result<Vec<Entry>> {
    Ok(audit_log::table
        .select((
            audit_log::id,
            audit_log::at,
            audit_log::client_id,
            audit_log::partner_id,
            audit_log::operation,
            audit_log::partners,
            audit_log::outcome,
        ))
        .order((audit_log::at.desc(), audit_log::id.desc()))
        .limit(limit)
        .load(conn)?)
}

/// An authenticated request being answered: recorded once its response is known.
pub struct Pending {
    viewer: Option<Viewer>,
    operation: String,
}

impl Pending {
    /// Notes who asks and for what; anonymous requests are not audited.
    pub fn new(viewer: &Viewer, request: &async_graphql::Request) -> Self {
        let named = || match async_graphql::parser::parse_query(&request.query) {
            Ok(doc) => match doc.operations {
                async_graphql::parser::types::DocumentOperations::Multiple(ops)
                    if ops.len() == 1 =>
                {
                    ops.keys().next().map(|n| n.to_string())
                }
                _ => None,
            },
            Err(_) => None,
        };
        // The operation's name; else the start of the document, enough to recognise it.
        let operation = request
            .operation_name
            .clone()
            .or_else(named)
            .unwrap_or_else(|| {
                request
                    .query
                    .split_whitespace()
                    .take(12)
                    .collect::<Vec<_>>()
                    .join(" ")
                    .chars()
                    .take(200)
                    .collect()
            });
        Pending {
            viewer: viewer.client_id.is_some().then(|| viewer.clone()),
            operation,
        }
    }

    /// Appends the entry. A failure here fails the request: nothing is answered unaudited.
    pub async fn finish(
        self,
        app: &App,
        owners: &OwnerLog,
        response: &async_graphql::Response,
    ) -> Result<(), Error> {
        self.finish_with(app, owners.snapshot(), response.errors.is_empty())
            .await
    }

    /// Appends the entry for an answer holding records of `partners` (a cached answer too).
    pub async fn finish_with(
        self,
        app: &App,
        partners: std::collections::BTreeSet<String>,
        ok: bool,
    ) -> Result<(), Error> {
        let Some(viewer) = self.viewer else {
            return Ok(());
        };
        let outcome = if ok { "ok" } else { "errors" };
        let operation = self.operation;
        app.store
            .run(move |conn| record(conn, &viewer, &operation, &partners, outcome))
            .await
    }
}
