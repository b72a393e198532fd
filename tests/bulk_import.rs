//! The import's chunked write path (issue 37, point 6) against the one it replaced, one
//! `upsert_*` per row: on two databases seeded alike, the same files give the same report or
//! the same errors, and leave the same rows, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::TestApp;
use diesel::prelude::*;
use passerelle::domain::{RowFilter, Viewer};
use passerelle::error::{Error, FieldError};
use passerelle::ingest::format::DomainRecord;
use passerelle::ingest::import::{self, Format, ImportReport, Row};
use passerelle::storage::schema::*;
use passerelle::storage::{writes, AnyConnection};

const NOW: &str = "2026-01-01T00:00:00Z";

fn writer() -> RowFilter {
    Viewer {
        partner: Some("caravan".into()),
        scopes: ["read".to_owned(), "write".to_owned()].into(),
        ..Viewer::anonymous()
    }
    .row_filter()
}

/// The write path before chunks: one `upsert_*` per row, in one transaction.
fn one_by_one(c: &mut AnyConnection, rows: &[Row]) -> Result<ImportReport, Error> {
    let writer = writer();
    passerelle::storage::write_transaction(c, |c| {
        let mut report = ImportReport::default();
        let mut errors = Vec::new();
        for row in rows {
            let written = match &row.record {
                DomainRecord::Actor(r) => writes::upsert_actor(c, &writer, r, NOW),
                DomainRecord::Action(r) => writes::upsert_action(c, &writer, r, NOW),
                DomainRecord::Outcome(r) => writes::upsert_outcome(c, &writer, r, NOW),
                DomainRecord::Partnership(r) => writes::upsert_partnership(c, &writer, r, NOW),
            };
            let at = |f: FieldError| {
                let field = if f.field.is_empty() {
                    format!("line {}", row.line)
                } else {
                    format!("line {}.{}", row.line, f.field)
                };
                FieldError::new(field, f.message)
            };
            match written {
                Ok(effect) => {
                    report.rows += 1;
                    match effect {
                        writes::WriteEffect::Created => report.created += 1,
                        writes::WriteEffect::Updated => report.updated += 1,
                        writes::WriteEffect::Unchanged => report.unchanged += 1,
                    }
                    *report
                        .by_type
                        .entry(row.record.kind())
                        .or_default()
                        .entry(effect)
                        .or_default() += 1;
                }
                Err(Error::Invalid(fields)) => errors.extend(fields.into_iter().map(at)),
                Err(Error::Forbidden(m)) => errors.push(at(FieldError::new("id", m))),
                Err(other) => return Err(other),
            }
        }
        if errors.is_empty() {
            Ok(report)
        } else {
            errors.sort_by_key(|e| {
                e.field
                    .trim_start_matches("line ")
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse::<usize>()
                    .unwrap_or(0)
            });
            Err(Error::Invalid(errors))
        }
    })
}

/// The outcome of an import, comparable across the two paths.
fn outcome(result: Result<ImportReport, Error>) -> String {
    match result {
        Ok(report) => format!("{report:?}"),
        Err(Error::Invalid(fields)) => format!("invalid: {fields:?}"),
        Err(e) => panic!("unexpected {}: {}", e.code(), e.message()),
    }
}

/// Every row the test's imports may write (ids `caravan-bk-…`: the seeds' own rows differ in their
/// timestamps), in a stable order.
type Dump = BTreeMap<&'static str, Vec<String>>;

