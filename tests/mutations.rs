//! Push mutations, run in-process as a partner (the token seam), on both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{error_code, partner, TestApp};
use serde_json::{json, Value};

const UPSERT_ACTION: &str = r#"
mutation Put($input: ActionInput!) {
  upsertAction(input: $input) {
    effect
    action { localId title themes visibility owner { slug } provenance { source sourceRef importedAt updatedAt } }
  }
}"#;

const RETIRE_ACTION: &str = r#"
mutation Retire($id: String!) { retireAction(id: $id) { localId effect } }"#;

fn workshop(id: &str, title: &str) -> Value {
    json!({
        "id": id,
        "kind": "WORKSHOP",
        "title": title,
        "startsOn": "2025-03",
        "themes": ["access-to-rights"],
        "places": [{ "name": "Nîmes", "level": "COMMUNE", "inseeCode": "30189" }],
        "sourceRef": "app-1234"
    })
}

async fn count_actions(app: &TestApp, viewer: &passerelle::domain::Viewer) -> i64 {
    let body = app
        .execute_as(viewer, "{ actions { totalCount } }", json!({}))
        .await;
    body["data"]["actions"]["totalCount"].as_i64().unwrap()
}

async fn a_retried_create_never_duplicates(app: TestApp) {
    app.seed().await;
    let caravan = partner("caravan", &["read", "write"]);
    let before = count_actions(&app, &caravan).await;
    let input = workshop("caravan-mobile-5f0c", "Atelier numérique");
    let first = app
        .execute_as(&caravan, UPSERT_ACTION, json!({ "input": input }))
        .await;
    assert!(first.get("errors").is_none(), "{first:#}");
    let payload = &first["data"]["upsertAction"];
    assert_eq!(payload["effect"], "CREATED");
    assert_eq!(payload["action"]["owner"]["slug"], "caravan");
    assert_eq!(payload["action"]["visibility"], "PRIVATE");
    assert_eq!(payload["action"]["provenance"]["source"], "push:caravan");
    assert_eq!(payload["action"]["provenance"]["sourceRef"], "app-1234");
    let imported_at = payload["action"]["provenance"]["importedAt"].clone();

    // The network drops the answer; the client retries the same write twice.
    for _ in 0..2 {
        let again = app
            .execute_as(&caravan, UPSERT_ACTION, json!({ "input": input }))
            .await;
        assert_eq!(
            again["data"]["upsertAction"]["effect"], "UNCHANGED",
            "{again:#}"
        );
        assert_eq!(
            again["data"]["upsertAction"]["action"]["provenance"]["importedAt"],
            imported_at
        );
    }
    assert_eq!(count_actions(&app, &caravan).await, before + 1);

    // An update keeps the first import time.
    let updated = app
        .execute_as(
            &caravan,
            UPSERT_ACTION,
            json!({ "input": workshop("caravan-mobile-5f0c", "Atelier numérique (2e session)") }),
        )
        .await;
    let payload = &updated["data"]["upsertAction"];
    assert_eq!(payload["effect"], "UPDATED", "{updated:#}");
    assert_eq!(payload["action"]["title"], "Atelier numérique (2e session)");
    assert_eq!(payload["action"]["provenance"]["importedAt"], imported_at);
    assert_eq!(count_actions(&app, &caravan).await, before + 1);

    // Private: other callers do not see it.
    let anvita = partner("anvita", &["read", "write"]);
    let seen = app
        .execute_as(
            &anvita,
            r#"{ actions(filter: { text: "Atelier numérique" }) { totalCount } }"#,
            json!({}),
        )
        .await;
    assert_eq!(seen["data"]["actions"]["totalCount"], 0, "{seen:#}");
}

