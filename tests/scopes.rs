//! Field- and operation-level scopes: sensitive fields need `read:sensitive`, the audit log
//! needs `admin`; and every authenticated request leaves an audit entry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{error_code, Backend, TestApp};
use passerelle::domain::*;
use passerelle::graphql::ids::{encode, Kind};
use serde_json::{json, Value};

async fn outcome_with_cells(app: &TestApp) -> String {
    app.app
        .store
        .run(|c| {
            let now = passerelle::app::now();
            let writer = RowFilter {
                own: Some("caravan".into()),
                shared_by: vec![],
            };
            let prov = Provenance {
                source: "test:scopes".into(),
                source_ref: None,
                imported_at: String::new(),
                updated_at: String::new(),
            };
            passerelle::storage::writes::upsert_action(
                c,
                &writer,
                &Action {
                    id: "caravan-cells-action".into(),
                    owner: "caravan".into(),
                    kind: ActionKind::Intervention,
                    title: "Cells".into(),
                    summary: None,
                    status: None,
                    starts_on: None,
                    ends_on: None,
                    schedule: None,
                    parent_action_id: None,
                    website: None,
                    themes: vec![],
                    places: vec![],
                    visibility: Visibility::Public,
                    provenance: prov.clone(),
                },
                &now,
            )?;
            passerelle::storage::writes::upsert_outcome(
                c,
                &writer,
                &Outcome {
                    id: "caravan-cells-outcome".into(),
                    owner: "caravan".into(),
                    action_id: "caravan-cells-action".into(),
                    indicator: "People supported".into(),
                    measure: OutcomeMeasure::Actual,
                    value: Some(40.0),
                    unit: Some("people".into()),
                    statement: None,
                    period_start: None,
                    period_end: None,
                    disaggregations: vec![
                        Disaggregation {
                            dimension: "district".into(),
                            category: "Nord".into(),
                            value: Some(37.0),
                        },
                        Disaggregation {
                            dimension: "district".into(),
                            category: "Sud".into(),
                            value: Some(3.0),
                        },
                    ],
                    visibility: Visibility::Public,
                    provenance: prov,
                },
                &now,
            )?;
            Ok(())
        })
        .await
        .map_err(|e| e.message())
        .unwrap();
    encode(Kind::Outcome, "caravan-cells-outcome").0
}

const OUTCOME: &str =
    "query($id: ID!) { outcome(id: $id) { value disaggregations { category value } } }";

async fn sensitive_fields_need_read_sensitive(app: TestApp) {
    app.seed().await;
    let id = outcome_with_cells(&app).await;
    let read_only = app.token("caravan", "read").await;
    for body in [
        app.graphql(OUTCOME, json!({ "id": id })).await,
        app.graphql_as(&read_only, OUTCOME, json!({ "id": id }))
            .await,
    ] {
        // The rest of the record is there; the sensitive field is null with a stable code.
        assert_eq!(body["data"]["outcome"]["value"], 40.0, "{body}");
        assert!(
            body["data"]["outcome"]["disaggregations"].is_null(),
            "{body}"
        );
        assert_eq!(error_code(&body), "FORBIDDEN_FIELD", "{body}");
        assert_eq!(
            body["errors"][0]["path"],
            json!(["outcome", "disaggregations"])
        );
        assert!(body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("read:sensitive"));
    }
    let sensitive = app.token("anvita", "read read:sensitive").await;
    let data = app.data_as(&sensitive, OUTCOME, json!({ "id": id })).await;
    assert_eq!(
        data["outcome"]["disaggregations"],
        json!([{ "category": "Nord", "value": 37.0 }, { "category": "Sud", "value": 3.0 }])
    );
}

const AUDIT: &str =
    "{ auditLog(last: 20) { clientId partner operation returnedPartners outcome } }";

async fn audit_entries(app: &TestApp, admin: &str) -> Vec<Value> {
    let data = app.data_as(admin, AUDIT, json!({})).await;
    data["auditLog"].as_array().unwrap().clone()
}

