//! GraphQL over HTTP: content negotiation, status codes, GET rules, HTTP caching (Cache-Control,
//! ETag, 304), the response cache (visibility fingerprint, invalidation) and its gzip-encoded
//! hits. On both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{error_code, TestApp, GQL_ACCEPT, TEST_VIEWER};
use passerelle::storage::EntityKind;
use serde_json::{json, Value};

const PREFLIGHT: (&str, &str) = ("apollo-require-preflight", "true");
const PARTNERS: &str = "{ partners { slug } }";

fn content_type(headers: &reqwest::header::HeaderMap) -> String {
    headers["content-type"].to_str().unwrap().to_owned()
}

async fn content_negotiation_and_status_codes(app: TestApp) {
    app.seed().await;
    let q = json!({ "query": PARTNERS });
    // application/graphql-response+json when accepted; application/json otherwise.
    let (status, headers, body) = app.post_json(&q, &[GQL_ACCEPT]).await;
    assert_eq!(status, 200);
    assert!(content_type(&headers).starts_with("application/graphql-response+json"));
    assert_eq!(body["data"]["partners"].as_array().unwrap().len(), 4);
    let (_, headers, _) = app.post_json(&q, &[]).await;
    assert!(content_type(&headers).starts_with("application/json"));
    let (_, headers, _) = app.post_json(&q, &[("accept", "*/*")]).await;
    assert!(content_type(&headers).starts_with("application/json"));
    let (status, _, body) = app.post_json(&q, &[("accept", "text/html")]).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (406, "NOT_ACCEPTABLE")
    );
    // Request errors: 4xx with graphql-response+json, 200 with legacy json; never a data entry.
    for (query, code) in [
        ("{ partners { slug ", "GRAPHQL_PARSE_FAILED"),
        ("{ partners { nope } }", "GRAPHQL_VALIDATION_FAILED"),
    ] {
        let (status, _, body) = app
            .post_json(&json!({ "query": query }), &[GQL_ACCEPT])
            .await;
        assert_eq!((status, error_code(&body).as_str()), (400, code), "{body}");
        assert!(body.get("data").is_none(), "{body}");
        let (status, _, body) = app.post_json(&json!({ "query": query }), &[]).await;
        assert_eq!((status, error_code(&body).as_str()), (200, code), "{body}");
    }
    // Not a GraphQL request at all: 400 for every client.
    let (status, _, body) = app.post_json(&json!({ "variables": {} }), &[]).await;
    assert_eq!((status, error_code(&body).as_str()), (400, "BAD_REQUEST"));
    let res = app
        .http
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(error_code(&res.json().await.unwrap()), "BAD_REQUEST");
    // application/graphql bodies are accepted; other media types are 415.
    for (media, status) in [("application/graphql", 200), ("application/xml", 415)] {
        let res = app
            .http
            .post(app.url("/graphql"))
            .header("content-type", media)
            .body(PARTNERS)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{media}");
    }
    // Other methods: 405.
    let res = app.http.put(app.url("/graphql")).send().await.unwrap();
    assert_eq!(res.status(), 405);
}

async fn get_runs_queries_only(app: TestApp) {
    app.seed().await;
    let (status, headers, body) = app
        .get_graphql(
            &[
                (
                    "query",
                    "query Q($s: [String!]) { actions(filter: { partners: $s }) { totalCount } }",
                ),
                ("variables", r#"{"s":["caravan"]}"#),
                ("operationName", "Q"),
            ],
            &[PREFLIGHT],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["actions"]["totalCount"], 3);
    assert!(content_type(&headers).starts_with("application/json"));
    let (status, headers, body) = app
        .get_graphql(
            &[("query", "mutation { nothing }")],
            &[PREFLIGHT, GQL_ACCEPT],
        )
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (405, "METHOD_NOT_ALLOWED"),
        "{body}"
    );
    assert_eq!(headers["allow"], "POST");
    // Also for legacy clients: it is a transport rule.
    let (status, _, _) = app
        .get_graphql(&[("query", "mutation { nothing }")], &[PREFLIGHT])
        .await;
    assert_eq!(status, 405);
    let (status, _, body) = app
        .get_graphql(&[("query", "{ x }"), ("variables", "{bad")], &[PREFLIGHT])
        .await;
    assert_eq!((status, error_code(&body).as_str()), (400, "BAD_REQUEST"));
}

