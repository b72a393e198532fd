//! Documents that read nothing but the schema, and the depth they may reach: graphql-js's
//! standard introspection query is deeper than any data query needs. The HTTP checks
//! (`http::limits`) and [`super::Schemas`] decide with these.

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};

/// The depth limit of documents that read nothing but the schema: graphql-js's standard
/// introspection query is 13 deep (its `ofType` chain), some tools ask a few levels more.
pub const INTROSPECTION_MAX_DEPTH: usize = 20;

/// Root fields that read only the schema.
const INTROSPECTION_ROOTS: [&str; 3] = ["__schema", "__type", "__typename"];

/// Whether every operation of `doc` reads nothing but the schema: every root field, through
/// fragments, is `__schema`, `__type` or `__typename` (whose selections can reach no data). A
/// document with any other root field, or fragments that cannot be followed, is not.
pub fn introspection_only(doc: &ExecutableDocument) -> bool {
    fn roots(doc: &ExecutableDocument, set: &SelectionSet, seen: &mut Vec<String>) -> bool {
        set.items.iter().all(|item| match &item.node {
            Selection::Field(f) => INTROSPECTION_ROOTS.contains(&f.node.name.node.as_str()),
            Selection::InlineFragment(f) => roots(doc, &f.node.selection_set.node, seen),
            Selection::FragmentSpread(s) => {
                let name = s.node.fragment_name.node.as_str();
                if seen.iter().any(|n| n == name) {
                    return false;
                }
                seen.push(name.to_owned());
                let ok = doc
                    .fragments
                    .get(&s.node.fragment_name.node)
                    .is_some_and(|f| roots(doc, &f.node.selection_set.node, seen));
                seen.pop();
                ok
            }
        })
    }
    doc.operations
        .iter()
        .all(|(_, op)| roots(doc, &op.node.selection_set.node, &mut Vec::new()))
}
