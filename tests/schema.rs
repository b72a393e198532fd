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
