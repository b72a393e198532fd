//! Stage 3: what a document may cost, checked before it runs. Tokens are counted before parsing
//! (parsing is the first thing an attacker makes us pay for), then aliases, introspection and the
//! operation type on the parsed document. Depth and complexity are checked by async-graphql's
//! validation with the schema's limits; `response_codes` gives those errors their stable codes.
//!
//! Introspection is limited on its own terms (as graphql-js's `MaxIntrospectionDepthRule` and
//! graphql-armor's `ignoreIntrospection` do): the standard introspection query's `ofType` chain
//! is deeper than any data query needs, so a document that reads nothing but the schema
//! ([`crate::graphql::introspection::introspection_only`]) runs on a schema instance with a higher depth limit
//! ([`crate::graphql::introspection::INTROSPECTION_MAX_DEPTH`]), while any document with a data field keeps the normal limits.
//! What makes introspection costly is nesting the lists of types (`fields { type { fields ...`),
//! each level multiplying the answer: that nesting is bounded in every document.

use std::collections::HashMap;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::storage::queries::Detail;

/// What the checks learnt about the operation that will run.
#[derive(Debug)]
pub struct Checked {
    pub ty: OperationType,
    /// The name of the operation that runs, from the document.
    pub name: Option<String>,
    pub introspection: bool,
    /// Whether its answer may be cached: only documents whose every root field is a read of
    /// records whose kinds are known (never `auditLog`, which changes with every request).
    pub cacheable: bool,
    /// The satellite rows any operation or fragment of the document names.
    pub detail: Detail,
    /// The parsed document, for putting the answer in its order.
    pub document: ExecutableDocument,
}

impl Checked {
    /// The operation that runs.
    pub fn operation(&self) -> Option<&async_graphql::parser::types::OperationDefinition> {
        select_operation(&self.document, self.name.as_deref())
            .ok()
            .map(|(_, op)| op)
    }
}

pub fn check(config: &Config, text: &str, operation_name: Option<&str>) -> Result<Checked> {
    let tokens = count_tokens(text, config.max_query_tokens);
    if tokens > config.max_query_tokens {
        return Err(Error::TooManyTokens(format!(
            "the document has more than {} tokens",
            config.max_query_tokens
        )));
    }
    let doc = async_graphql::parser::parse_query(text)
        .map_err(|e| Error::ParseFailed(format!("the document does not parse: {e}")))?;
    let (name, operation) = select_operation(&doc, operation_name)?;
    let mut walk = Walk::default();
    for (_, op) in doc.operations.iter() {
        walk.set(&op.node.selection_set.node, 0);
    }
    for fragment in doc.fragments.values() {
        walk.set(&fragment.node.selection_set.node, 1);
    }
    if walk.aliases > config.max_query_aliases {
        return Err(Error::TooManyAliases(format!(
            "the document uses {} aliases; at most {} are allowed",
            walk.aliases, config.max_query_aliases
        )));
    }
    if walk.introspection {
        let mut nesting = Nesting {
            doc: &doc,
            memo: HashMap::new(),
        };
        let mut deepest = 0;
        for (_, op) in doc.operations.iter() {
            deepest = deepest.max(nesting.set(&op.node.selection_set.node, false)?);
        }
        if deepest > MAX_TYPE_LIST_NESTING {
            return Err(Error::QueryTooDeep(format!(
                "introspection nests `fields`, `interfaces`, `possibleTypes` or `inputFields` \
                 {deepest} deep; at most {MAX_TYPE_LIST_NESTING} are allowed"
            )));
        }
    }
    let ty = operation.ty;
    Ok(Checked {
        ty,
        name,
        introspection: walk.introspection,
        cacheable: !walk.uncacheable,
        detail: walk.detail,
        document: doc,
    })
}

fn select_operation<'a>(
    doc: &'a ExecutableDocument,
    wanted: Option<&str>,
) -> Result<(
    Option<String>,
    &'a async_graphql::parser::types::OperationDefinition,
)> {
    match (&doc.operations, wanted) {
        (DocumentOperations::Single(op), None) => Ok((None, &op.node)),
        (_, Some(wanted)) => doc
            .operations
            .iter()
            .find(|(name, _)| name.is_some_and(|n| n.as_str() == wanted))
            .map(|(name, op)| (name.map(|n| n.to_string()), &op.node))
            .ok_or_else(|| {
                Error::ValidationFailed(format!("the document has no operation named `{wanted}`"))
            }),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops
            .iter()
            .next()
            .map(|(name, op)| (Some(name.to_string()), &op.node))
            .ok_or_else(|| Error::ValidationFailed("the document has no operation".into())),
        (DocumentOperations::Multiple(_), None) => Err(Error::ValidationFailed(
            "the document has several operations: say which one in `operationName`".into(),
        )),
    }
}

