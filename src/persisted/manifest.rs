//! The `apollo-persisted-query-manifest` v1 format, as written by
//! `@apollo/generate-persisted-query-manifest` and Apollo iOS / Kotlin:
//! `{"format":"apollo-persisted-query-manifest","version":1,"operations":[{id,name,type,body}]}`.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, FieldError, Result};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub operations: Vec<Operation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub body: String,
}

impl Manifest {
    /// Parses and checks a manifest.
    pub fn parse(text: &str) -> Result<Self> {
        let manifest: Manifest = serde_json::from_str(text).map_err(|e| {
            Error::Invalid(vec![FieldError::new(
                "manifest",
                format!("not an apollo-persisted-query-manifest: {e}"),
            )])
        })?;
        let mut errors = Vec::new();
        if manifest.format != "apollo-persisted-query-manifest" {
            errors.push(FieldError::new(
                "format",
                "must be `apollo-persisted-query-manifest`",
            ));
        }
        if manifest.version != 1 {
            errors.push(FieldError::new("version", "only version 1 is supported"));
        }
        let mut ids = BTreeSet::new();
        for (i, op) in manifest.operations.iter().enumerate() {
            let at = |f: &str| format!("operations[{i}].{f}");
            if op.id.trim().is_empty() || op.id.len() > 200 {
                errors.push(FieldError::new(at("id"), "must be 1 to 200 characters"));
            } else if !ids.insert(op.id.as_str()) {
                errors.push(FieldError::new(at("id"), "appears twice"));
            }
            if !matches!(op.kind.as_str(), "query" | "mutation" | "subscription") {
                errors.push(FieldError::new(
                    at("type"),
                    "must be query, mutation or subscription",
                ));
            }
            if let Err(e) = async_graphql::parser::parse_query(&op.body) {
                errors.push(FieldError::new(at("body"), format!("does not parse: {e}")));
            }
        }
        if errors.is_empty() {
            Ok(manifest)
        } else {
            Err(Error::Invalid(errors))
        }
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::BadRequest(format!("cannot read the manifest {}: {e}", path.display()))
        })?;
        Self::parse(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_apollo_format_and_names_bad_entries() {
        let ok = r#"{"format":"apollo-persisted-query-manifest","version":1,
            "operations":[{"id":"abc","name":"P","type":"query","body":"query P { partners { slug } }"}]}"#;
        assert_eq!(Manifest::parse(ok).unwrap().operations[0].name, "P");
        let bad = r#"{"format":"x","version":2,
            "operations":[{"id":"a","name":"P","type":"query","body":"query {"},
                          {"id":"a","name":"Q","type":"nope","body":"{ partners { slug } }"}]}"#;
        let Err(Error::Invalid(fields)) = Manifest::parse(bad) else {
            panic!("accepted a bad manifest")
        };
        let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            names,
            [
                "format",
                "version",
                "operations[0].body",
                "operations[1].id",
                "operations[1].type"
            ]
        );
    }
}