async fn authenticated_requests_are_audited_and_admin_reads_them(app: TestApp) {
    app.seed().await;
    let admin = app.token("department", "admin").await;
    let creds = app.client("caravan", "read").await;
    let reader = app.token_for(&creds, "").await;

    // Not admin: refused whole, with a stable code.
    let body = app.graphql_as(&reader, AUDIT, json!({})).await;
    assert_eq!(error_code(&body), "FORBIDDEN", "{body}");
    assert!(body["data"].is_null(), "{body}");
    let body = app.graphql(AUDIT, json!({})).await;
    assert_eq!(error_code(&body), "FORBIDDEN", "{body}");

    let before = audit_entries(&app, &admin).await.len();
    // Anonymous requests are not audited.
    app.data("{ actors(first: 5) { totalCount } }", json!({}))
        .await;
    app.data_as(
        &reader,
        r#"query AnvitaActors { actors(first: 100, filter: { partners: ["anvita"] }) { nodes { id } } }"#,
        json!({}),
    )
    .await;
    let entries = audit_entries(&app, &admin).await;
    // The admin's own read before, the reader's forbidden read, and the reader's query.
    assert_eq!(entries.len(), before + 2, "{entries:#?}");
    let entry = entries
        .iter()
        .find(|e| e["operation"] == "AnvitaActors")
        .expect("the reader's query is in the log");
    assert_eq!(entry["clientId"], creds.id.as_str());
    assert_eq!(entry["partner"], "caravan");
    assert_eq!(entry["returnedPartners"], json!(["anvita"]));
    assert_eq!(entry["outcome"], "ok");
    let forbidden = entries
        .iter()
        .find(|e| e["outcome"] == "errors")
        .expect("the refused read is logged too");
    assert_eq!(forbidden["returnedPartners"], json!([]));
    // Newest first (the admin's reading is recorded once answered).
    assert_eq!(entries[0]["operation"], "AnvitaActors");
    assert!(audit_entries(&app, &admin).await[0]["operation"]
        .as_str()
        .unwrap()
        .contains("auditLog"));
}