async fn get_answers_are_cacheable_by_visibility_with_etags(app: TestApp) {
    app.seed().await;
    let q = [("query", PARTNERS)];
    let (status, headers, body) = app.get_graphql(&q, &[PREFLIGHT]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "public, max-age=60");
    let vary = headers["vary"].to_str().unwrap();
    assert!(
        vary.contains("Authorization") && vary.contains("Accept"),
        "{vary}"
    );
    let etag = headers["etag"].to_str().unwrap().to_owned();
    // Same answer, same ETag: 304 without a body.
    let res = app
        .http
        .get(app.url("/graphql"))
        .query(&q)
        .header(PREFLIGHT.0, PREFLIGHT.1)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    assert_eq!(res.headers()["etag"].to_str().unwrap(), etag);
    assert!(res.bytes().await.unwrap().is_empty());
    let (status, _, again) = app
        .get_graphql(&q, &[PREFLIGHT, ("if-none-match", "\"stale\"")])
        .await;
    assert_eq!((status, &again), (200, &body));
    // HEAD is GET without a body.
    let res = app
        .http
        .head(app.url("/graphql"))
        .query(&q)
        .header(PREFLIGHT.0, PREFLIGHT.1)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["etag"].to_str().unwrap(), etag);
    // Anything that depends on who asks is private.
    let (_, headers, _) = app
        .get_graphql(
            &q,
            &[PREFLIGHT, (TEST_VIEWER, "partner=caravan; scopes=read")],
        )
        .await;
    assert_eq!(headers["cache-control"], "private, max-age=60");
    let (_, headers, _) = app
        .get_graphql(&q, &[PREFLIGHT, (TEST_VIEWER, "scopes=read")])
        .await;
    assert_eq!(headers["cache-control"], "private, max-age=60");
    // POST and errors are never stored.
    let (_, headers, _) = app.post_json(&json!({ "query": PARTNERS }), &[]).await;
    assert_eq!(headers["cache-control"], "no-store");
    assert!(headers.get("etag").is_none());
    let (_, headers, _) = app
        .get_graphql(&[("query", "{ nope }")], &[PREFLIGHT])
        .await;
    assert_eq!(headers["cache-control"], "no-store");
}

/// Makes caravan's actions private (a write outside `storage::writes`, so it tells the cache).
async fn make_caravan_private(app: &TestApp) {
    app.app
        .store
        .run(|c| {
            use diesel::RunQueryDsl;
            diesel::sql_query(
                "UPDATE actions SET visibility = 'private' WHERE owner_partner_id = 'caravan'",
            )
            .execute(c)?;
            Ok(())
        })
        .await
        .map_err(|e| e.message())
        .unwrap();
    app.app.response_cache.invalidate([EntityKind::Action]);
}

const CARAVAN_ACTIONS: &str =
    "{ actions(filter: { partners: [\"caravan\"] }) { totalCount nodes { title } } }";

async fn as_viewer(app: &TestApp, viewer: &str, query: &str) -> (bool, Value) {
    let mut headers = vec![];
    if !viewer.is_empty() {
        headers.push((TEST_VIEWER, viewer));
    }
    let (status, h, body) = app.post_json(&json!({ "query": query }), &headers).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    (h.get("x-passerelle-cache").is_some(), body)
}

