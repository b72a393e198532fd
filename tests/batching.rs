//! Resolvers batch their reads: the SQL statements a page costs do not grow with its size.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::records::*;
use common::TestApp;
use passerelle::domain::Visibility;
use passerelle::storage::writes;
use serde_json::json;

const DASHBOARD: &str = r#"
query($first: Int!) {
  actions(first: $first, filter: { partners: ["bulk"] }) {
    nodes {
      title places { name } themes
      outcomes { indicator value unit }
      partners { role actor { name } }
      partnerships { name members { role actor { name } } }
      parent { title }
      owner { name }
    }
    pageInfo { hasNextPage }
  }
}"#;

/// One member actor is private: anonymous callers may not see it, and asking for it once per
/// request must be enough.
async fn statements_per_page_do_not_grow_with_page_size(app: TestApp) {
    app.app
        .store
        .run(|c| {
            let w = writer("bulk");
            writes::upsert_partner(c, &partner("bulk"), "t")?;
            for a in 0..5 {
                writes::upsert_actor(
                    c,
                    &w,
                    &actor(
                        &format!("bulk-actor-{a}"),
                        "bulk",
                        if a == 0 {
                            Visibility::Private
                        } else {
                            Visibility::Public
                        },
                    ),
                    "t",
                )?;
            }
            writes::upsert_action(
                c,
                &w,
                &action("bulk-programme", "bulk", Visibility::Public),
                "t",
            )?;
            for i in 0..120 {
                let mut a = action(&format!("bulk-action-{i:03}"), "bulk", Visibility::Public);
                a.parent_action_id = Some("bulk-programme".into());
                writes::upsert_action(c, &w, &a, "t")?;
                for o in 0..2 {
                    writes::upsert_outcome(
                        c,
                        &w,
                        &outcome(
                            &format!("bulk-outcome-{i}-{o}"),
                            "bulk",
                            &a.id,
                            Visibility::Public,
                        ),
                        "t",
                    )?;
                }
                let members = [
                    format!("bulk-actor-{}", i % 5),
                    format!("bulk-actor-{}", (i + 1) % 5),
                ];
                let members: Vec<&str> = members.iter().map(String::as_str).collect();
                writes::upsert_partnership(
                    c,
                    &w,
                    &partnership(
                        &format!("bulk-ps-{i}"),
                        "bulk",
                        Some(&a.id),
                        &members,
                        Visibility::Public,
                    ),
                    "t",
                )?;
            }
            Ok(())
        })
        .await
        .map_err(|e| e.message())
        .unwrap();

    let mut costs = Vec::new();
    for first in [10, 100] {
        let before = app.statements();
        let data = app.data(DASHBOARD, json!({ "first": first })).await;
        costs.push(app.statements() - before);
        let nodes = data["actions"]["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), first);
        assert!(nodes
            .iter()
            .all(|n| n["outcomes"].as_array().unwrap().len() == 2
                || n["title"] == "Action bulk-programme"));
    }
    assert_eq!(
        costs[0], costs[1],
        "statements for 10 and 100 actions: {costs:?}"
    );
    assert!(
        costs[0] <= 15,
        "a dashboard page should cost a handful of statements, not {}",
        costs[0]
    );
}

/// Themes, places and disaggregations cost a statement each per page: a document that never
/// names them does not pay for them, and one that names them anywhere (a fragment too) gets
/// them whole.
async fn satellite_rows_are_read_only_when_the_document_names_them(app: TestApp) {
    app.app
        .store
        .run(|c| {
            let w = writer("bulk");
            writes::upsert_partner(c, &partner("bulk"), "t")?;
            for i in 0..3 {
                let mut a = action(&format!("bulk-action-{i}"), "bulk", Visibility::Public);
                a.summary = Some("Summed up".into());
                a.schedule = Some("Weekly".into());
                a.website = Some("https://example.org/bulk".into());
                writes::upsert_action(c, &w, &a, "t")?;
                // Secondary values unlike the placeholders of a brief read (no statement,
                // QUALITATIVE, PRIVATE; an actor of kind OTHER with no acronym or territory).
                let mut o = outcome(
                    &format!("bulk-outcome-{i}"),
                    "bulk",
                    &a.id,
                    Visibility::Public,
                );
                o.statement = Some("Stated".into());
                writes::upsert_outcome(c, &w, &o, "t")?;
                let mut member = actor(&format!("bulk-actor-{i}"), "bulk", Visibility::Public);
                member.acronym = Some("ACR".into());
                member.territory_code = Some("38185".into());
                writes::upsert_actor(c, &w, &member, "t")?;
                let mut p = partnership(
                    &format!("bulk-partnership-{i}"),
                    "bulk",
                    Some(&a.id),
                    &[&member.id],
                    Visibility::Public,
                );
                p.description = Some("Described".into());
                writes::upsert_partnership(c, &w, &p, "t")?;
            }
            Ok(())
        })
        .await
        .map_err(|e| e.message())
        .unwrap();
    // Over HTTP, as the GraphQL endpoint decides what a document names.
    let cost = |query: &'static str| {
        let app = &app;
        async move {
            let before = app.statements();
            let (status, _, body) = app
                .graphql_with_test_viewer(
                    "partner=bulk;scopes=read,read:sensitive",
                    query,
                    json!({}),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            (app.statements() - before, body)
        }
    };
    let (bare, body) = cost("{ actions { nodes { title outcomes { indicator } } } }").await;
    assert_eq!(
        body["data"]["actions"]["nodes"].as_array().unwrap().len(),
        3,
        "{body}"
    );
    let (full, body) = cost(
        "{ actions { nodes { title ...Where outcomes { indicator disaggregations { category } } } } }
         fragment Where on Action { themes places { name } }",
    )
    .await;
    assert_eq!(
        full,
        bare + 3,
        "themes, places and disaggregations: one statement each"
    );
    for node in body["data"]["actions"]["nodes"].as_array().unwrap() {
        assert_eq!(node["themes"], json!(["testing"]), "{body}");
        assert!(!node["places"].as_array().unwrap().is_empty(), "{body}");
        let cells = &node["outcomes"][0]["disaggregations"];
        assert!(!cells.as_array().unwrap().is_empty(), "{body}");
    }
    // Each is read on its own: naming only themes does not read places or disaggregations.
    let (themes, body) = cost("{ actions { nodes { themes outcomes { indicator } } } }").await;
    assert_eq!(themes, bare + 1);
    assert_eq!(
        body["data"]["actions"]["nodes"][0]["themes"],
        json!(["testing"])
    );
    // Outcomes' provenance columns are selected only when the document names `provenance`
    // (no statement more): named in a fragment, it comes whole.
    let (named, body) = cost(
        "{ actions { nodes { outcomes { indicator ...From } } } }
         fragment From on Outcome { provenance { source importedAt } }",
    )
    .await;
    assert_eq!(named, bare);
    for node in body["data"]["actions"]["nodes"].as_array().unwrap() {
        let provenance = &node["outcomes"][0]["provenance"];
        assert_eq!(provenance["source"], "test", "{body}");
        assert_ne!(provenance["importedAt"], "", "{body}");
    }
    // So are partnerships' and their members' actors', read with the page in one join.
    let (named, body) = cost(
        "{ actions { nodes { partnerships { provenance { source } members { actor { provenance { source importedAt } } } } } } }",
    )
    .await;
    assert_eq!(
        named, bare,
        "the page, then partnerships with actors in one join"
    );
    let mut actors = 0;
    for node in body["data"]["actions"]["nodes"].as_array().unwrap() {
        for p in node["partnerships"].as_array().unwrap() {
            assert_eq!(p["provenance"]["source"], "test", "{body}");
            for m in p["members"].as_array().unwrap() {
                assert_eq!(m["actor"]["provenance"]["source"], "test", "{body}");
                assert_ne!(m["actor"]["provenance"]["importedAt"], "", "{body}");
                actors += 1;
            }
        }
    }
    assert_eq!(actors, 3, "{body}");
    // Outcomes' and the members' actors' secondary columns are read only when the document
    // names one of their fields, at no statement more: named, they come whole.
    let (core, body) = cost(
        "{ actions { nodes { outcomes { indicator value unit } partners { actor { name } } } } }",
    )
    .await;
    let nodes = body["data"]["actions"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{body}");
    for node in nodes {
        assert_eq!(node["outcomes"][0]["value"], json!(42.0), "{body}");
        assert_eq!(node["outcomes"][0]["unit"], "people", "{body}");
        assert!(node["partners"][0]["actor"]["name"].is_string(), "{body}");
    }
    let (named, body) = cost(
        "{ actions { nodes { outcomes { indicator ...Said } partners { actor { name kind acronym territoryCode visibility } } } } }
         fragment Said on Outcome { measure statement periodStart periodEnd visibility }",
    )
    .await;
    assert_eq!(named, core, "the same statements, with more columns");
    let nodes = body["data"]["actions"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{body}");
    for node in nodes {
        let o = &node["outcomes"][0];
        assert_eq!(o["measure"], "ACTUAL", "{body}");
        assert_eq!(o["statement"], "Stated", "{body}");
        assert_eq!(o["periodStart"], "2020", "{body}");
        assert_eq!(o["periodEnd"], "2020", "{body}");
        assert_eq!(o["visibility"], "PUBLIC", "{body}");
        let a = &node["partners"][0]["actor"];
        assert_eq!(a["kind"], "ASSOCIATION", "{body}");
        assert_eq!(a["acronym"], "ACR", "{body}");
        assert_eq!(a["territoryCode"], "38185", "{body}");
        assert_eq!(a["visibility"], "PUBLIC", "{body}");
    }
    // So are the page's actions' summary, schedule, website and provenance, and the
    // partnerships' description: a dashboard reads none of them; named, they come whole.
    let (core, body) =
        cost("{ actions { nodes { title status startsOn partnerships { name members { actor { name } } } } } }").await;
    let nodes = body["data"]["actions"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{body}");
    for node in nodes {
        assert!(node["title"]
            .as_str()
            .unwrap()
            .starts_with("Action bulk-action-"));
        assert_eq!(node["status"], "ACTIVE", "{body}");
        assert_eq!(node["startsOn"], "2020-01", "{body}");
        assert!(node["partnerships"][0]["name"].is_string(), "{body}");
    }
    let (named, body) = cost(
        "{ actions { nodes { title ...More partnerships { name description members { actor { name } } } } } }
         fragment More on Action { summary schedule website }",
    )
    .await;
    assert_eq!(named, core, "the same statements, with more columns");
    let nodes = body["data"]["actions"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{body}");
    for node in nodes {
        assert_eq!(node["summary"], "Summed up", "{body}");
        assert_eq!(node["schedule"], "Weekly", "{body}");
        assert_eq!(node["website"], "https://example.org/bulk", "{body}");
        assert_eq!(
            node["partnerships"][0]["description"], "Described",
            "{body}"
        );
    }
    let (named, body) =
        cost("{ actions { nodes { title provenance { source importedAt } } } }").await;
    assert_eq!(named, core - 1, "no partnerships read");
    for node in body["data"]["actions"]["nodes"].as_array().unwrap() {
        assert_eq!(node["provenance"]["source"], "test", "{body}");
        assert_ne!(node["provenance"]["importedAt"], "", "{body}");
    }
}

backend_tests!(
    statements_per_page_do_not_grow_with_page_size,
    satellite_rows_are_read_only_when_the_document_names_them
);