#[derive(Default)]
struct Walk {
    aliases: usize,
    introspection: bool,
    uncacheable: bool,
    detail: Detail,
}

/// Root fields whose answers the response cache may hold.
const CACHEABLE_ROOTS: &[&str] = &[
    "__typename",
    "partners",
    "actors",
    "actor",
    "actions",
    "action",
    "outcomes",
    "outcome",
    "partnerships",
    "partnership",
    "node",
    "nodes",
    "viewer",
    "researchAggregate",
];

impl Walk {
    fn set(&mut self, set: &SelectionSet, depth: usize) {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    if field.alias.is_some() {
                        self.aliases += 1;
                    }
                    let name = field.name.node.as_str();
                    self.detail.note(name);
                    // A federation gateway's `_service { sdl }` is introspection too.
                    if matches!(name, "__schema" | "__type" | "_service") {
                        self.introspection = true;
                    }
                    if depth == 0 && !CACHEABLE_ROOTS.contains(&name) {
                        self.uncacheable = true;
                    }
                    self.set(&field.selection_set.node, depth + 1);
                }
                Selection::InlineFragment(f) => self.set(&f.node.selection_set.node, depth),
                Selection::FragmentSpread(_) => {}
            }
        }
    }
}

/// How many of `fields`, `interfaces`, `possibleTypes` and `inputFields` may nest inside one
/// another under `__schema` or `__type` (graphql-js refuses a third level too).
const MAX_TYPE_LIST_NESTING: usize = 2;

/// The introspection fields that list types, whose nesting multiplies an answer.
const TYPE_LISTS: [&str; 4] = ["fields", "interfaces", "possibleTypes", "inputFields"];

/// The deepest nesting of [`TYPE_LISTS`] under introspection fields, fragments followed once
/// each (memoized, so a document cannot make this walk exponential).
struct Nesting<'a> {
    doc: &'a ExecutableDocument,
    /// By fragment and whether it is inside an introspection field; `None` while being walked.
    memo: HashMap<(&'a str, bool), Option<usize>>,
}

impl<'a> Nesting<'a> {
    fn set(&mut self, set: &'a SelectionSet, inside: bool) -> Result<usize> {
        let mut deepest = 0;
        for item in &set.items {
            let depth = match &item.node {
                Selection::Field(field) => {
                    let name = field.node.name.node.as_str();
                    let inside = inside || name == "__schema" || name == "__type";
                    let own = usize::from(inside && TYPE_LISTS.contains(&name));
                    own + self.set(&field.node.selection_set.node, inside)?
                }
                Selection::InlineFragment(f) => self.set(&f.node.selection_set.node, inside)?,
                Selection::FragmentSpread(s) => {
                    let name = s.node.fragment_name.node.as_str();
                    match self.memo.get(&(name, inside)) {
                        Some(Some(depth)) => *depth,
                        Some(None) => {
                            return Err(Error::ValidationFailed(format!(
                                "the fragment `{name}` spreads itself"
                            )))
                        }
                        None => match self.doc.fragments.get(&s.node.fragment_name.node) {
                            // Validation names the unknown fragment.
                            None => 0,
                            Some(fragment) => {
                                self.memo.insert((name, inside), None);
                                let depth = self.set(&fragment.node.selection_set.node, inside)?;
                                self.memo.insert((name, inside), Some(depth));
                                depth
                            }
                        },
                    }
                }
            };
            deepest = deepest.max(depth);
        }
        Ok(deepest)
    }
}

/// Counts lexical tokens (names, numbers, strings, punctuators), stopping once past `limit`.
pub fn count_tokens(text: &str, limit: usize) -> usize {
    let bytes = text.as_bytes();
    let (mut i, mut count) = (0, 0);
    while i < bytes.len() && count <= limit {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => i += 1,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' => {
                count += 1;
                if bytes[i..].starts_with(b"\"\"\"") {
                    i += 3;
                    while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                        i += if bytes[i..].starts_with(b"\\\"\"\"") {
                            4
                        } else {
                            1
                        };
                    }
                    i += 3;
                } else {
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                    i += 1;
                }
            }
            b'.' if bytes[i..].starts_with(b"...") => {
                count += 1;
                i += 3;
            }
            _ if c == b'_' || c.is_ascii_alphabetic() => {
                count += 1;
                while i < bytes.len() && (bytes[i] == b'_' || bytes[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
            }
            _ if c == b'-' || c.is_ascii_digit() => {
                count += 1;
                i += 1;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'.' | b'+' | b'-'))
                {
                    i += 1;
                }
            }
            _ => {
                count += 1;
                i += text[i..].chars().next().map_or(1, char::len_utf8);
            }
        }
    }
    count
}