async fn cached_answers_never_cross_visibility(app: TestApp) {
    app.seed().await;
    make_caravan_private(&app).await;
    // Caravan sees its private actions; the answer is cached for caravan's visibility.
    let (hit, caravan) = as_viewer(&app, "partner=caravan; scopes=read", CARAVAN_ACTIONS).await;
    assert!(!hit);
    assert_eq!(caravan["data"]["actions"]["totalCount"], 3);
    let (hit, again) = as_viewer(&app, "partner=caravan; scopes=read", CARAVAN_ACTIONS).await;
    assert!(hit, "the same caller hits the cache");
    assert_eq!(again, caravan);
    // Another partner, the same query: never caravan's answer.
    let (hit, anvita) = as_viewer(&app, "partner=anvita; scopes=read", CARAVAN_ACTIONS).await;
    assert!(!hit);
    assert_eq!(anvita["data"]["actions"]["totalCount"], 0);
    // Anonymous, and a partner caravan shares with (private rows are not shared): their own.
    let (hit, anonymous) = as_viewer(&app, "", CARAVAN_ACTIONS).await;
    assert!(!hit);
    assert_eq!(anonymous["data"]["actions"]["totalCount"], 0);
    let (hit, shared) = as_viewer(
        &app,
        "partner=anvita; scopes=read; shared=caravan",
        CARAVAN_ACTIONS,
    )
    .await;
    assert!(!hit);
    assert_eq!(shared["data"]["actions"]["totalCount"], 0);
    // Different scopes, same rows: kept apart too.
    let (hit, _) = as_viewer(
        &app,
        "partner=caravan; scopes=read,research",
        CARAVAN_ACTIONS,
    )
    .await;
    assert!(!hit);
    // Another client of caravan with the same scopes may see the same rows: it shares.
    let (hit, other_client) = as_viewer(
        &app,
        "partner=caravan; scopes=read; client=another-app",
        CARAVAN_ACTIONS,
    )
    .await;
    assert!(hit);
    assert_eq!(other_client, caravan);
}

