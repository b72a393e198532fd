//! Partner data in: bulk import of record files (`import`) in the format shared with export
//! (`format`). Push mutations live in `graphql::mutations`; all of them write through
//! `storage::writes`.

pub mod format;
pub mod import;

use crate::domain::Viewer;
use crate::error::{Error, Result};

/// The partner a caller writes as: its own, and only with the `write` scope. Records always
/// belong to this partner; an owner is never taken from input.
pub fn writer_partner(viewer: &Viewer) -> Result<&str> {
    let Some(partner) = viewer.partner.as_deref() else {
        return Err(Error::Unauthenticated(
            "writing requires a partner's access token".into(),
        ));
    };
    if !viewer.has_scope("write") {
        return Err(Error::Forbidden(
            "writing requires the `write` scope".into(),
        ));
    }
    Ok(partner)
}
