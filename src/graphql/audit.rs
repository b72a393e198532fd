//! The audit log, readable with the `admin` scope.

use async_graphql::{Context, Object, SimpleObject};

use super::context::request;
use crate::auth::{audit, ADMIN};

/// One authenticated GraphQL request, or one call to an OAuth endpoint, as recorded.
#[derive(SimpleObject)]
pub struct AuditEntry {
    /// When the request was answered (RFC 3339).
    pub at: String,
    /// The client; for a refused OAuth call, the client id it claimed (if it looked like one).
    pub client_id: Option<String>,
    /// The partner the client acts for.
    pub partner: Option<String>,
    /// The operation name, or the start of the document when it has none; for the OAuth
    /// endpoints `POST /oauth/token`, `POST /oauth/introspect` or `POST /oauth/revoke`.
    pub operation: String,
    /// The partners whose records the response carried.
    pub returned_partners: Vec<String>,
    /// `ok`, or `errors` when the response carried errors. For the OAuth endpoints:
    /// `issued: SCOPES`, `active`, `inactive`, `revoked`, `ignored` (a token the caller may not
    /// revoke), or `refused: ERROR` with the RFC 6749 error code.
    pub outcome: String,
}

#[derive(Default)]
pub struct AuditQueries;

#[Object]
impl AuditQueries {
    /// The latest authenticated requests and OAuth endpoint calls, newest first. Needs the
    /// `admin` scope.
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50, validator(minimum = 1, maximum = 500))] last: i32,
    ) -> async_graphql::Result<Vec<AuditEntry>> {
        let rc = request(ctx)?;
        rc.viewer.require(ADMIN, "the audit log")?;
        let limit = i64::from(last);
        // Every request adds to the log: an answer holding it is never kept.
        rc.reads.uncacheable();
        let entries = rc.store.run(move |c| audit::recent(c, limit)).await?;
        Ok(entries
            .into_iter()
            .map(|e| AuditEntry {
                at: e.at,
                client_id: e.client_id,
                partner: e.partner_id,
                operation: e.operation,
                returned_partners: e
                    .partners
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
                outcome: e.outcome,
            })
            .collect())
    }
}
