//! The checked-in `schema.graphql` is the schema the code generates.

#[test]
fn checked_in_schema_matches_the_generated_sdl() {
    let generated = passerelle::graphql::sdl();
    let checked_in =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
            .unwrap_or_default();
    assert!(
        generated == checked_in,
        "schema.graphql is out of date: run `cargo run -- schema > schema.graphql` and review the diff"
    );
}

/// Every field of `Action`, `Outcome`, `Actor` and `Partnership` either reads only the core
/// columns that reads without `Detail::secondary` select, or is listed in `SECONDARY_FIELDS`,
/// which widens the read when a document names it: a new field that reads a secondary column
/// must be listed there, or its answer would be a placeholder.
#[test]
fn every_field_of_a_brief_record_is_core_or_widens_the_read() {
    use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};
    use passerelle::storage::queries::{Detail, SECONDARY_FIELDS};

    // The fields that need no secondary column: ids, the core values, relations through
    // loaders, and what the provenance and disaggregation flags read.
    let core: &[(&str, &[&str])] = &[
        (
            "Action",
            &[
                "id",
                "localId",
                "title",
                "status",
                "startsOn",
                "endsOn",
                "themes",
                "places",
                "subActions",
                "outcomes",
                "partnerships",
                "partners",
                "owner",
                "provenance",
            ],
        ),
        (
            "Partnership",
            &[
                "id",
                "localId",
                "name",
                "startsOn",
                "endsOn",
                "members",
                "action",
                "owner",
                "provenance",
            ],
        ),
        (
            "Outcome",
            &[
                "id",
                "localId",
                "indicator",
                "value",
                "unit",
                "disaggregations",
                "action",
                "owner",
                "provenance",
            ],
        ),
        (
            "Actor",
            &[
                "id",
                "localId",
                "name",
                "partnerships",
                "actions",
                "owner",
                "provenance",
            ],
        ),
    ];
    let document = async_graphql::parser::parse_schema(passerelle::graphql::sdl()).unwrap();
    for (type_name, core_fields) in core {
        let fields: Vec<String> = document
            .definitions
            .iter()
            .find_map(|d| match d {
                TypeSystemDefinition::Type(t) if t.node.name.node == *type_name => {
                    match &t.node.kind {
                        TypeKind::Object(o) => Some(
                            o.fields
                                .iter()
                                .map(|f| f.node.name.node.to_string())
                                .collect(),
                        ),
                        _ => None,
                    }
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no object type {type_name} in the schema"));
        assert!(fields.len() > core_fields.len(), "{type_name}: {fields:?}");
        for field in &fields {
            let secondary = SECONDARY_FIELDS.contains(&field.as_str());
            assert!(
                core_fields.contains(&field.as_str()) != secondary,
                "{type_name}.{field} must be either core or in SECONDARY_FIELDS, not both"
            );
            let mut detail = Detail::NONE;
            detail.note(field);
            assert_eq!(detail.secondary, secondary, "{type_name}.{field}");
        }
    }
}
