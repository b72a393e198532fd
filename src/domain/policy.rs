//! The one projection: what of a record a reader gets.
//!
//! - **Rows**: [`RowFilter`] (in SQL, `storage::visibility`) decides which records a reader reads
//!   at all.
//! - **References**: a record may point at records the reader may not see (a public sub-action
//!   of a private programme, a partnership with a private member). [`Project::project`] leaves
//!   such references out, everywhere: GraphQL resolves references through the request's
//!   loaders, which apply the same row filter, and every other path (exports) renders records
//!   through this function after asking storage which of the referenced ids the reader may see.
//! - **Fields**: [`FieldAccess`] says which scope-guarded fields the reader gets
//!   (`disaggregations` needs `read:sensitive`).
//!
//! A reference to a hidden record and one to a missing record render the same: absent.

use std::collections::HashSet;

use super::{Action, Actor, Outcome, Partnership, RowFilter, Viewer};

/// The ids a batch of records points at, by kind of record.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct References {
    pub actors: Vec<String>,
    pub actions: Vec<String>,
}

impl References {
    pub fn is_empty(&self) -> bool {
        self.actors.is_empty() && self.actions.is_empty()
    }

    /// The references of every record of `records`, each id once.
    pub fn of<'a, T: Project + 'a>(records: impl IntoIterator<Item = &'a T>) -> Self {
        let mut refs = References::default();
        for r in records {
            r.references(&mut refs);
        }
        for list in [&mut refs.actors, &mut refs.actions] {
            list.sort_unstable();
            list.dedup();
        }
        refs
    }
}

/// Of some referenced ids, those the reader may see (storage answers it with the row filter).
#[derive(Debug, Default, Clone)]
pub struct Visible {
    pub actors: HashSet<String>,
    pub actions: HashSet<String>,
}

/// The scope-guarded fields a reader gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldAccess {
    /// Outcomes' `disaggregations`: small cells can identify people.
    pub sensitive: bool,
}

impl Viewer {
    pub fn field_access(&self) -> FieldAccess {
        FieldAccess {
            sensitive: self.has_scope(crate::auth::READ_SENSITIVE),
        }
    }

    /// The records this viewer may name in what it writes (a parent, an outcome's action, a
    /// partnership's members): those it may read, and its own partner's whatever its read
    /// scopes. A reference to anything else is refused as if it did not exist.
    pub fn writer_rows(&self) -> RowFilter {
        let mut rows = self.row_filter();
        if rows.own.is_none() {
            rows.own = self.partner.clone();
        }
        rows
    }

    /// Everything an answer may depend on besides the data: two viewers with the same identity
    /// get the same answer to the same document. The response cache keys answers by it. Every
    /// field of `Viewer` is named here, so a new one must be decided on.
    pub fn cache_identity(&self) -> String {
        let Viewer {
            partner,
            scopes,
            // Nothing in an answer shows which of a partner's clients asked.
            client_id: _,
            shared_by,
        } = self;
        let mut out = String::new();
        let mut push = |part: &str| {
            out.push_str(&part.len().to_string());
            out.push(':');
            out.push_str(part);
        };
        push(partner.as_deref().unwrap_or(""));
        push(if partner.is_some() { "p" } else { "a" });
        for s in scopes {
            push(s);
        }
        push("|");
        for p in shared_by {
            push(p);
        }
        out
    }
}

/// A record rendered for a reader.
pub trait Project {
    /// Adds the ids this record points at to `refs`.
    fn references(&self, refs: &mut References);
    /// Leaves out the references `visible` does not hold and the fields `fields` does not open.
    fn project(&mut self, visible: &Visible, fields: FieldAccess);
}

fn keep(id: &mut Option<String>, visible: &HashSet<String>) {
    if id.as_ref().is_some_and(|i| !visible.contains(i)) {
        *id = None;
    }
}