/// Gives async-graphql's request errors (validation, depth, complexity) stable codes; errors
/// our resolvers raised carry theirs already.
pub fn response_codes(errors: &mut [async_graphql::ServerError], request_error: bool) {
    for error in errors {
        let has_code = error
            .extensions
            .as_ref()
            .and_then(|e| e.get("code"))
            .is_some_and(|c| matches!(c, async_graphql::Value::String(_)));
        if has_code {
            continue;
        }
        let code = match error.message.as_str() {
            "Query is nested too deep." => "QUERY_TOO_DEEP",
            "Query is too complex." => "QUERY_TOO_COMPLEX",
            _ if request_error => "GRAPHQL_VALIDATION_FAILED",
            _ => "INTERNAL_SERVER_ERROR",
        };
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_tokens_like_the_lexer() {
        assert_eq!(count_tokens("{ a }", 100), 3);
        assert_eq!(
            count_tokens("query Q($x: Int = -1.5e3) { a(x: $x) # c\n }", 100),
            19
        );
        assert_eq!(
            count_tokens(r#"{ a(s: "x\" y", b: """z""") ...F }"#, 100),
            13
        );
        assert_eq!(count_tokens("{ a a a a a a }", 3), 4);
    }

    #[test]
    fn counts_aliases_in_fragments_and_finds_introspection() {
        let c = Config::default();
        let q = "query { x: actors { n: totalCount } ...F } fragment F on Query { y: partners { slug } __schema { types { name } } }";
        let checked = check(&c, q, None).unwrap();
        assert!(checked.introspection);
        let many: String = (0..40)
            .map(|i| format!("a{i}: partners {{ slug }} "))
            .collect();
        let e = check(&c, &format!("{{ {many} }}"), None).unwrap_err();
        assert_eq!(e.code(), "TOO_MANY_ALIASES");
        assert_eq!(
            check(&c, "{ a", None).unwrap_err().code(),
            "GRAPHQL_PARSE_FAILED"
        );
        assert_eq!(
            check(&c, "query A { a } query B { b }", None)
                .unwrap_err()
                .code(),
            "GRAPHQL_VALIDATION_FAILED"
        );
        let m = check(&c, "query A { a } mutation B { b }", Some("B")).unwrap();
        assert_eq!(
            (m.ty, m.name.as_deref()),
            (OperationType::Mutation, Some("B"))
        );
    }

    fn only(text: &str) -> bool {
        crate::graphql::introspection::introspection_only(
            &async_graphql::parser::parse_query(text).unwrap(),
        )
    }

    #[test]
    fn introspection_only_documents_read_nothing_but_the_schema() {
        assert!(only("{ __schema { types { name } } __typename }"));
        assert!(only(
            "query Q { ...F } fragment F on Query { __type(name: \"Actor\") { ...T } } fragment T on __Type { name }"
        ));
        assert!(only("{ ... on Query { __schema { queryType { name } } } }"));
        // A data field anywhere at the root, in any operation or through a fragment.
        assert!(!only(
            "{ __schema { types { name } } actors { totalCount } }"
        ));
        assert!(!only(
            "query A { __schema { types { name } } } query B { viewer { scopes } }"
        ));
        assert!(!only(
            "{ ...F } fragment F on Query { __typename partners { slug } }"
        ));
        assert!(!only("{ ... on Query { viewer { scopes } } }"));
        // Fragments that cannot be followed (unknown, or a cycle) are not trusted.
        assert!(!only("{ ...Missing }"));
        assert!(!only("{ ...A } fragment A on Query { ...A }"));
    }

    #[test]
    fn nested_lists_of_types_are_bounded_in_every_document() {
        let c = Config::default();
        let two = "{ __schema { types { fields { type { fields { name } } } } } }";
        assert!(check(&c, two, None).is_ok());
        let three =
            "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }";
        assert_eq!(check(&c, three, None).unwrap_err().code(), "QUERY_TOO_DEEP");
        // Counted through fragments, and beside data fields too.
        let spread = "{ viewer { scopes } __type(name: \"Query\") { ...L } } fragment L on __Type { interfaces { possibleTypes { inputFields { name } } } }";
        assert_eq!(
            check(&c, spread, None).unwrap_err().code(),
            "QUERY_TOO_DEEP"
        );
        // A fragment counts where it is spread: nothing outside `__schema`/`__type`, its lists
        // inside.
        let shared = "{ ...L __schema { types { fields { type { ...L } } } } } fragment L on __Type { fields { type { fields { name } } } }";
        assert_eq!(
            check(&c, shared, None).unwrap_err().code(),
            "QUERY_TOO_DEEP"
        );
        let cycle = "{ __schema { types { ...A } } } fragment A on __Type { ofType { ...A } }";
        assert_eq!(
            check(&c, cycle, None).unwrap_err().code(),
            "GRAPHQL_VALIDATION_FAILED"
        );
    }
}
