//! Streaming export of what the caller may see, over HTTP (anonymous) and in-process as a
//! partner, on both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{partner, TestApp};
use passerelle::http::ingest::{export_as, import_as};
use serde_json::{json, Value};

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.http.get(app.url(path)).send().await.unwrap()
}

fn lines(body: &str) -> Vec<Value> {
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn anonymous_callers_export_public_records_only(app: TestApp) {
    app.seed().await;
    for kind in ["actors", "actions", "outcomes", "partnerships"] {
        let res = get(&app, &format!("/export/{kind}")).await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["content-type"].to_str().unwrap(),
            "application/x-ndjson"
        );
        let records = lines(&res.text().await.unwrap());
        let total = app
            .data(&format!("{{ {kind} {{ totalCount }} }}"), json!({}))
            .await[kind]["totalCount"]
            .as_i64()
            .unwrap();
        assert_eq!(records.len() as i64, total, "{kind}");
        assert!(total > 0, "{kind}");
        for r in &records {
            assert_eq!(r["visibility"], "PUBLIC", "{r}");
            assert!(r["owner"].is_string() && r["source"].is_string(), "{r}");
        }
    }
    let missing = get(&app, "/export/people").await;
    assert_eq!(missing.status(), 404);
    let bad = get(&app, "/export/actors?format=xlsx").await;
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["code"], "BAD_REQUEST");
}

async fn large_exports_stream_every_row_once_page_by_page(app: TestApp) {
    app.seed().await;
    // More rows than several export pages.
    let n = passerelle::export::PAGE_ROWS as usize * 2 + 37;
    let mut file = String::new();
    for i in 0..n {
        file.push_str(
            &json!({"type": "actor", "id": format!("anvita-bulk-{i:05}"), "kind": "ASSOCIATION",
                     "name": format!("Association {}", i % 7), "visibility": "PUBLIC"})
            .to_string(),
        );
        file.push('\n');
    }
    let writer = partner("anvita", &["write"]);
    import_as(&app.app, &writer, Some("application/x-ndjson"), file.into())
        .await
        .map_err(|e| e.message())
        .unwrap();
    let res = get(&app, "/export/actors?format=csv").await;
    assert_eq!(res.status(), 200);
    // Streamed: no length known up front.
    assert!(res.headers().get("content-length").is_none());
    let text = res.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(&headers[0], "type");
    let id_col = headers.iter().position(|h| h == "id").unwrap();
    let ids: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[id_col].to_owned())
        .collect();
    let bulk = ids
        .iter()
        .filter(|id| id.starts_with("anvita-bulk-"))
        .count();
    assert_eq!(bulk, n);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "a row was exported twice");
}

async fn partners_export_what_they_see_and_can_reimport_it(app: TestApp) {
    app.seed().await;
    let caravan = partner("caravan", &["read", "write"]);
    let mine = concat!(
        r#"{"type":"action","id":"caravan-secret-1","kind":"WORKSHOP","title":"Atelier privé","themes":["access-to-rights"]}"#,
        "\n",
        r#"{"type":"outcome","id":"caravan-secret-o","action_id":"caravan-secret-1","indicator":"présents","measure":"ACTUAL","value":7}"#,
        "\n",
    );
    import_as(
        &app.app,
        &caravan,
        Some("application/x-ndjson"),
        mine.into(),
    )
    .await
    .map_err(|e| e.message())
    .unwrap();
    let body = |res: axum::response::Response| async move {
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    };
    let as_caravan = body(export_as(&app.app, &caravan, "actions", None).unwrap()).await;
    let records = lines(&as_caravan);
    assert!(records
        .iter()
        .any(|r| r["id"] == "caravan-secret-1" && r["visibility"] == "PRIVATE"));
    let anvita = partner("anvita", &["read"]);
    let as_anvita = body(export_as(&app.app, &anvita, "actions", None).unwrap()).await;
    assert!(!as_anvita.contains("caravan-secret-1"));
    let public = get(&app, "/export/actions").await.text().await.unwrap();
    assert!(!public.contains("caravan-secret-1"));
    // Its own export, fed back, changes nothing.
    let outcomes = body(export_as(&app.app, &caravan, "outcomes", None).unwrap()).await;
    let own: String = as_caravan
        .lines()
        .chain(outcomes.lines())
        .filter(|l| {
            l.contains(r#""id":"caravan-secret-1""#) || l.contains(r#""id":"caravan-secret-o""#)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(own.lines().count(), 2, "{own}");
    let again = import_as(&app.app, &caravan, Some("application/x-ndjson"), own.into())
        .await
        .map_err(|e| e.message())
        .unwrap();
    assert_eq!((again.rows, again.unchanged), (2, 2), "{again:?}");
}

backend_tests!(
    anonymous_callers_export_public_records_only,
    large_exports_stream_every_row_once_page_by_page,
    partners_export_what_they_see_and_can_reimport_it,
);