fn dump(c: &mut AnyConnection) -> Dump {
    let mut d = Dump::new();
    macro_rules! main_rows {
        ($name:literal, $t:ident) => {
            d.insert(
                $name,
                $t::table
                    .select((
                        $t::id,
                        $t::owner_partner_id,
                        $t::content_hash,
                        $t::imported_at,
                        $t::updated_at,
                        $t::retired_at,
                    ))
                    .filter($t::id.like("caravan-bk-%"))
                    .order($t::id)
                    .load::<(String, String, String, String, String, Option<String>)>(c)
                    .unwrap()
                    .into_iter()
                    .map(|r| format!("{r:?}"))
                    .collect(),
            );
        };
    }
    main_rows!("actors", actors);
    main_rows!("actions", actions);
    main_rows!("outcomes", outcomes);
    main_rows!("partnerships", partnerships);
    d.insert(
        "action_themes",
        action_themes::table
            .filter(action_themes::action_id.like("caravan-bk-%"))
            .order((action_themes::action_id, action_themes::theme))
            .load::<(String, String)>(c)
            .unwrap()
            .into_iter()
            .map(|r| format!("{r:?}"))
            .collect(),
    );
    d.insert(
        "action_places",
        action_places::table
            .filter(action_places::action_id.like("caravan-bk-%"))
            .order((action_places::action_id, action_places::position))
            .load::<(String, i32, String, String, Option<String>)>(c)
            .unwrap()
            .into_iter()
            .map(|r| format!("{r:?}"))
            .collect(),
    );
    d.insert(
        "outcome_disaggregations",
        outcome_disaggregations::table
            .filter(outcome_disaggregations::outcome_id.like("caravan-bk-%"))
            .order((
                outcome_disaggregations::outcome_id,
                outcome_disaggregations::position,
            ))
            .load::<(String, i32, String, String, Option<f64>)>(c)
            .unwrap()
            .into_iter()
            .map(|r| format!("{r:?}"))
            .collect(),
    );
    d.insert(
        "partnership_members",
        partnership_members::table
            .filter(partnership_members::partnership_id.like("caravan-bk-%"))
            .order((
                partnership_members::partnership_id,
                partnership_members::position,
            ))
            .load::<(String, i32, String, String)>(c)
            .unwrap()
            .into_iter()
            .map(|r| format!("{r:?}"))
            .collect(),
    );
    d
}

/// Imports `file` into `chunked` through the import's path and into `reference` one row at a
/// time; both must agree, in what they answer and in what they leave.
async fn both(chunked: &TestApp, reference: &TestApp, file: &str) -> String {
    let rows = import::parse(
        Format::Ndjson,
        file.as_bytes(),
        "caravan",
        "bulk-test",
        |_| {},
    )
    .map_err(|e| e.message())
    .unwrap();
    let r = rows.clone();
    let fast = chunked
        .app
        .store
        .run(move |c| Ok(outcome(import::write_all(c, &writer(), &r, NOW, |_| {}))))
        .await
        .unwrap();
    let slow = reference
        .app
        .store
        .run(move |c| Ok(outcome(one_by_one(c, &rows))))
        .await
        .unwrap();
    assert_eq!(fast, slow);
    let a = chunked.app.store.run(|c| Ok(dump(c))).await.unwrap();
    let b = reference.app.store.run(|c| Ok(dump(c))).await.unwrap();
    assert_eq!(a, b);
    fast
}

fn rows_in(d: &Dump) -> usize {
    d.values().map(Vec::len).sum()
}

/// An id of another partner's record of `kind`.
async fn foreign(app: &TestApp, kind: &'static str) -> String {
    app.app
        .store
        .run(move |c| {
            Ok(match kind {
                "actor" => actors::table
                    .filter(actors::owner_partner_id.ne("caravan"))
                    .select(actors::id)
                    .order(actors::id)
                    .first::<String>(c)
                    .unwrap(),
                _ => actions::table
                    .filter(actions::owner_partner_id.ne("caravan"))
                    .select(actions::id)
                    .order(actions::id)
                    .first::<String>(c)
                    .unwrap(),
            })
        })
        .await
        .unwrap()
}

