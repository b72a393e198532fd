//! Bulk import over HTTP (in-process as a partner, and anonymously over the wire) and from the
//! command line, on both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{partner, Backend, TestApp};
use passerelle::error::Error;
use passerelle::http::ingest::import_as;
use serde_json::json;

const NDJSON: &str = concat!(
    r#"{"type":"partnership","id":"caravan-imp-pship","action_id":"caravan-imp-child","name":"Atelier partagé","members":[{"actor_id":"caravan-imp-asso","role":"IMPLEMENTER"}]}"#,
    "\n",
    r#"{"type":"action","id":"caravan-imp-child","kind":"WORKSHOP","title":"Atelier importé","parent_action_id":"caravan-imp-plan","themes":["access-to-rights"],"places":[{"name":"Grenoble","level":"COMMUNE","insee_code":"38185"}],"visibility":"PUBLIC"}"#,
    "\n",
    r#"{"type":"action","id":"caravan-imp-plan","kind":"PROGRAMME","title":"Plan importé","starts_on":"2024","visibility":"PUBLIC"}"#,
    "\n",
    "\n",
    r#"{"type":"outcome","id":"caravan-imp-out","action_id":"caravan-imp-child","indicator":"personnes reçues","measure":"ACTUAL","value":42,"disaggregations":[{"dimension":"age","category":"18-25","value":10}],"visibility":"PUBLIC"}"#,
    "\n",
    r#"{"type":"actor","id":"caravan-imp-asso","kind":"ASSOCIATION","name":"Association importée","visibility":"PUBLIC","source_ref":"crm-17"}"#,
    "\n",
);

/// The same records as `NDJSON`, in CSV.
const CSV: &str = r#"type,id,kind,name,title,parent_action_id,action_id,starts_on,themes,places,indicator,measure,value,disaggregations,members,visibility,source_ref
actor,caravan-imp-asso,ASSOCIATION,Association importée,,,,,,,,,,,,PUBLIC,crm-17
action,caravan-imp-plan,PROGRAMME,,Plan importé,,,2024,,,,,,,,PUBLIC,
action,caravan-imp-child,WORKSHOP,,Atelier importé,caravan-imp-plan,,,"[""access-to-rights""]","[{""name"": ""Grenoble"", ""level"": ""COMMUNE"", ""insee_code"": ""38185""}]",,,,,,PUBLIC,
outcome,caravan-imp-out,,,,,caravan-imp-child,,,,personnes reçues,ACTUAL,42,"[{""dimension"": ""age"", ""category"": ""18-25"", ""value"": 10}]",,PUBLIC,
partnership,caravan-imp-pship,,Atelier partagé,,,caravan-imp-child,,,,,,,,"[{""actor_id"": ""caravan-imp-asso"", ""role"": ""IMPLEMENTER""}]",,
"#;

async fn totals(app: &TestApp) -> (i64, i64, i64, i64) {
    let body = app
        .execute_as(
            &partner("caravan", &["read"]),
            "{ actors { totalCount } actions { totalCount } outcomes { totalCount } partnerships { totalCount } }",
            json!({}),
        )
        .await;
    let n = |k: &str| body["data"][k]["totalCount"].as_i64().unwrap();
    (n("actors"), n("actions"), n("outcomes"), n("partnerships"))
}

