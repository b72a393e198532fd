//! Who is asking, and the one visibility policy every read goes through.
//!
//! A `Viewer` is built once per request. `Viewer::row_filter` turns it into a `RowFilter`, which
//! storage turns into SQL (`storage::visibility`) and `RowFilter::allows` checks in memory: every
//! list, loader, count, `node(id:)` lookup, aggregate and export uses one of those two.

use std::collections::BTreeSet;

use super::Visibility;

/// The caller of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Viewer {
    /// The partner the caller acts for; `None` for anonymous callers.
    pub partner: Option<String>,
    /// The OAuth2 scopes granted to the caller.
    pub scopes: BTreeSet<String>,
    /// The OAuth2 client the token was issued to, if any.
    pub client_id: Option<String>,
    /// Partners that share their `PARTNERS`-visible records with this caller's partner.
    pub shared_by: BTreeSet<String>,
}

impl Viewer {
    /// A caller with no token: sees public records only.
    pub fn anonymous() -> Self {
        Self::default()
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// The field-level policy: `Ok` when the viewer holds `scope`, else a `FORBIDDEN_FIELD`
    /// error naming it (the field resolves to null beside the error).
    pub fn require_for_field(&self, scope: &str, field: &str) -> crate::error::Result<()> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(crate::error::Error::ForbiddenField(format!(
                "`{field}` needs the `{scope}` scope"
            )))
        }
    }

    /// The operation-level policy: `Ok` when the viewer holds `scope`, else `FORBIDDEN`.
    pub fn require(&self, scope: &str, what: &str) -> crate::error::Result<()> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(crate::error::Error::Forbidden(format!(
                "{what} needs the `{scope}` scope"
            )))
        }
    }

    /// The rows this viewer may read. Rows beyond the public ones need the `read` scope: a
    /// token without it (a research-only client, say) sees what anonymous callers see.
    pub fn row_filter(&self) -> RowFilter {
        if !self.has_scope("read") {
            return RowFilter::default();
        }
        RowFilter {
            own: self.partner.clone(),
            shared_by: self.shared_by.iter().cloned().collect(),
        }
    }
}

/// Which rows a viewer may read: every public row, every row its own partner owns, and the
/// `PARTNERS`-visible rows of partners that share with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RowFilter {
    pub own: Option<String>,
    pub shared_by: Vec<String>,
}

impl RowFilter {
    pub fn allows(&self, owner: &str, visibility: Visibility) -> bool {
        match visibility {
            Visibility::Public => true,
            Visibility::Private => self.own.as_deref() == Some(owner),
            Visibility::Partners => {
                self.own.as_deref() == Some(owner) || self.shared_by.iter().any(|p| p == owner)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn viewer(partner: &str, shared_by: &[&str]) -> Viewer {
        Viewer {
            partner: Some(partner.into()),
            scopes: ["read".to_string()].into_iter().collect(),
            shared_by: shared_by.iter().map(|s| s.to_string()).collect(),
            ..Viewer::default()
        }
    }

    #[test]
    fn anonymous_sees_public_only() {
        let f = Viewer::anonymous().row_filter();
        assert!(f.allows("caravan", Visibility::Public));
        assert!(!f.allows("caravan", Visibility::Partners));
        assert!(!f.allows("caravan", Visibility::Private));
    }

    #[test]
    fn owner_sees_everything_it_owns() {
        let f = viewer("caravan", &[]).row_filter();
        for v in Visibility::ALL {
            assert!(f.allows("caravan", *v));
        }
        assert!(!f.allows("anvita", Visibility::Partners));
    }

    #[test]
    fn without_read_scope_a_partner_sees_public_rows_only() {
        let mut v = viewer("caravan", &["anvita"]);
        v.scopes.clear();
        let f = v.row_filter();
        assert!(f.allows("caravan", Visibility::Public));
        assert!(!f.allows("caravan", Visibility::Private));
        assert!(!f.allows("anvita", Visibility::Partners));
    }

    #[test]
    fn sharing_opens_partners_rows_but_never_private_ones() {
        let f = viewer("caravan", &["anvita"]).row_filter();
        assert!(f.allows("anvita", Visibility::Partners));
        assert!(!f.allows("anvita", Visibility::Private));
        assert!(!f.allows("department", Visibility::Partners));
    }
}
