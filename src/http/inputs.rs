//! The text a GraphQL request carries, checked once at the boundary, before anything reads it:
//! no NUL character (PostgreSQL can neither store nor compare one) and no string longer than
//! any field takes. So both backends answer bad text the same way, `BAD_USER_INPUT` naming
//! where it was, whatever argument, variable or input field carries it.

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::Value;

use crate::error::{Error, FieldError, Result};

/// The longest text any input takes (descriptions, statements).
pub const MAX_STRING_CHARS: usize = 20_000;

/// Every string in `variables` and in the arguments the document writes out.
pub fn check(document: &ExecutableDocument, variables: &serde_json::Value) -> Result<()> {
    let mut problems = Vec::new();
    if let serde_json::Value::Object(vars) = variables {
        for (name, value) in vars {
            json(&format!("${name}"), value, &mut problems);
        }
    }
    for (_, op) in document.operations.iter() {
        selections(&op.node.selection_set.node, &mut problems);
    }
    for fragment in document.fragments.values() {
        selections(&fragment.node.selection_set.node, &mut problems);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        problems.truncate(20);
        Err(Error::Invalid(problems))
    }
}

/// The request's operation name and extensions (a persisted query's id), before they are used.
pub fn check_envelope(
    operation_name: Option<&str>,
    extensions: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<()> {
    let mut problems = Vec::new();
    if let Some(name) = operation_name {
        text("operationName", name, &mut problems);
    }
    for (k, v) in extensions.into_iter().flatten() {
        json(&format!("extensions.{k}"), v, &mut problems);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(problems))
    }
}

fn text(at: &str, s: &str, problems: &mut Vec<FieldError>) {
    if s.contains('\0') {
        problems.push(FieldError::new(at, "must not contain a NUL character"));
    } else if s.len() > MAX_STRING_CHARS && s.chars().count() > MAX_STRING_CHARS {
        problems.push(FieldError::new(
            at,
            format!("must be at most {MAX_STRING_CHARS} characters"),
        ));
    }
}

fn json(at: &str, value: &serde_json::Value, problems: &mut Vec<FieldError>) {
    match value {
        serde_json::Value::String(s) => text(at, s, problems),
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                json(&format!("{at}[{i}]"), v, problems);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                text(&format!("{at} (a key)"), k, problems);
                json(&format!("{at}.{k}"), v, problems);
            }
        }
        _ => {}
    }
}

fn literal(at: &str, value: &Value, problems: &mut Vec<FieldError>) {
    match value {
        Value::String(s) => text(at, s, problems),
        Value::Enum(name) => text(at, name.as_str(), problems),
        Value::List(items) => {
            for (i, v) in items.iter().enumerate() {
                literal(&format!("{at}[{i}]"), v, problems);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                literal(&format!("{at}.{k}"), v, problems);
            }
        }
        _ => {}
    }
}

fn selections(set: &SelectionSet, problems: &mut Vec<FieldError>) {
    for item in &set.items {
        match &item.node {
            Selection::Field(field) => {
                let field = &field.node;
                for (name, value) in &field.arguments {
                    let at = format!("{}.{}", field.name.node, name.node);
                    let value = value.node.clone().into_const_with(|_| {
                        // Variables are checked on their own.
                        Ok::<_, std::convert::Infallible>(Value::Null)
                    });
                    let Ok(v) = value;
                    literal(&at, &v, problems);
                }
                selections(&field.selection_set.node, problems);
            }
            Selection::InlineFragment(f) => selections(&f.node.selection_set.node, problems),
            Selection::FragmentSpread(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(doc: &str, vars: serde_json::Value) -> Result<()> {
        check(&async_graphql::parser::parse_query(doc).unwrap(), &vars)
    }

    #[test]
    fn nul_and_overlong_text_is_refused_wherever_it_is() {
        assert!(checked(
            "{ actions(filter: {text: \"ok\"}) { totalCount } }",
            json!({})
        )
        .is_ok());
        let e = checked(
            "query { ...F } fragment F on Query { actions(filter: {text: \"a\\u0000b\"}) { totalCount } }",
            serde_json::json!({}),
        )
        .unwrap_err();
        assert_eq!(e.code(), "BAD_USER_INPUT");
        let Error::Invalid(fields) = e else { panic!() };
        assert_eq!(fields[0].field, "actions.filter.text");
        let e = checked(
            "query($f: ActionFilter) { actions(filter: $f) { totalCount } }",
            serde_json::json!({"f": {"themes": ["x", "a\u{0}"]}}),
        )
        .unwrap_err();
        let Error::Invalid(fields) = e else { panic!() };
        assert_eq!(fields[0].field, "$f.themes[1]");
        let long = "x".repeat(MAX_STRING_CHARS + 1);
        let e = checked(
            "query($t: String) { a(t: $t) }",
            serde_json::json!({ "t": long }),
        )
        .unwrap_err();
        assert_eq!(e.code(), "BAD_USER_INPUT");
    }

    use serde_json::json;
}