async fn ndjson_imports_all_rows_and_reimporting_changes_nothing(app: TestApp) {
    app.seed().await;
    let caravan = partner("caravan", &["write"]);
    let before = totals(&app).await;
    let report = import_as(
        &app.app,
        &caravan,
        Some("application/x-ndjson"),
        NDJSON.into(),
    )
    .await
    .map_err(|e| e.message())
    .unwrap();
    assert_eq!((report.rows, report.created), (5, 5), "{report:?}");
    let after = totals(&app).await;
    assert_eq!(
        after,
        (before.0 + 1, before.1 + 2, before.2 + 1, before.3 + 1)
    );
    let again = import_as(
        &app.app,
        &caravan,
        Some("application/x-ndjson"),
        NDJSON.into(),
    )
    .await
    .map_err(|e| e.message())
    .unwrap();
    assert_eq!((again.rows, again.unchanged), (5, 5), "{again:?}");
    assert_eq!(totals(&app).await, after);
    // The records read back with the importing partner as owner and provenance.
    let data = app
        .data(
            r#"{ actions(filter: { text: "Atelier importé" }) { nodes { owner { slug } parent { title } provenance { source } outcomes { value } } } }"#,
            json!({}),
        )
        .await;
    let node = &data["actions"]["nodes"][0];
    assert_eq!(node["owner"]["slug"], "caravan");
    assert_eq!(node["parent"]["title"], "Plan importé");
    assert_eq!(node["provenance"]["source"], "import:caravan");
    assert_eq!(node["outcomes"][0]["value"], 42.0);
}

async fn csv_reads_the_same_records_as_ndjson(app: TestApp) {
    app.seed().await;
    let caravan = partner("caravan", &["write"]);
    let report = import_as(
        &app.app,
        &caravan,
        Some("text/csv; charset=utf-8"),
        CSV.into(),
    )
    .await
    .map_err(|e| e.message())
    .unwrap();
    assert_eq!((report.rows, report.created), (5, 5), "{report:?}");
    // The NDJSON file says exactly the same.
    let ndjson = import_as(
        &app.app,
        &caravan,
        Some("application/x-ndjson"),
        NDJSON.into(),
    )
    .await
    .map_err(|e| e.message())
    .unwrap();
    assert_eq!((ndjson.rows, ndjson.unchanged), (5, 5), "{ndjson:?}");
    // A changed cell updates that record only.
    let changed = CSV.replace("Plan importé", "Plan importé (v2)");
    let again = import_as(&app.app, &caravan, Some("text/csv"), changed.into())
        .await
        .map_err(|e| e.message())
        .unwrap();
    assert_eq!((again.updated, again.unchanged), (1, 4), "{again:?}");
}

fn problems(result: Result<passerelle::ingest::import::ImportReport, Error>) -> Vec<String> {
    match result {
        Err(Error::Invalid(fields)) => fields.into_iter().map(|f| f.field).collect(),
        Err(other) => panic!("expected BAD_USER_INPUT, got {}", other.code()),
        Ok(r) => panic!("expected errors, imported {r:?}"),
    }
}