/// A GET of `query` with `headers`: status, headers and the body's bytes as sent.
async fn get_raw(
    app: &TestApp,
    query: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = app
        .http
        .get(app.url("/graphql"))
        .query(&[("query", query)])
        .header(PREFLIGHT.0, PREFLIGHT.1);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    (status, headers, res.bytes().await.unwrap().to_vec())
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Answers from the response cache go out gzip-encoded to clients that accept it, under an ETag
/// of their own; other clients, small answers and other callers' entries are unaffected.
async fn cache_hits_are_sent_gzipped_to_clients_that_accept_it(app: TestApp) {
    app.seed().await;
    make_caravan_private(&app).await;
    let query = "{ actions(first: 50) { nodes { id title startsOn } } }";
    let caravan = (TEST_VIEWER, "partner=caravan; scopes=read");
    let gzip = ("accept-encoding", "gzip");
    // The miss that fills the cache is sent as it is.
    let (status, h, answer) = get_raw(&app, query, &[caravan, gzip]).await;
    assert_eq!(status, 200);
    assert!(h.get("content-encoding").is_none() && h.get("x-passerelle-cache").is_none());
    assert!(answer.len() > 1024, "{}", answer.len());
    let identity_tag = h["etag"].to_str().unwrap().to_owned();
    // A hit, for a client that accepts gzip: the same answer, compressed.
    let (status, h, gzipped) = get_raw(&app, query, &[caravan, gzip]).await;
    assert_eq!(status, 200);
    assert_eq!(h["x-passerelle-cache"], "hit");
    assert_eq!(h["content-encoding"], "gzip");
    assert!(h["vary"].to_str().unwrap().contains("Accept-Encoding"));
    assert!(gzipped.len() < answer.len() / 2);
    assert_eq!(gunzip(&gzipped), answer);
    let gzip_tag = h["etag"].to_str().unwrap().to_owned();
    assert_ne!(gzip_tag, identity_tag);
    let (status, _, body) =
        get_raw(&app, query, &[caravan, gzip, ("if-none-match", &gzip_tag)]).await;
    assert_eq!((status, body.len()), (304, 0));
    // Clients that do not accept it get the answer as it is, under its own ETag.
    for refusing in [
        vec![caravan],
        vec![caravan, ("accept-encoding", "br, gzip;q=0")],
    ] {
        let (status, h, body) = get_raw(&app, query, &refusing).await;
        assert_eq!(status, 200);
        assert_eq!(h["x-passerelle-cache"], "hit");
        assert!(h.get("content-encoding").is_none());
        assert_eq!(h["etag"].to_str().unwrap(), identity_tag);
        assert_eq!(body, answer);
    }
    // Another partner never gets caravan's compressed entry: its own answer, then its own hit.
    let anvita = (TEST_VIEWER, "partner=anvita; scopes=read");
    let (_, h, own) = get_raw(&app, query, &[anvita, gzip]).await;
    assert!(h.get("x-passerelle-cache").is_none() && h.get("content-encoding").is_none());
    assert_ne!(own, answer);
    let seen = |body: &[u8]| -> usize {
        let v: Value = serde_json::from_slice(body).unwrap();
        v["data"]["actions"]["nodes"].as_array().unwrap().len()
    };
    assert!(
        seen(&own) < seen(&answer),
        "caravan's private actions are not anvita's"
    );
    let (_, h, gzipped) = get_raw(&app, query, &[anvita, gzip]).await;
    assert_eq!(h["content-encoding"], "gzip");
    assert_eq!(gunzip(&gzipped), own);
    // A small answer gains nothing: sent as it is, hit or not.
    for _ in 0..2 {
        let (_, h, body) = get_raw(&app, PARTNERS, &[gzip]).await;
        assert!(h.get("content-encoding").is_none());
        assert!(serde_json::from_slice::<Value>(&body).is_ok());
    }
}

async fn writes_invalidate_the_kinds_they_touch(app: TestApp) {
    // Cached while the database is empty...
    let (hit, empty) = as_viewer(&app, "", PARTNERS).await;
    assert!(!hit);
    assert_eq!(empty["data"]["partners"], json!([]));
    assert!(as_viewer(&app, "", PARTNERS).await.0);
    // ...seeding writes partners: the next answer is fresh.
    app.seed().await;
    let (hit, seeded) = as_viewer(&app, "", PARTNERS).await;
    assert!(!hit);
    assert_eq!(seeded["data"]["partners"].as_array().unwrap().len(), 4);
    // Invalidating actors drops answers holding actors, not the partners list.
    let actors = "{ actors { totalCount } }";
    as_viewer(&app, "", actors).await;
    assert!(as_viewer(&app, "", actors).await.0);
    app.app.response_cache.invalidate([EntityKind::Actor]);
    assert!(!as_viewer(&app, "", actors).await.0);
    assert!(as_viewer(&app, "", PARTNERS).await.0);
    // Seeding again changes nothing and invalidates nothing.
    app.seed().await;
    assert!(as_viewer(&app, "", actors).await.0);
}

/// A mutation makes the cached answers holding what it wrote stale at once, for the writer and
/// for everyone else; retrying it (UNCHANGED) invalidates nothing.
async fn mutations_invalidate_cached_answers(app: TestApp) {
    app.seed().await;
    let writer = "partner=caravan; scopes=read,write";
    let (_, before) = as_viewer(&app, writer, CARAVAN_ACTIONS).await;
    assert!(as_viewer(&app, writer, CARAVAN_ACTIONS).await.0);
    let (_, public_before) = as_viewer(&app, "", CARAVAN_ACTIONS).await;
    assert!(as_viewer(&app, "", CARAVAN_ACTIONS).await.0);
    let put = json!({
        "query": "mutation Put($input: ActionInput!) { upsertAction(input: $input) { effect } }",
        "variables": { "input": {
            "id": "caravan-cache-test-1", "kind": "WORKSHOP", "title": "Atelier cache",
            "visibility": "PUBLIC"
        } }
    });
    let (status, _, body) = app.post_json(&put, &[(TEST_VIEWER, writer)]).await;
    assert_eq!(
        (status, &body["data"]["upsertAction"]["effect"]),
        (200, &json!("CREATED")),
        "{body}"
    );
    let count = |b: &Value| b["data"]["actions"]["totalCount"].as_i64().unwrap();
    let (hit, after) = as_viewer(&app, writer, CARAVAN_ACTIONS).await;
    assert!(!hit, "the writer's cached answer is stale");
    assert_eq!(count(&after), count(&before) + 1);
    let (hit, public_after) = as_viewer(&app, "", CARAVAN_ACTIONS).await;
    assert!(!hit, "so is everyone else's");
    assert_eq!(count(&public_after), count(&public_before) + 1);
    // A retry changes nothing and keeps the cache.
    let (_, _, body) = app.post_json(&put, &[(TEST_VIEWER, writer)]).await;
    assert_eq!(
        body["data"]["upsertAction"]["effect"], "UNCHANGED",
        "{body}"
    );
    assert!(as_viewer(&app, "", CARAVAN_ACTIONS).await.0);
    // Retiring it makes them stale again.
    let retire =
        json!({ "query": "mutation { retireAction(id: \"caravan-cache-test-1\") { effect } }" });
    let (_, _, body) = app.post_json(&retire, &[(TEST_VIEWER, writer)]).await;
    assert_eq!(body["data"]["retireAction"]["effect"], "RETIRED", "{body}");
    let (hit, retired) = as_viewer(&app, "", CARAVAN_ACTIONS).await;
    assert!(!hit);
    assert_eq!(count(&retired), count(&public_before));
}

/// Answers list fields in the order the document asks for them (GraphQL spec, "Serialized Map
/// Ordering"), in single answers and in batches alike.
async fn answers_keep_the_documents_field_order(app: TestApp) {
    app.seed().await;
    let raw = |body: Value| {
        let app = &app;
        async move {
            let res = app
                .http
                .post(app.url("/graphql"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            res.text().await.unwrap()
        }
    };
    let text =
        raw(json!({ "query": "{ partners { slug name } zz: __typename aa: __typename }" })).await;
    assert!(
        text.starts_with(r#"{"data":{"partners":[{"slug":"#),
        "{text}"
    );
    assert!(text.contains(r#""zz":"Query","aa":"Query"}"#), "{text}");
    let text = raw(json!({ "query": "{ partners { name slug } }" })).await;
    assert!(
        text.starts_with(r#"{"data":{"partners":[{"name":"#),
        "{text}"
    );
    let text = raw(json!([
        { "query": "{ b: __typename a: __typename }" },
        { "query": "{ a: __typename b: __typename }" }
    ]))
    .await;
    assert_eq!(
        text,
        r#"[{"data":{"b":"Query","a":"Query"}},{"data":{"a":"Query","b":"Query"}}]"#
    );
}

/// On PostgreSQL, a write made elsewhere (another replica, psql) reaches every replica's response
/// cache within `response_cache_recheck_ms` (default 500), by the feed of data changes; a
/// replica's own writes, which invalidated its cache as they committed, are left out of its feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_elsewhere_reach_every_replicas_cache() {
    let Some(app) = TestApp::spawn(common::Backend::Postgres).await else {
        return;
    };
    app.seed().await;
    let other = app.spawn_beside(|_| {}).await;
    let count = |b: &Value| b["data"]["actions"]["totalCount"].as_i64().unwrap();
    let (_, before) = as_viewer(&other, "", CARAVAN_ACTIONS).await;
    let (hit, _) = as_viewer(&other, "", CARAVAN_ACTIONS).await;
    assert!(hit, "the other replica caches the answer");

    // A mutation on this replica: the other one's cached answer goes within the bound.
    let writer = "partner=caravan; scopes=read,write";
    let put = json!({
        "query": "mutation Put($input: ActionInput!) { upsertAction(input: $input) { effect } }",
        "variables": { "input": {
            "id": "caravan-elsewhere-1", "kind": "WORKSHOP", "title": "Atelier ailleurs",
            "visibility": "PUBLIC"
        } }
    });
    let (status, _, body) = app.post_json(&put, &[(TEST_VIEWER, writer)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["upsertAction"]["effect"], "CREATED", "{body}");
    // This replica's own answer, cached right after its write, is not dropped by its feed.
    let (hit, mine) = as_viewer(&app, "", CARAVAN_ACTIONS).await;
    assert!(!hit);
    assert_eq!(count(&mine), count(&before) + 1);
    let took = common::within(common::RECHECK_BOUND, || async {
        count(&as_viewer(&other, "", CARAVAN_ACTIONS).await.1) == count(&before) + 1
    })
    .await
    .expect("the other replica answers with the new action");
    eprintln!("the other replica saw the mutation after {took:?}");
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(
        as_viewer(&app, "", CARAVAN_ACTIONS).await.0,
        "a replica's own write is not invalidated twice"
    );

    // A write from psql (an untagged connection): both replicas drop what they cached.
    for replica in [&app, &other] {
        as_viewer(replica, "", CARAVAN_ACTIONS).await;
        assert!(as_viewer(replica, "", CARAVAN_ACTIONS).await.0);
    }
    app.write_outside(
        "UPDATE actions SET title = 'Renommé dans psql' WHERE title = 'Atelier ailleurs'",
    )
    .await;
    for replica in [&app, &other] {
        common::within(common::RECHECK_BOUND, || async {
            let (_, body) = as_viewer(replica, "", CARAVAN_ACTIONS).await;
            body["data"]["actions"]["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["title"] == "Renommé dans psql")
        })
        .await
        .expect("every replica answers with psql's title");
    }
    drop(other);
}

/// Waits until `app`'s feed of data changes has been read after `since`.
async fn feed_read_after(app: &TestApp, since: std::time::Instant) {
    common::within(common::RECHECK_BOUND, || async {
        app.app.response_cache.feed_read_since(since)
    })
    .await
    .expect("the feed is read");
}

/// On SQLite, one process serves the file, and another may write into it: `passerelle import`
/// from the command line, or sqlite3. The serving process's cache follows those writes within
/// `response_cache_recheck_ms`, kind by kind.
#[tokio::test]
async fn writes_from_another_process_reach_the_cache_on_sqlite() {
    let app = TestApp::spawn(common::Backend::Sqlite).await.unwrap();
    app.seed().await;
    let titles = |b: &Value| -> Vec<String> {
        b["data"]["actions"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["title"].as_str().unwrap().to_owned())
            .collect()
    };
    for query in [CARAVAN_ACTIONS, PARTNERS] {
        as_viewer(&app, "", query).await;
        assert!(as_viewer(&app, "", query).await.0, "cached: {query}");
    }
    let log = app.app.store.write_log();
    let partners = log.generation(EntityKind::Partner);
    let store = &app.app.store;
    let actions_moved = |since: u64| {
        common::within(common::RECHECK_BOUND, move || async move {
            store.write_log().generation(EntityKind::Action) != since
        })
    };

    // The process's own write invalidates as it commits, once: the feed leaves it out.
    let before = log.generation(EntityKind::Action);
    let put = json!({
        "query": "mutation { upsertAction(input: { id: \"caravan-own-1\", kind: WORKSHOP, title: \"Atelier maison\", visibility: PUBLIC }) { effect } }"
    });
    let writer = "partner=caravan; scopes=read,write";
    let (status, _, body) = app.post_json(&put, &[(TEST_VIEWER, writer)]).await;
    assert_eq!(
        body["data"]["upsertAction"]["effect"], "CREATED",
        "{status} {body}"
    );
    assert_eq!(log.generation(EntityKind::Action), before + 1);
    let written = std::time::Instant::now();
    feed_read_after(&app, written).await;
    assert_eq!(
        log.generation(EntityKind::Action),
        before + 1,
        "the feed leaves the process's own write out"
    );

    // The CLI, in a process of its own, imports an action.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.ndjson");
    std::fs::write(
        &file,
        r#"{"type":"action","id":"caravan-from-cli","kind":"WORKSHOP","title":"Atelier de la ligne de commande","visibility":"PUBLIC"}"#,
    )
    .unwrap();
    let mut import = common::passerelle(&app.database_url);
    import.args(["import", "--partner", "caravan"]).arg(&file);
    let before = log.generation(EntityKind::Action);
    let out = tokio::task::spawn_blocking(move || import.output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // The feed drops the cached answers holding actions, and only those.
    let took = actions_moved(before)
        .await
        .expect("the feed tells the serving process that actions were written");
    eprintln!("the import reached the cache after {took:?}");
    assert_eq!(log.generation(EntityKind::Partner), partners);
    assert!(titles(&as_viewer(&app, "", CARAVAN_ACTIONS).await.1)
        .contains(&"Atelier de la ligne de commande".to_owned()));

    // sqlite3, or any other connection to the file.
    let before = log.generation(EntityKind::Action);
    app.write_outside(
        "UPDATE actions SET title = 'Renommé dans sqlite3' WHERE id = 'caravan-from-cli'",
    )
    .await;
    actions_moved(before)
        .await
        .expect("the feed tells the serving process that actions were written");
    assert!(titles(&as_viewer(&app, "", CARAVAN_ACTIONS).await.1)
        .contains(&"Renommé dans sqlite3".to_owned()));
    assert_eq!(log.generation(EntityKind::Partner), partners);
}

/// Two processes serving one SQLite file: each tells its own writes from the other's, whichever
/// started last (each starting process used to remove the other's own-write counters, and the
/// other then took its own writes for foreign ones).
#[tokio::test]
async fn two_servers_on_one_sqlite_file_keep_their_own_writes_apart() {
    let first = TestApp::spawn(common::Backend::Sqlite).await.unwrap();
    first.seed().await;
    let second = first.spawn_beside(|_| {}).await;
    let started = std::time::Instant::now();
    for app in [&first, &second] {
        feed_read_after(app, started).await;
    }
    let writer = "partner=caravan; scopes=read,write";
    for (n, (app, other)) in [(&first, &second), (&second, &first)]
        .into_iter()
        .enumerate()
    {
        let (own, theirs) = (app.app.store.write_log(), other.app.store.write_log());
        let (before, theirs_before) = (
            own.generation(EntityKind::Action),
            theirs.generation(EntityKind::Action),
        );
        let put = json!({
            "query": format!("mutation {{ upsertAction(input: {{ id: \"caravan-twin-{n}\", kind: WORKSHOP, title: \"Atelier {n}\", visibility: PUBLIC }}) {{ effect }} }}")
        });
        let (status, _, body) = app.post_json(&put, &[(TEST_VIEWER, writer)]).await;
        assert_eq!(
            body["data"]["upsertAction"]["effect"], "CREATED",
            "{status} {body}"
        );
        // The other process learns of it through its feed.
        common::within(common::RECHECK_BOUND, || async {
            theirs.generation(EntityKind::Action) != theirs_before
        })
        .await
        .expect("the other process's feed names actions");
        // The writing process invalidated once, as it committed, and its feed left it out.
        let read = std::time::Instant::now();
        feed_read_after(app, read).await;
        assert_eq!(
            own.generation(EntityKind::Action),
            before + 1,
            "process {n} took its own write for another's"
        );
    }

    // A gone process's counters (silent for long) go when a feed connects; live ones stay.
    first
        .write_outside(
            "INSERT INTO own_data_changes (writer, kind, n, seen_at) VALUES ('dead', 'actions', 5, 0)",
        )
        .await;
    let third = first.spawn_beside(|_| {}).await;
    let started = std::time::Instant::now();
    feed_read_after(&third, started).await;
    let path = first
        .database_url
        .trim_start_matches("sqlite://")
        .to_owned();
    let writers = tokio::task::spawn_blocking(move || {
        use diesel::{Connection, RunQueryDsl};
        #[derive(diesel::QueryableByName)]
        struct Writer {
            #[diesel(sql_type = diesel::sql_types::Text)]
            writer: String,
        }
        let mut c = diesel::SqliteConnection::establish(&path).unwrap();
        diesel::sql_query("SELECT DISTINCT writer FROM own_data_changes")
            .load::<Writer>(&mut c)
            .unwrap()
            .into_iter()
            .map(|w| w.writer)
            .collect::<std::collections::BTreeSet<_>>()
    })
    .await
    .unwrap();
    let live: std::collections::BTreeSet<String> = [&first, &second, &third]
        .iter()
        .map(|a| a.app.store.writer_tag().to_owned())
        .collect();
    assert_eq!(writers, live);
}

backend_tests!(
    answers_keep_the_documents_field_order,
    content_negotiation_and_status_codes,
    get_runs_queries_only,
    get_answers_are_cacheable_by_visibility_with_etags,
    cached_answers_never_cross_visibility,
    cache_hits_are_sent_gzipped_to_clients_that_accept_it,
    writes_invalidate_the_kinds_they_touch,
    mutations_invalidate_cached_answers,
);
