//! Automatic persisted queries (Apollo protocol) and trusted documents, on both backends, and
//! across two `passerelle serve` processes sharing one PostgreSQL database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    error_code, passerelle, serve, sha256, Backend, TestApp, TestDb, GQL_ACCEPT, TEST_VIEWER,
};
use serde_json::{json, Value};

const PARTNERS: &str = "query Partners { partners { slug } }";

fn apq(hash: &str) -> Value {
    json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } } })
}

fn apq_with_text(query: &str, hash: &str) -> Value {
    json!({
        "query": query,
        "operationName": "Partners",
        "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } }
    })
}

async fn apq_registers_then_runs_by_hash_on_post_and_get(app: TestApp) {
    app.seed().await;
    let hash = sha256(PARTNERS);
    // 1. The hash alone: unknown, with Apollo's exact shape and a 200 so clients retry.
    for accept in [("accept", "application/json"), GQL_ACCEPT] {
        let (status, _, body) = app.post_json(&apq(&hash), &[accept]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["errors"][0]["message"], "PersistedQueryNotFound");
        assert_eq!(error_code(&body), "PERSISTED_QUERY_NOT_FOUND");
        assert!(body.get("data").is_none(), "{body}");
    }
    // 2. Hash and text: registered and run.
    let (status, _, body) = app.post_json(&apq_with_text(PARTNERS, &hash), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"]["partners"].as_array().unwrap().len(),
        4,
        "{body}"
    );
    // 3. The hash alone now runs, on POST and on GET.
    let (_, _, by_post) = app.post_json(&apq(&hash), &[]).await;
    assert_eq!(by_post["data"], body["data"]);
    // Hex is hex, whatever its case.
    let (_, _, upper) = app.post_json(&apq(&hash.to_uppercase()), &[]).await;
    assert_eq!(upper["data"], body["data"], "{upper}");
    let ext = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } }).to_string();
    let (status, _, by_get) = app
        .get_graphql(
            &[("extensions", &ext), ("operationName", "Partners")],
            &[("apollo-require-preflight", "true")],
        )
        .await;
    assert_eq!(status, 200, "{by_get}");
    assert_eq!(by_get["data"], body["data"]);
    // Registered in the database, not only in this process's memory.
    let stored = app
        .app
        .store
        .run(move |c| passerelle::storage::persisted::find(c, &hash))
        .await
        .map_err(|e| e.message())
        .unwrap()
        .unwrap();
    assert_eq!((stored.body.as_str(), stored.trusted), (PARTNERS, false));
}

async fn apq_hash_mismatch_is_refused_with_400(app: TestApp) {
    let wrong = sha256("{ partners { name } }");
    let (status, _, body) = app.post_json(&apq_with_text(PARTNERS, &wrong), &[]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "PERSISTED_QUERY_HASH_MISMATCH");
    // Nothing was registered under the wrong hash.
    let (_, _, body) = app.post_json(&apq(&wrong), &[]).await;
    assert_eq!(error_code(&body), "PERSISTED_QUERY_NOT_FOUND");
    // A bad version is a bad request.
    let bad = json!({ "extensions": { "persistedQuery": { "version": 2, "sha256Hash": wrong } } });
    let (status, _, body) = app.post_json(&bad, &[]).await;
    assert_eq!((status, error_code(&body).as_str()), (400, "BAD_REQUEST"));
}

fn manifest(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("manifest.json");
    std::fs::write(
        &path,
        json!({
            "format": "apollo-persisted-query-manifest",
            "version": 1,
            "operations": [
                { "id": "ios-partners-v1", "name": "Partners", "type": "query", "body": PARTNERS }
            ]
        })
        .to_string(),
    )
    .unwrap();
    path
}