async fn every_problem_is_reported_with_its_line_and_nothing_is_written(app: TestApp) {
    app.seed().await;
    let caravan = partner("caravan", &["write"]);
    let before = totals(&app).await;
    let file = concat!(
        r#"{"type":"actor","id":"caravan-ok-1","kind":"ASSOCIATION","name":"Fine"}"#,
        "\n",
        r#"{"type":"actor","id":"bad 2","kind":"ASSOCIATION","name":"","website":"nope"}"#,
        "\n",
        r#"{"type":"action","id":"caravan-a3","kind":"DANCE","title":"x"}"#,
        "\n",
        "{ not json\n",
        r#"{"type":"actor","id":"caravan-ok-1","kind":"OTHER","name":"Again"}"#,
        "\n",
    );
    let fields = problems(
        import_as(
            &app.app,
            &caravan,
            Some("application/x-ndjson"),
            file.into(),
        )
        .await,
    );
    assert_eq!(
        fields,
        [
            "line 2.id",
            "line 2.name",
            "line 2.website",
            "line 3.kind",
            "line 4",
            "line 5.id"
        ]
    );
    // Rows that pass on their own but fail against the database (unknown reference, another
    // partner's id) are reported too, and the good rows before them are rolled back.
    let file = concat!(
        r#"{"type":"actor","id":"anvita-ok-1","kind":"ASSOCIATION","name":"Fine"}"#,
        "\n",
        r#"{"type":"outcome","id":"anvita-o2","action_id":"nowhere","indicator":"n","measure":"ACTUAL","value":1}"#,
        "\n",
    );
    let anvita = partner("anvita", &["write"]);
    let fields =
        problems(import_as(&app.app, &anvita, Some("application/x-ndjson"), file.into()).await);
    assert_eq!(fields, ["line 2.actionId"]);
    // Another partner's id, existing or not, is outside the writer's namespace.
    for id in ["caravan-2020-experiment", "caravan-never-written"] {
        let file =
            format!(r#"{{"type":"action","id":"{id}","kind":"WORKSHOP","title":"mine now"}}"#);
        let fields =
            problems(import_as(&app.app, &anvita, Some("application/x-ndjson"), file.into()).await);
        assert_eq!(fields, ["line 1.id"]);
    }
    assert_eq!(totals(&app).await, before);
    // CSV: lines count from the header.
    let csv = "type,id,kind,name\nactor,caravan-c1,ASSOCIATION,Un\nactor,caravan-c2,PLANET,Deux\nactor,caravan-c3,OTHER,\n";
    let fields = problems(import_as(&app.app, &caravan, Some("text/csv"), csv.into()).await);
    assert_eq!(fields, ["line 3.kind", "line 4.name"]);
    let csv = "type,id,colour\nactor,caravan-c1,red\n";
    let fields = problems(import_as(&app.app, &caravan, Some("text/csv"), csv.into()).await);
    assert_eq!(fields, ["line 1.colour"]);
    assert_eq!(totals(&app).await, before);
}

async fn the_endpoint_is_authenticated_like_graphql(app: TestApp) {
    app.seed().await;
    // Over HTTP every caller is anonymous until token auth lands.
    let res = app
        .http
        .post(app.url("/import"))
        .header("content-type", "application/x-ndjson")
        .body(NDJSON)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "UNAUTHENTICATED");
    // Read-only partners may not import; the content type must say the format.
    let reader = partner("caravan", &["read"]);
    let e = import_as(
        &app.app,
        &reader,
        Some("application/x-ndjson"),
        NDJSON.into(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "FORBIDDEN");
    let writer = partner("caravan", &["write"]);
    let e = import_as(&app.app, &writer, Some("application/json"), NDJSON.into())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "BAD_REQUEST");
}

async fn the_cli_imports_a_file_with_the_same_outcome(app: TestApp) {
    app.seed().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.ndjson");
    std::fs::write(&path, NDJSON).unwrap();
    let run = |file: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_passerelle"))
            .args(["import", "--partner", "caravan"])
            .arg(file)
            .env("PASSERELLE_DATABASE_URL", &app.database_url)
            .env("PASSERELLE_LOG_LEVEL", "warn")
            .output()
            .unwrap()
    };
    let first = run(&path);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{first:?}");
    assert!(stdout.contains("5 created"), "{stdout}");
    let second = run(&path);
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        stdout.contains("0 created, 0 updated, 5 unchanged"),
        "{stdout}"
    );
    // A bad file: every problem on stderr with file and line, a failing exit, nothing written.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "type,id,kind,name\nactor,x1,OTHER,\nactor,x2,NOPE,Deux\n",
    )
    .unwrap();
    let before = totals(&app).await;
    let failed = run(&bad);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    assert!(stderr.contains("bad.csv: line 2.name"), "{stderr}");
    assert!(stderr.contains("bad.csv: line 3.kind"), "{stderr}");
    assert!(stderr.contains("nothing was imported"), "{stderr}");
    assert_eq!(totals(&app).await, before);
}

/// `n` valid actors of about 2 KiB each, as NDJSON.
fn big_file(n: usize) -> String {
    let mut file = String::new();
    for i in 0..n {
        file.push_str(
            &json!({ "type": "actor", "id": format!("caravan-big-{i:05}"), "kind": "ASSOCIATION",
                     "name": format!("Association volumineuse {i}"), "visibility": "PUBLIC",
                     "description": "é".repeat(1000) })
            .to_string(),
        );
        file.push('\n');
    }
    file
}