/// 450 actors in chains, 450 actions (themes, places, parents in the file and out of it), 900
/// outcomes, 150 partnerships with members: more than a chunk of each. `v` varies the names.
fn big_file(v: &str, their_actor: &str) -> String {
    let mut lines = Vec::new();
    for i in 0..450 {
        let parent = if i % 50 == 0 {
            String::new()
        } else {
            format!(r#","parent_actor_id":"caravan-bk-actor-{}""#, i - 1)
        };
        lines.push(format!(
            r#"{{"type":"actor","id":"caravan-bk-actor-{i}","kind":"ASSOCIATION","name":"Actor {i}{v}","visibility":"{}"{parent}}}"#,
            if i % 3 == 0 { "PRIVATE" } else { "PUBLIC" }
        ));
    }
    for i in 0..450 {
        let parent = if i % 10 == 0 {
            String::new()
        } else {
            format!(r#","parent_action_id":"caravan-bk-act-{}""#, i - i % 10)
        };
        lines.push(format!(
            r#"{{"type":"action","id":"caravan-bk-act-{i}","kind":"WORKSHOP","title":"Action {i}{v}","themes":["housing","access-to-rights","housing"],"places":[{{"name":"Grenoble","level":"COMMUNE","insee_code":"38185"}},{{"name":"Isère","level":"DEPARTMENT"}}],"visibility":"PUBLIC"{parent}}}"#
        ));
    }
    for i in 0..900 {
        lines.push(format!(
            r#"{{"type":"outcome","id":"caravan-bk-out-{i}","action_id":"caravan-bk-act-{}","indicator":"personnes{v}","measure":"ACTUAL","value":{i},"disaggregations":[{{"dimension":"age","category":"18-25","value":1}}],"visibility":"PUBLIC"}}"#,
            i / 2
        ));
    }
    for i in 0..150 {
        lines.push(format!(
            r#"{{"type":"partnership","id":"caravan-bk-ps-{i}","action_id":"caravan-bk-act-{i}","name":"P {i}{v}","members":[{{"actor_id":"caravan-bk-actor-{i}","role":"IMPLEMENTER"}},{{"actor_id":"{their_actor}","role":"FUNDER"}}]}}"#
        ));
    }
    lines.join("\n")
}

async fn chunks_write_what_rows_one_by_one_wrote(app: TestApp) {
    let reference = TestApp::spawn(app.backend).await.unwrap();
    app.seed().await;
    reference.seed().await;
    let their_actor = foreign(&app, "actor").await;
    // A public actor of another partner, which caravan may reference as a member.
    let public_actor = app
        .app
        .store
        .run(|c| {
            Ok(actors::table
                .filter(actors::owner_partner_id.ne("caravan"))
                .filter(actors::visibility.eq("public"))
                .select(actors::id)
                .order(actors::id)
                .first::<String>(c)
                .unwrap())
        })
        .await
        .unwrap();
    // New, then the same again, then partly changed.
    let first = both(&app, &reference, &big_file("", &public_actor)).await;
    assert!(first.contains("created: 1950"), "{first}");
    let written = app.app.store.run(|c| Ok(dump(c))).await.unwrap();
    // Main rows, themes (2 each), places (2 each), disaggregations, members (2 each).
    assert_eq!(rows_in(&written), 1950 + 900 + 900 + 900 + 300);
    let again = both(&app, &reference, &big_file("", &public_actor)).await;
    assert!(again.contains("unchanged: 1950"), "{again}");
    let changed = big_file(" (v2)", &public_actor);
    let changed: String = changed
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i % 2 == 0 {
                l.to_owned()
            } else {
                l.replace(" (v2)", "")
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let third = both(&app, &reference, &changed).await;
    assert!(third.contains("updated: 975"), "{third}");
    // Refused rows among good ones: another partner's id, references that fail. Nothing is
    // written, and both paths report the same problems on the same lines.
    let their_action = foreign(&app, "action").await;
    let mut bad = big_file(" (v3)", &public_actor);
    // (Another partner's id is refused before any row is written, outside the writer's id
    // namespace: tests/import.rs and tests/policy.rs.)
    bad.push_str(&format!(
        "\n{}\n{}\n{}\n{}",
        r#"{"type":"action","id":"caravan-bk-orphan","kind":"WORKSHOP","title":"Orphan","parent_action_id":"caravan-bk-nowhere","visibility":"PUBLIC"}"#,
        format_args!(r#"{{"type":"outcome","id":"caravan-bk-theirs","action_id":"{their_action}","indicator":"x","measure":"ACTUAL","value":1,"visibility":"PUBLIC"}}"#),
        r#"{"type":"partnership","id":"caravan-bk-ps-lost","name":"Lost","members":[{"actor_id":"caravan-bk-ghost","role":"IMPLEMENTER"}]}"#,
        r#"{"type":"actor","id":"caravan-bk-actor-child-of-orphan","kind":"ASSOCIATION","name":"C","parent_actor_id":"caravan-bk-missing","visibility":"PUBLIC"}"#,
    ));
    let refused = both(&app, &reference, &bad).await;
    assert!(refused.starts_with("invalid: "), "{refused}");
    assert_eq!(refused.matches("FieldError").count(), 4, "{refused}");
    let _ = their_actor;
}

backend_tests!(chunks_write_what_rows_one_by_one_wrote);