impl Project for Actor {
    fn references(&self, refs: &mut References) {
        refs.actors.extend(self.parent_actor_id.iter().cloned());
    }
    fn project(&mut self, visible: &Visible, _: FieldAccess) {
        keep(&mut self.parent_actor_id, &visible.actors);
    }
}

impl Project for Action {
    fn references(&self, refs: &mut References) {
        refs.actions.extend(self.parent_action_id.iter().cloned());
    }
    fn project(&mut self, visible: &Visible, _: FieldAccess) {
        keep(&mut self.parent_action_id, &visible.actions);
    }
}

impl Project for Outcome {
    // An outcome is visible only with its action (storage's rows), so its `action_id` always
    // names a record the reader sees.
    fn references(&self, _: &mut References) {}
    fn project(&mut self, _: &Visible, fields: FieldAccess) {
        if !fields.sensitive {
            self.disaggregations.clear();
        }
    }
}

impl Project for Partnership {
    fn references(&self, refs: &mut References) {
        refs.actions.extend(self.action_id.iter().cloned());
        refs.actors
            .extend(self.members.iter().map(|m| m.actor_id.clone()));
    }
    fn project(&mut self, visible: &Visible, _: FieldAccess) {
        keep(&mut self.action_id, &visible.actions);
        self.members
            .retain(|m| visible.actors.contains(&m.actor_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Member, PartnershipRole, Provenance, Visibility};

    fn provenance() -> Provenance {
        Provenance {
            source: "test".into(),
            source_ref: None,
            imported_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn hidden_references_and_members_are_left_out() {
        let mut p = Partnership {
            id: "a-p".into(),
            owner: "a".into(),
            action_id: Some("b-hidden".into()),
            name: "p".into(),
            description: None,
            starts_on: None,
            ends_on: None,
            members: ["a-seen", "b-hidden-actor"]
                .iter()
                .map(|id| Member {
                    actor_id: id.to_string(),
                    role: PartnershipRole::Lead,
                })
                .collect(),
            visibility: Visibility::Public,
            provenance: provenance(),
        };
        let refs = References::of([&p]);
        assert_eq!(refs.actions, ["b-hidden"]);
        assert_eq!(refs.actors, ["a-seen", "b-hidden-actor"]);
        let visible = Visible {
            actors: ["a-seen".to_string()].into_iter().collect(),
            actions: HashSet::new(),
        };
        p.project(&visible, FieldAccess { sensitive: false });
        assert_eq!(p.action_id, None);
        assert_eq!(p.members.len(), 1);
        assert_eq!(p.members[0].actor_id, "a-seen");
    }

    #[test]
    fn cache_identity_covers_partner_scopes_and_sharing_but_not_the_client() {
        let v = |partner: Option<&str>, scopes: &[&str], shared: &[&str], client: &str| Viewer {
            partner: partner.map(str::to_owned),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            client_id: Some(client.into()),
            shared_by: shared.iter().map(|s| s.to_string()).collect(),
        };
        let research_a = v(Some("anvita"), &["research"], &[], "c1");
        let research_b = v(Some("department"), &["research"], &[], "c2");
        assert_ne!(research_a.cache_identity(), research_b.cache_identity());
        let write_a = v(Some("anvita"), &["write"], &[], "c1");
        let write_b = v(Some("department"), &["write"], &[], "c2");
        assert_ne!(write_a.cache_identity(), write_b.cache_identity());
        assert_ne!(
            v(Some("a"), &["read"], &["b"], "c").cache_identity(),
            v(Some("a"), &["read"], &[], "c").cache_identity()
        );
        assert_eq!(
            v(Some("a"), &["read"], &[], "c1").cache_identity(),
            v(Some("a"), &["read"], &[], "c2").cache_identity()
        );
        assert_ne!(
            Viewer::anonymous().cache_identity(),
            v(Some(""), &[], &[], "c").cache_identity()
        );
    }
}