async fn trusted_documents_bind_persisted_only_clients(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |c| c.persisted_only = vec!["ios".into()]).await
    else {
        return;
    };
    app.seed().await;
    let dir = tempfile::tempdir().unwrap();
    // `passerelle pq import FILE`, by the real binary, into the database the app uses.
    let out = passerelle(&app.database_url)
        .args(["pq", "import"])
        .arg(manifest(dir.path()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 created"));
    let again = passerelle(&app.database_url)
        .args(["pq", "import"])
        .arg(manifest(dir.path()))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("1 unchanged"));

    let ios = (TEST_VIEWER, "client=ios");
    // By id: runs.
    let (status, _, body) = app
        .post_json(&apq("ios-partners-v1"), &[ios, GQL_ACCEPT])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["partners"].as_array().unwrap().len(), 4);
    // Any text: refused, with or without a hash.
    let (status, _, body) = app
        .post_json(&json!({ "query": PARTNERS }), &[ios, GQL_ACCEPT])
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "PERSISTED_QUERY_REQUIRED")
    );
    let hash = sha256(PARTNERS);
    let (_, _, body) = app
        .post_json(&apq_with_text(PARTNERS, &hash), &[ios, GQL_ACCEPT])
        .await;
    assert_eq!(error_code(&body), "PERSISTED_QUERY_REQUIRED");
    // A query another client registered by APQ is not trusted.
    let (_, _, body) = app.post_json(&apq_with_text(PARTNERS, &hash), &[]).await;
    assert!(body.get("errors").is_none(), "{body}");
    let (_, _, body) = app.post_json(&apq(&hash), &[ios, GQL_ACCEPT]).await;
    assert_eq!(error_code(&body), "PERSISTED_QUERY_REQUIRED");
    // An unknown id is final for this client: not PersistedQueryNotFound, which would make an
    // APQ client retry with the text.
    let (_, _, body) = app.post_json(&apq("nope"), &[ios]).await;
    assert_eq!(error_code(&body), "PERSISTED_QUERY_NOT_IN_MANIFEST");
    let (status, _, body) = app.post_json(&apq("nope"), &[ios, GQL_ACCEPT]).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "PERSISTED_QUERY_NOT_IN_MANIFEST")
    );
    // Other clients still send text.
    let (_, _, body) = app
        .post_json(
            &json!({ "query": PARTNERS }),
            &[(TEST_VIEWER, "client=web")],
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");
}

async fn manifest_from_config_is_imported_at_start(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(dir.path());
    let Some(app) = TestApp::spawn_with(backend, |c| c.persisted_query_manifest = Some(path)).await
    else {
        return;
    };
    let (_, _, body) = app.post_json(&apq("ios-partners-v1"), &[]).await;
    assert_eq!(body["data"]["partners"], json!([]), "{body}");
}

per_backend!(
    trusted_documents_bind_persisted_only_clients,
    manifest_from_config_is_imported_at_start
);

mod apq_tests {
    use super::*;
    backend_tests!(
        apq_registers_then_runs_by_hash_on_post_and_get,
        apq_hash_mismatch_is_refused_with_400
    );
}

#[test]
fn a_bad_manifest_is_refused_with_the_fields_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(&path, r#"{"format":"apollo-persisted-query-manifest","version":1,"operations":[{"id":"x","name":"X","type":"query","body":"{ nope"}]}"#).unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let out = passerelle(&url)
        .args(["pq", "import"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("operations[0].body"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_registered_on_one_replica_runs_by_hash_on_another() {
    let Some((_db, url)) = TestDb::create(Backend::Postgres) else {
        return;
    };
    // Migrate and seed once, before the replicas start.
    let out = passerelle(&url).arg("seed").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (a, b) = (serve(&url, &[]), serve(&url, &[]));
    assert_ne!(a.url, b.url);
    let http = reqwest::Client::new();
    let post = |server: &str, body: Value| http.post(server.to_owned()).json(&body).send();
    let hash = sha256(PARTNERS);
    // B has never seen it.
    let body: Value = post(&b.url, apq(&hash))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(error_code(&body), "PERSISTED_QUERY_NOT_FOUND");
    // Registered on A...
    let registered: Value = post(&a.url, apq_with_text(PARTNERS, &hash))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(registered["data"]["partners"].as_array().unwrap().len(), 4);
    // ...runs by hash on B (its memory missed it a moment ago).
    let body: Value = post(&b.url, apq(&hash))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"], registered["data"], "{body}");
}