/// Audit entries are written by one task in batches (group commit): a burst of concurrent
/// answers is audited in full, one entry each, none lost or merged.
async fn a_burst_of_answers_is_audited_in_full(app: TestApp) {
    app.seed().await;
    let reader = app.token("caravan", "read").await;
    let admin = app.token("anvita", "admin").await;
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..40 {
        let (http, url, token) = (app.http.clone(), app.url("/graphql"), reader.clone());
        burst.spawn(async move {
            let query = format!("query Burst{i} {{ actors(first: 1) {{ totalCount }} }}");
            let res = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({ "query": query }))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        });
    }
    while let Some(done) = burst.join_next().await {
        done.unwrap();
    }
    // The same document again is answered from the response cache, and audited by the same name.
    let again = app
        .http
        .post(app.url("/graphql"))
        .bearer_auth(&reader)
        .json(&json!({ "query": "query Burst0 { actors(first: 1) { totalCount } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(again.headers()["x-passerelle-cache"], "hit");
    let data = app
        .data_as(
            &admin,
            "{ auditLog(last: 100) { operation clientId outcome } }",
            json!({}),
        )
        .await;
    let mut burst: Vec<String> = data["auditLog"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operation"].as_str().unwrap().starts_with("Burst"))
        .map(|e| {
            assert_eq!(e["outcome"], "ok");
            e["operation"].as_str().unwrap().to_owned()
        })
        .collect();
    burst.sort();
    assert_eq!(burst.iter().filter(|o| *o == "Burst0").count(), 2, "{data}");
    burst.dedup();
    assert_eq!(burst.len(), 40, "{data}");
}

/// Exports are audited like GraphQL answers, with the partners whose records they return.
async fn exports_are_audited(app: TestApp) {
    app.seed().await;
    let reader = app.token("caravan", "read").await;
    let admin = app.token("anvita", "admin").await;
    let res = app
        .http
        .get(app.url("/export/actions"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let exported = res.text().await.unwrap();
    let data = app
        .data_as(
            &admin,
            "{ auditLog(last: 20) { operation clientId partner returnedPartners } }",
            json!({}),
        )
        .await;
    let entry = data["auditLog"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["operation"] == "GET /export/actions")
        .unwrap_or_else(|| panic!("the export is in the log: {data}"))
        .clone();
    assert_eq!(entry["partner"], "caravan");
    let returned: Vec<String> = entry["returnedPartners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    // Exactly the owners of the actions the reader may see, as GraphQL shows them.
    let seen = app
        .data_as(
            &reader,
            "{ actions(first: 100) { totalCount nodes { owner { slug } } } }",
            json!({}),
        )
        .await;
    let mut owners: Vec<String> = seen["actions"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["owner"]["slug"].as_str().unwrap().to_owned())
        .collect();
    owners.sort();
    owners.dedup();
    assert!(owners.contains(&"caravan".to_owned()));
    assert_eq!(returned, owners, "{entry}");
    assert_eq!(
        exported.lines().count() as i64,
        seen["actions"]["totalCount"].as_i64().unwrap()
    );
}

/// The writer's connections to the database that serve audit entries without waiting for the
/// WAL flush (PostgreSQL only; they name themselves in `pg_stat_activity`).
async fn unflushed_audit_connections(app: &TestApp) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    app.app
        .store
        .run(|c| {
            use diesel::RunQueryDsl;
            let passerelle::storage::AnyConnection::Postgresql(pg) = c else {
                unreachable!("PostgreSQL only")
            };
            Ok(diesel::sql_query(
                "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name = 'passerelle audit'",
            )
            .get_result::<Count>(pg)?
            .n)
        })
        .await
        .map_err(|e| e.message())
        .unwrap()
}

/// A query's entry is committed without waiting for the WAL flush on PostgreSQL, on the audit
/// writer's own connection; a mutation's entry goes through the pool and waits for it, and so
/// does every entry with `audit_reads_wait_for_flush`. Either way each entry is in the log by
/// the time its answer arrives.
async fn read_entries_are_committed_without_waiting_for_the_flush(backend: Backend) {
    for wait in [false, true] {
        let Some(app) = TestApp::spawn_with(backend, |c| c.audit_reads_wait_for_flush = wait).await
        else {
            return;
        };
        app.seed().await;
        let writer = app.token("caravan", "read write").await;
        let admin = app.token("anvita", "admin").await;
        let created = app
            .data_as(
                &writer,
                r#"mutation Written { upsertAction(input: { id: "caravan-flush", kind: EVENT, title: "Permanence" }) { effect } }"#,
                json!({}),
            )
            .await;
        assert_eq!(created["upsertAction"]["effect"], "CREATED", "{created}");
        if backend == Backend::Postgres {
            assert_eq!(
                unflushed_audit_connections(&app).await,
                0,
                "a write's entry waits"
            );
        }
        app.data_as(
            &writer,
            "query Read { actors(first: 1) { totalCount } }",
            json!({}),
        )
        .await;
        let entries = audit_entries(&app, &admin).await;
        for name in ["Written", "Read"] {
            assert!(
                entries
                    .iter()
                    .any(|e| e["operation"] == name && e["outcome"] == "ok"),
                "{name} is not in the log: {entries:#?}"
            );
        }
        if backend == Backend::Postgres {
            let expected = if wait { 0 } else { 1 };
            assert_eq!(
                unflushed_audit_connections(&app).await,
                expected,
                "wait: {wait}"
            );
            let conn = app
                .app
                .store
                .unflushed_commits_connection()
                .map_err(|e| e.message());
            let passerelle::storage::AnyConnection::Postgresql(mut pg) = conn.unwrap() else {
                unreachable!()
            };
            #[derive(diesel::QueryableByName)]
            struct Setting {
                #[diesel(sql_type = diesel::sql_types::Text)]
                v: String,
            }
            use diesel::RunQueryDsl;
            let setting: Setting =
                diesel::sql_query("SELECT current_setting('synchronous_commit') AS v")
                    .get_result(&mut pg)
                    .unwrap();
            assert_eq!(setting.v, "off");
        }
    }
}

backend_tests!(
    sensitive_fields_need_read_sensitive,
    authenticated_requests_are_audited_and_admin_reads_them,
    a_burst_of_answers_is_audited_in_full,
    exports_are_audited,
);

per_backend!(read_entries_are_committed_without_waiting_for_the_flush);