async fn post_import(app: &TestApp, token: &str, body: String) -> (u16, serde_json::Value) {
    let res = app
        .http
        .post(app.url("/import"))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn files_larger_than_the_graphql_body_limit_import_over_http(app: TestApp) {
    app.seed().await;
    let token = app.token("caravan", "write").await;
    let file = big_file(800);
    assert!(file.len() > 1024 * 1024 + 400_000, "{}", file.len());
    let before = totals(&app).await;
    let (status, report) = post_import(&app, &token, file.clone()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (&report["rows"], &report["created"]),
        (&json!(800), &json!(800))
    );
    assert_eq!(totals(&app).await.0, before.0 + 800);
    // The same path as the CLI: again, nothing changes.
    let (status, report) = post_import(&app, &token, file.clone()).await;
    assert_eq!(
        (status, &report["unchanged"]),
        (200, &json!(800)),
        "{report}"
    );
    // Other routes keep the 1 MiB limit.
    let res = app
        .http
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body(json!({ "query": "{ __typename }", "variables": { "pad": file } }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
}

/// POSTs `body` to /import with `Transfer-Encoding: chunked` (no length announced), over a raw
/// connection; returns the status and the JSON body of the answer.
async fn post_chunked(app: &TestApp, token: &str, body: &[u8]) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /import HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\
         connection: close\r\n\r\n",
        app.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let body = body.to_vec();
    let sending = tokio::spawn(async move {
        for chunk in body.chunks(8 * 1024) {
            let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
            // The server may answer and stop reading before the end.
            if writer.write_all(&frame).await.is_err() {
                return writer;
            }
        }
        let _ = writer.write_all(b"0\r\n\r\n").await;
        // Kept open: the server drops a connection whose client stops sending.
        writer
    });
    let mut answer = Vec::new();
    let _ = reader.read_to_end(&mut answer).await;
    drop(sending.await);
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let json = text
        .find("\r\n\r\n")
        .map(|i| &text[i + 4..])
        .and_then(|b| b.find('{').map(|j| &b[j..]))
        .and_then(|b| b.rfind('}').map(|k| &b[..=k]))
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(serde_json::Value::Null);
    (status, json)
}

async fn imports_over_import_max_bytes_are_refused_and_write_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |c| c.import_max_bytes = 64 * 1024).await else {
        return;
    };
    app.seed().await;
    let token = app.token("caravan", "write").await;
    let file = big_file(60); // about 120 KiB
    let before = totals(&app).await;
    // Announced too large: refused before reading.
    let (status, body) = post_import(&app, &token, file.clone()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("PAYLOAD_TOO_LARGE")),
        "{body}"
    );
    // Not announced: refused once the limit is passed.
    let (status, body) = post_chunked(&app, &token, file.as_bytes()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("PAYLOAD_TOO_LARGE")),
        "{body}"
    );
    assert_eq!(totals(&app).await, before);
    // Under the limit, chunked: imported.
    let small = big_file(20);
    assert!(small.len() < 64 * 1024);
    let (status, body) = post_chunked(&app, &token, small.as_bytes()).await;
    assert_eq!((status, &body["created"]), (200, &json!(20)), "{body}");
}

per_backend!(imports_over_import_max_bytes_are_refused_and_write_nothing);

backend_tests!(
    files_larger_than_the_graphql_body_limit_import_over_http,
    ndjson_imports_all_rows_and_reimporting_changes_nothing,
    csv_reads_the_same_records_as_ndjson,
    every_problem_is_reported_with_its_line_and_nothing_is_written,
    the_endpoint_is_authenticated_like_graphql,
    the_cli_imports_a_file_with_the_same_outcome,
);
