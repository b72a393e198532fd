//! Stage 2: persisted queries. Resolves `extensions.persistedQuery` (Apollo's automatic
//! persisted queries and trusted documents) into the text to run, and keeps `persisted_only`
//! clients to trusted documents.

use crate::app::App;
use crate::domain::Viewer;
use crate::error::{Error, Result};

use super::extract::GraphQLBody;

/// The text that will run, and where it came from.
pub struct Resolved {
    pub query: String,
    /// The persisted query id, when one was sent.
    pub id: Option<String>,
    /// The operation name stored with a trusted document.
    pub stored_name: Option<String>,
}

/// Whether this caller may only run trusted documents (by client id or partner slug): from the
/// `persisted_only` setting or `passerelle pq only add` (read again every second).
pub async fn persisted_only(app: &App, viewer: &Viewer) -> Result<bool> {
    let who: Vec<&String> = [&viewer.client_id, &viewer.partner]
        .into_iter()
        .flatten()
        .collect();
    if who.is_empty() {
        return Ok(false);
    }
    if who
        .iter()
        .any(|w| app.config.persisted_only.iter().any(|p| p == *w))
    {
        return Ok(true);
    }
    let held = app.persisted.only_callers().await?;
    Ok(who.iter().any(|w| held.contains(w.as_str())))
}

pub async fn resolve(app: &App, viewer: &Viewer, body: &GraphQLBody) -> Result<Resolved> {
    let only = persisted_only(app, viewer).await?;
    let text = body.query.as_deref().filter(|q| !q.trim().is_empty());
    let Some(pq) = body
        .extensions
        .as_ref()
        .and_then(|e| e.get("persistedQuery"))
    else {
        if only {
            return Err(Error::PersistedQueryRequired(
                "this client may only run trusted documents: send `extensions.persistedQuery.sha256Hash` without `query`".into(),
            ));
        }
        return text
            .map(|q| Resolved {
                query: q.to_owned(),
                id: None,
                stored_name: None,
            })
            .ok_or_else(|| Error::BadRequest("the request has no `query`".into()));
    };
    if pq.get("version").and_then(|v| v.as_i64()) != Some(1) {
        return Err(Error::BadRequest(
            "extensions.persistedQuery.version must be 1".into(),
        ));
    }
    let hash = pq
        .get("sha256Hash")
        .and_then(|h| h.as_str())
        .filter(|h| !h.is_empty() && h.len() <= 200)
        .ok_or_else(|| {
            Error::BadRequest("extensions.persistedQuery.sha256Hash must be a string".into())
        })?;
    // SHA-256 hex is case-insensitive; manifest ids (any string) are taken as they are.
    let normalized;
    let hash = if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        normalized = hash.to_ascii_lowercase();
        normalized.as_str()
    } else {
        hash
    };
    match text {
        Some(text) => {
            if only {
                return Err(Error::PersistedQueryRequired(
                    "this client may only run trusted documents: send the id without `query`"
                        .into(),
                ));
            }
            app.persisted
                .register(hash, text, body.operation_name.as_deref())
                .await?;
            Ok(Resolved {
                query: text.to_owned(),
                id: Some(hash.to_owned()),
                stored_name: None,
            })
        }
        None => {
            // For a client held to trusted documents an unknown id is final: an APQ client
            // answered `PersistedQueryNotFound` would retry with the text, refused anyway.
            let not_in_manifest = || {
                Error::PersistedQueryNotInManifest(format!(
                    "`{hash}` is not a trusted document: add it to the manifest and `passerelle pq import` it"
                ))
            };
            let stored = match app.persisted.find(hash).await? {
                Some(stored) => stored,
                None if only => return Err(not_in_manifest()),
                None => return Err(Error::PersistedQueryNotFound),
            };
            if only && !stored.trusted {
                return Err(Error::PersistedQueryRequired(format!(
                    "`{hash}` is not a trusted document"
                )));
            }
            Ok(Resolved {
                query: stored.body.clone(),
                id: Some(hash.to_owned()),
                stored_name: stored.operation_name.clone(),
            })
        }
    }
}