async fn retiring_hides_the_record_and_is_idempotent(app: TestApp) {
    app.seed().await;
    let caravan = partner("caravan", &["read", "write"]);
    let created = app
        .execute_as(
            &caravan,
            UPSERT_ACTION,
            json!({ "input": workshop("caravan-to-retire", "Atelier éphémère") }),
        )
        .await;
    assert_eq!(created["data"]["upsertAction"]["effect"], "CREATED");
    let before = count_actions(&app, &caravan).await;
    let retired = app
        .execute_as(
            &caravan,
            RETIRE_ACTION,
            json!({ "id": "caravan-to-retire" }),
        )
        .await;
    assert_eq!(
        retired["data"]["retireAction"]["effect"], "RETIRED",
        "{retired:#}"
    );
    assert_eq!(count_actions(&app, &caravan).await, before - 1);
    let again = app
        .execute_as(
            &caravan,
            RETIRE_ACTION,
            json!({ "id": "caravan-to-retire" }),
        )
        .await;
    assert_eq!(again["data"]["retireAction"]["effect"], "UNCHANGED");
    // Writing it again brings it back.
    let back = app
        .execute_as(
            &caravan,
            UPSERT_ACTION,
            json!({ "input": workshop("caravan-to-retire", "Atelier éphémère") }),
        )
        .await;
    assert_eq!(
        back["data"]["upsertAction"]["effect"], "UPDATED",
        "{back:#}"
    );
    assert_eq!(count_actions(&app, &caravan).await, before);
    // Unknown ids of one's own are NOT_FOUND. Another partner's id is refused whether it
    // exists or not, with the same answer: a write cannot tell a hidden record from a missing one.
    let missing = app
        .execute_as(
            &caravan,
            RETIRE_ACTION,
            json!({ "id": "caravan-no-such-action" }),
        )
        .await;
    assert_eq!(error_code(&missing), "NOT_FOUND", "{missing:#}");
    let anvita = partner("anvita", &["write"]);
    let theirs = app
        .execute_as(&anvita, RETIRE_ACTION, json!({ "id": "caravan-to-retire" }))
        .await;
    assert_eq!(error_code(&theirs), "BAD_USER_INPUT", "{theirs:#}");
    let nobodys = app
        .execute_as(
            &anvita,
            RETIRE_ACTION,
            json!({ "id": "caravan-never-written" }),
        )
        .await;
    assert_eq!(theirs["errors"], nobodys["errors"]);
}

async fn writes_need_a_partner_and_the_write_scope(app: TestApp) {
    app.seed().await;
    let input = json!({ "input": workshop("caravan-w1", "Atelier") });
    // Over HTTP, today, every caller is anonymous.
    let anonymous = app.graphql(UPSERT_ACTION, input.clone()).await;
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED", "{anonymous:#}");
    let reader = partner("caravan", &["read"]);
    let body = app.execute_as(&reader, UPSERT_ACTION, input.clone()).await;
    assert_eq!(error_code(&body), "FORBIDDEN", "{body:#}");
    assert!(body["data"].is_null() || body["data"]["upsertAction"].is_null());
    // Another partner's id cannot be taken over.
    let anvita = partner("anvita", &["write"]);
    let taken = app
        .execute_as(
            &anvita,
            UPSERT_ACTION,
            json!({ "input": workshop("caravan-2020-experiment", "Détournée") }),
        )
        .await;
    assert_eq!(error_code(&taken), "BAD_USER_INPUT", "{taken:#}");
    let untaken = app
        .execute_as(
            &anvita,
            UPSERT_ACTION,
            json!({ "input": workshop("caravan-never-written", "Détournée") }),
        )
        .await;
    assert_eq!(taken["errors"], untaken["errors"], "{untaken:#}");
    let title = app
        .data(
            r#"{ actions(filter: { partners: ["caravan"], text: "Détournée" }) { totalCount } }"#,
            json!({}),
        )
        .await;
    assert_eq!(title["actions"]["totalCount"], 0);
}

async fn invalid_input_is_reported_field_by_field_and_nothing_is_written(app: TestApp) {
    app.seed().await;
    let caravan = partner("caravan", &["read", "write"]);
    let before = count_actions(&app, &caravan).await;
    let bad = json!({
        "id": "bad id!",
        "kind": "WORKSHOP",
        "title": " ",
        "startsOn": "2025-05",
        "endsOn": "2025-01",
        "themes": ["Not A Slug"],
        "places": [{ "name": "", "level": "COMMUNE", "inseeCode": "999999" }],
        "website": "ftp://example.org"
    });
    let body = app
        .execute_as(&caravan, UPSERT_ACTION, json!({ "input": bad }))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body:#}");
    let mut fields: Vec<String> = body["errors"][0]["extensions"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_owned())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "endsOn",
            "id",
            "places[0].inseeCode",
            "places[0].name",
            "themes[0]",
            "title",
            "website"
        ]
    );
    // References are checked against what the writer may see.
    let orphan = app
        .execute_as(
            &caravan,
            r#"mutation($input: OutcomeInput!) { upsertOutcome(input: $input) { effect } }"#,
            json!({ "input": {
                "id": "caravan-o1", "actionId": "no-such-action", "indicator": "people reached",
                "measure": "ACTUAL", "value": 3.0
            }}),
        )
        .await;
    assert_eq!(error_code(&orphan), "BAD_USER_INPUT", "{orphan:#}");
    assert_eq!(
        orphan["errors"][0]["extensions"]["fields"][0]["field"],
        "actionId"
    );
    assert_eq!(count_actions(&app, &caravan).await, before);
}

