//! Puts an answer's fields in the order the document asks for them (GraphQL spec, "Serialized
//! Map Ordering": fields appear in the order of the selection set, after fragments are merged).
//!
//! async-graphql resolves the fields of a query concurrently and collects them as they finish,
//! so a field that waits on the database would otherwise come after its siblings, and the same
//! answer could be serialized in different orders (and get different ETags). This walk follows
//! the selection sets (fragment spreads and inline fragments included, in place) and sorts
//! each object's entries by the position of their response key.

use async_graphql::parser::types::{
    ExecutableDocument, OperationDefinition, Selection, SelectionSet,
};
use async_graphql::Value;

/// Orders `data` (the answer to `operation` of `doc`) in place.
pub fn by_document(doc: &ExecutableDocument, operation: &OperationDefinition, data: &mut Value) {
    order(doc, &[&operation.selection_set.node], data);
}

/// Puts `null` where a field failed (GraphQL spec, "Handling Field Errors": a field error makes
/// the field null). async-graphql leaves a failed field out of its object instead; a field
/// refused with `FORBIDDEN_FIELD` would then be missing from `data`. Only nullable fields are
/// left out this way: a failed non-null field has nulled its parent already.
pub fn null_failed_fields(data: &mut Value, errors: &[async_graphql::ServerError]) {
    use async_graphql::PathSegment;
    for error in errors {
        let Some((PathSegment::Field(last), parents)) = error.path.split_last() else {
            continue;
        };
        if let Some(Value::Object(map)) = parent_of(data, parents) {
            let key = async_graphql::Name::new(last);
            if !map.contains_key(&key) {
                map.insert(key, Value::Null);
            }
        }
    }
}

fn parent_of<'v>(
    value: &'v mut Value,
    path: &[async_graphql::PathSegment],
) -> Option<&'v mut Value> {
    use async_graphql::PathSegment;
    let Some((first, rest)) = path.split_first() else {
        return Some(value);
    };
    let next = match (first, value) {
        (PathSegment::Field(name), Value::Object(map)) => map.get_mut(name.as_str())?,
        (PathSegment::Index(i), Value::List(items)) => items.get_mut(*i)?,
        _ => return None,
    };
    parent_of(next, rest)
}

/// A response key and the selection sets that select inside it (several when fragments or
/// repeated fields select the same key).
type Keyed<'d> = Vec<(&'d str, Vec<&'d SelectionSet>)>;

fn order<'d>(doc: &'d ExecutableDocument, sets: &[&'d SelectionSet], value: &mut Value) {
    match value {
        Value::List(items) => {
            // The same selection for every item: collect its keys once.
            let keys = collect(doc, sets);
            for item in items {
                apply(doc, &keys, item);
            }
        }
        Value::Object(_) => apply(doc, &collect(doc, sets), value),
        _ => {}
    }
}

fn apply<'d>(doc: &'d ExecutableDocument, keys: &Keyed<'d>, value: &mut Value) {
    match value {
        Value::List(items) => {
            for item in items {
                apply(doc, keys, item);
            }
        }
        Value::Object(map) => {
            // Most objects have the document's keys already, in its order (the leaf objects are
            // built so): checked pair by pair, and each child's selections taken from its pair.
            let as_selected = map.len() == keys.len()
                && map.keys().zip(keys).all(|(k, (key, _))| k.as_str() == *key);
            if as_selected {
                for ((_, child), (_, subs)) in map.iter_mut().zip(keys) {
                    if !subs.is_empty() {
                        order(doc, subs, child);
                    }
                }
                return;
            }
            let rank = |name: &str| keys.iter().position(|(k, _)| *k == name);
            let in_order = map
                .keys()
                .map(|k| rank(k.as_str()).unwrap_or(usize::MAX))
                .is_sorted();
            if !in_order {
                // Keys the document does not name (none expected) keep their place at the end.
                map.sort_by_cached_key(|k, _| rank(k.as_str()).unwrap_or(usize::MAX));
            }
            for (name, child) in map.iter_mut() {
                if let Some((_, subs)) = keys.iter().find(|(k, _)| *k == name.as_str()) {
                    if !subs.is_empty() {
                        order(doc, subs, child);
                    }
                }
            }
        }
        _ => {}
    }
}

/// The response keys of `sets`, in document order, with the selection sets under each.
fn collect<'d>(doc: &'d ExecutableDocument, sets: &[&'d SelectionSet]) -> Keyed<'d> {
    let mut keys = Keyed::new();
    let mut seen_fragments = Vec::new();
    for set in sets {
        walk(doc, set, &mut keys, &mut seen_fragments);
    }
    keys
}

fn walk<'d>(
    doc: &'d ExecutableDocument,
    set: &'d SelectionSet,
    keys: &mut Keyed<'d>,
    seen_fragments: &mut Vec<&'d str>,
) {
    for item in &set.items {
        match &item.node {
            Selection::Field(field) => {
                let key = field.node.response_key().node.as_str();
                let sub = &field.node.selection_set.node;
                match keys.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, subs)) => subs.push(sub),
                    None => keys.push((key, vec![sub])),
                }
            }
            Selection::InlineFragment(f) => {
                walk(doc, &f.node.selection_set.node, keys, seen_fragments)
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                // Validation rejects fragment cycles; this guard only keeps the walk finite.
                if seen_fragments.contains(&name) {
                    continue;
                }
                seen_fragments.push(name);
                if let Some(fragment) = doc.fragments.get(&spread.node.fragment_name.node) {
                    walk(doc, &fragment.node.selection_set.node, keys, seen_fragments);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ordered(query: &str, data: serde_json::Value) -> String {
        let doc = async_graphql::parser::parse_query(query).unwrap();
        let (_, op) = doc.operations.iter().next().unwrap();
        let mut value = Value::from_json(data).unwrap();
        by_document(&doc, &op.node, &mut value);
        serde_json::to_string(&value).unwrap()
    }

    #[test]
    fn objects_follow_the_selection_with_fragments_and_aliases() {
        let q = "{ b: x { z ...F } a { ... on T { q p } } } fragment F on X { y w: z2 }";
        // serde_json's map sorts keys: the input arrives in an order the document did not ask for.
        let data = serde_json::json!({
            "a": [{ "p": 1, "q": 2 }, { "p": 3, "q": 4 }],
            "b": { "w": 0, "y": 1, "z": 2 }
        });
        assert_eq!(
            ordered(q, data),
            r#"{"b":{"z":2,"y":1,"w":0},"a":[{"q":2,"p":1},{"q":4,"p":3}]}"#
        );
    }

    #[test]
    fn an_object_already_in_order_still_orders_what_it_holds() {
        let q = "{ a { c { y x } d } b }";
        let data = serde_json::json!({ "a": { "c": [{ "x": 1, "y": 2 }], "d": 3 }, "b": 4 });
        assert_eq!(
            ordered(q, data),
            r#"{"a":{"c":[{"y":2,"x":1}],"d":3},"b":4}"#
        );
    }

    #[test]
    fn a_key_selected_twice_merges_its_selections() {
        let q = "{ a { y } ...F } fragment F on Query { a { x } b }";
        let data = serde_json::json!({ "a": { "x": 1, "y": 2 }, "b": null });
        assert_eq!(ordered(q, data), r#"{"a":{"y":2,"x":1},"b":null}"#);
    }
}