async fn every_record_type_can_be_pushed_and_retired(app: TestApp) {
    app.seed().await;
    let caravan = partner("caravan", &["read", "write"]);
    let steps = [
        (
            r#"mutation($input: ActorInput!) { upsertActor(input: $input) { effect actor { name } } }"#,
            json!({ "id": "caravan-asso-1", "kind": "ASSOCIATION", "name": "Asso du quartier", "visibility": "PUBLIC" }),
            "upsertActor",
        ),
        (
            UPSERT_ACTION,
            workshop("caravan-act-1", "Permanence"),
            "upsertAction",
        ),
        (
            r#"mutation($input: OutcomeInput!) { upsertOutcome(input: $input) { effect outcome { value disaggregations { dimension category value } } } }"#,
            json!({ "id": "caravan-out-1", "actionId": "caravan-act-1", "indicator": "people reached", "measure": "ACTUAL",
                    "value": 12.0, "disaggregations": [{ "dimension": "age", "category": "18-25", "value": 5.0 }] }),
            "upsertOutcome",
        ),
        (
            r#"mutation($input: PartnershipInput!) { upsertPartnership(input: $input) { effect partnership { members { role actor { name } } } } }"#,
            json!({ "id": "caravan-pship-1", "actionId": "caravan-act-1", "name": "Permanence partagée",
                    "members": [{ "actorId": "caravan-asso-1", "role": "IMPLEMENTER" }] }),
            "upsertPartnership",
        ),
    ];
    for (query, input, field) in &steps {
        let body = app
            .execute_as(&caravan, query, json!({ "input": input }))
            .await;
        assert_eq!(body["data"][field]["effect"], "CREATED", "{body:#}");
        let again = app
            .execute_as(&caravan, query, json!({ "input": input }))
            .await;
        assert_eq!(again["data"][field]["effect"], "UNCHANGED", "{again:#}");
    }
    for (kind, id) in [
        ("Partnership", "caravan-pship-1"),
        ("Outcome", "caravan-out-1"),
        ("Action", "caravan-act-1"),
        ("Actor", "caravan-asso-1"),
    ] {
        let body = app
            .execute_as(
                &caravan,
                &format!("mutation {{ retire{kind}(id: \"{id}\") {{ effect }} }}"),
                json!({}),
            )
            .await;
        assert_eq!(
            body["data"][format!("retire{kind}")]["effect"],
            "RETIRED",
            "{body:#}"
        );
    }
    let left = app
        .execute_as(
            &caravan,
            r#"{ actors(filter: { text: "Asso du quartier" }) { totalCount } outcomes(filter: { text: "people reached" }) { totalCount } }"#,
            json!({}),
        )
        .await;
    assert_eq!(left["data"]["actors"]["totalCount"], 0, "{left:#}");
}

/// Writes racing each other all land: distinct records each once, and a record written by
/// several at once created by one and found unchanged by the others. On SQLite, a write
/// transaction that read before another one committed must not fail for it.
async fn concurrent_writes_all_land(app: TestApp) {
    app.seed().await;
    let caravan = partner("caravan", &["read", "write"]);
    let before = count_actions(&app, &caravan).await;
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..24 {
        // Half distinct ids, half the same one.
        let id = if i % 2 == 0 {
            format!("caravan-race-{i}")
        } else {
            "caravan-race-same".to_owned()
        };
        let (app, caravan) = (app.app.clone(), caravan.clone());
        writes.spawn(async move {
            let context = passerelle::graphql::RequestContext::new(
                caravan,
                app.store.clone(),
                app.page_limits(),
            );
            let request = async_graphql::Request::new(UPSERT_ACTION)
                .variables(async_graphql::Variables::from_json(
                    json!({ "input": workshop(&id, "Atelier en course") }),
                ))
                .data(context);
            serde_json::to_value(app.schema.execute(request).await).unwrap()
        });
    }
    let mut effects = Vec::new();
    while let Some(done) = writes.join_next().await {
        let body = done.unwrap();
        assert!(body.get("errors").is_none(), "{body:#}");
        effects.push(
            body["data"]["upsertAction"]["effect"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let created = effects.iter().filter(|e| *e == "CREATED").count();
    assert_eq!(created, 13, "{effects:?}");
    assert_eq!(count_actions(&app, &caravan).await, before + 13);
}

backend_tests!(
    a_retried_create_never_duplicates,
    retiring_hides_the_record_and_is_idempotent,
    writes_need_a_partner_and_the_write_scope,
    invalid_input_is_reported_field_by_field_and_nothing_is_written,
    every_record_type_can_be_pushed_and_retired,
    concurrent_writes_all_land,
);
