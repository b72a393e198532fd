//! Pull connectors against a real partner API on loopback, with its own OAuth2 token endpoint,
//! on both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Json;
use common::{partner, within, Backend, TestApp};
use passerelle::config::{ConnectorConfig, ConnectorKind, Secret};
use passerelle::connectors::{self, HttpConnector};
use serde_json::{json, Value};
use std::time::Duration;

/// The partner's API: records served in pages from an index cursor, behind bearer tokens.
#[derive(Default)]
struct Api {
    records: Vec<Value>,
    tokens_issued: usize,
    valid_token: Option<String>,
    /// Answer 503 to the next N page requests.
    fail_next: usize,
    /// Answer 503 to every request for pages at or after this index.
    broken_from: Option<usize>,
    /// The `after` of every page request.
    requests: Vec<Option<String>>,
    /// How long each page request takes.
    delay_ms: u64,
}

type Shared = Arc<Mutex<Api>>;

async fn token(State(api): State<Shared>, headers: HeaderMap, body: String) -> impl IntoResponse {
    use base64::Engine;
    let mut api = api.lock().unwrap();
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("passerelle:s3cret")
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "invalid_client" })),
        );
    }
    if !body.contains("grant_type=client_credentials") || !body.contains("scope=records%3Aread") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "unsupported_grant_type" })),
        );
    }
    api.tokens_issued += 1;
    let token = format!("tok-{}", api.tokens_issued);
    api.valid_token = Some(token.clone());
    (
        StatusCode::OK,
        Json(json!({ "access_token": token, "token_type": "bearer", "expires_in": 3600 })),
    )
}

async fn serve_records(
    State(api): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let delay = api.lock().unwrap().delay_ms;
    tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    page_for(&api, &headers, &q)
}

fn page_for(
    api: &Shared,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> (StatusCode, Json<Value>) {
    let mut api = api.lock().unwrap();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    if bearer.is_none() || bearer != api.valid_token {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "invalid_token" })),
        );
    }
    api.requests.push(q.get("after").cloned());
    let after: usize = q.get("after").map(|a| a.parse().unwrap()).unwrap_or(0);
    let limit: usize = q["limit"].parse().unwrap();
    if api.fail_next > 0 {
        api.fail_next -= 1;
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({})));
    }
    if api.broken_from.is_some_and(|b| after >= b) {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({})));
    }
    let end = (after + limit).min(api.records.len());
    let page: Vec<Value> = api.records[after.min(end)..end].to_vec();
    (
        StatusCode::OK,
        Json(
            json!({ "records": page, "cursor": end.to_string(), "has_more": end < api.records.len() }),
        ),
    )
}

/// The same records through a GraphQL endpoint (answering Passerelle's default query).
async fn serve_graphql(
    State(api): State<Shared>,
    headers: HeaderMap,
    Json(request): Json<Value>,
) -> impl IntoResponse {
    assert!(request["query"]
        .as_str()
        .unwrap()
        .contains("passerelleRecords"));
    let mut q = HashMap::new();
    if let Some(after) = request["variables"]["after"].as_str() {
        q.insert("after".to_owned(), after.to_owned());
    }
    q.insert(
        "limit".to_owned(),
        request["variables"]["first"].to_string(),
    );
    let (status, Json(page)) = page_for(&api, &headers, &q);
    let body = if status == StatusCode::OK {
        json!({ "data": { "passerelleRecords": {
            "records": page["records"], "cursor": page["cursor"], "hasMore": page["has_more"] } } })
    } else {
        page
    };
    (status, Json(body))
}

async fn spawn_api(records: Vec<Value>) -> (Shared, String) {
    let api: Shared = Arc::new(Mutex::new(Api {
        records,
        ..Api::default()
    }));
    let router = axum::Router::new()
        .route("/oauth/token", post(token))
        .route("/v1/records", get(serve_records))
        .route("/graphql", post(serve_graphql))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (api, format!("http://{addr}"))
}

fn actor(i: usize) -> Value {
    json!({ "type": "actor", "id": format!("anvita-remote-{i}"), "kind": "ASSOCIATION",
            "name": format!("Association distante {i}"), "visibility": "PUBLIC" })
}

fn config(base: &str) -> ConnectorConfig {
    ConnectorConfig {
        partner: "anvita".into(),
        kind: ConnectorKind::Rest,
        base_url: format!("{base}/v1/records").parse().unwrap(),
        token_url: format!("{base}/oauth/token").parse().unwrap(),
        client_id: "passerelle".into(),
        client_secret: Secret("s3cret".into()),
        graphql_query: None,
        scopes: vec!["records:read".into()],
        page_size: 3,
        interval_secs: 0,
        lease_secs: 300,
        max_attempts: 3,
        backoff_ms: 10,
        timeout_secs: 5,
    }
}

async fn remote_actors(app: &TestApp) -> i64 {
    let body = app
        .execute_as(
            &partner("anvita", &["read"]),
            r#"{ actors(filter: { text: "Association distante" }) { totalCount } }"#,
            json!({}),
        )
        .await;
    body["data"]["actors"]["totalCount"].as_i64().unwrap()
}

async fn a_pass_pulls_every_page_then_only_what_is_new(app: TestApp) {
    app.seed().await;
    let (api, base) = spawn_api((0..7).map(actor).collect()).await;
    let connector = HttpConnector::new(config(&base)).unwrap();
    let report = connectors::sync_once(&app.app.store, &connector)
        .await
        .map_err(|e| e.message())
        .unwrap();
    assert_eq!((report.pages, report.created), (3, 7), "{report:?}");
    assert_eq!(remote_actors(&app).await, 7);
    {
        let api = api.lock().unwrap();
        assert_eq!(api.tokens_issued, 1, "one token for every page");
        assert_eq!(
            api.requests,
            [None, Some("3".to_owned()), Some("6".to_owned())]
        );
    }
    // The next pass starts from the stored cursor and finds nothing new.
    let report = connectors::sync_once(&app.app.store, &connector)
        .await
        .map_err(|e| e.message())
        .unwrap();
    assert_eq!((report.records, report.created), (0, 0), "{report:?}");
    // New records upstream: only they are read.
    api.lock().unwrap().records.extend((7..9).map(actor));
    let report = connectors::sync_once(&app.app.store, &connector)
        .await
        .map_err(|e| e.message())
        .unwrap();
    assert_eq!((report.records, report.created), (2, 2), "{report:?}");
    assert_eq!(remote_actors(&app).await, 9);
    {
        let api = api.lock().unwrap();
        assert_eq!(api.tokens_issued, 1, "the token is cached across passes");
        assert_eq!(api.requests.last().unwrap().as_deref(), Some("7"));
    }
    // Provenance names the sync.
    let data = app
        .data(
            r#"{ actors(filter: { text: "Association distante 8" }) { nodes { owner { slug } provenance { source } } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        data["actors"]["nodes"][0]["provenance"]["source"],
        "sync:anvita"
    );
    assert_eq!(data["actors"]["nodes"][0]["owner"]["slug"], "anvita");
}

async fn transient_failures_are_retried_and_expired_tokens_renewed(app: TestApp) {
    app.seed().await;
    let (api, base) = spawn_api((0..4).map(actor).collect()).await;
    api.lock().unwrap().fail_next = 2;
    let connector = HttpConnector::new(config(&base)).unwrap();
    let report = connectors::sync_once(&app.app.store, &connector)
        .await
        .map_err(|e| e.message())
        .unwrap();
    assert_eq!(report.created, 4, "{report:?}");
    // The partner revokes the token: the next pass gets a new one and carries on.
    api.lock().unwrap().valid_token = Some("revoked-elsewhere".into());
    api.lock().unwrap().records.push(actor(4));
    let report = connectors::sync_once(&app.app.store, &connector)
        .await
        .map_err(|e| e.message())
        .unwrap();
    assert_eq!(report.created, 1, "{report:?}");
    assert_eq!(api.lock().unwrap().tokens_issued, 2);
}

async fn a_graphql_source_is_read_the_same_way(app: TestApp) {
    app.seed().await;
    let (api, base) = spawn_api((0..5).map(actor).collect()).await;
    let mut settings = config(&base);
    settings.kind = ConnectorKind::Graphql;
    settings.base_url = format!("{base}/graphql").parse().unwrap();
    let connector = HttpConnector::new(settings).unwrap();
    let report = connectors::sync_once(&app.app.store, &connector)
        .await
        .map_err(|e| e.message())
        .unwrap();
    assert_eq!((report.pages, report.created), (2, 5), "{report:?}");
    assert_eq!(api.lock().unwrap().requests, [None, Some("3".to_owned())]);
    assert_eq!(remote_actors(&app).await, 5);
}

async fn a_restart_mid_pass_loses_nothing_and_duplicates_nothing(app: TestApp) {
    app.seed().await;
    let (api, base) = spawn_api((0..7).map(actor).collect()).await;
    // The API breaks after the first page, for longer than the retries.
    api.lock().unwrap().broken_from = Some(3);
    let connector = HttpConnector::new(config(&base)).unwrap();
    let failed = connectors::sync_once(&app.app.store, &connector).await;
    assert_eq!(failed.unwrap_err().code(), "SERVICE_UNAVAILABLE");
    assert_eq!(remote_actors(&app).await, 3, "the first page is committed");
    // A new process (fresh connector, fresh token cache) on the same database resumes.
    drop(connector);
    api.lock().unwrap().broken_from = None;
    api.lock().unwrap().requests.clear();
    let restarted = HttpConnector::new(config(&base)).unwrap();
    let report = connectors::sync_once(&app.app.store, &restarted)
        .await
        .map_err(|e| e.message())
        .unwrap();
    assert_eq!((report.records, report.created), (4, 4), "{report:?}");
    assert_eq!(api.lock().unwrap().requests[0].as_deref(), Some("3"));
    assert_eq!(remote_actors(&app).await, 7);
}

async fn a_bad_page_is_refused_whole_with_its_paths(app: TestApp) {
    app.seed().await;
    let mut records: Vec<Value> = (0..2).map(actor).collect();
    records.push(json!({ "type": "actor", "id": "anvita-remote-x", "kind": "ALIEN", "name": "" }));
    let (_api, base) = spawn_api(records).await;
    let connector = HttpConnector::new(config(&base)).unwrap();
    match connectors::sync_once(&app.app.store, &connector).await {
        Err(passerelle::error::Error::Invalid(fields)) => {
            assert_eq!(fields[0].field, "records[2].kind", "{fields:?}");
        }
        other => panic!(
            "expected BAD_USER_INPUT, got {:?}",
            other.map_err(|e| e.code())
        ),
    }
    assert_eq!(remote_actors(&app).await, 0);
}

async fn the_cli_runs_one_pass_from_the_configuration(app: TestApp) {
    app.seed().await;
    let (api, base) = spawn_api((0..5).map(actor).collect()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passerelle.toml");
    std::fs::write(
        &file,
        format!(
            r#"
database_url = "{db}"
log_level = "warn"

[[connectors]]
partner = "anvita"
kind = "rest"
base_url = "{base}/v1/records"
token_url = "{base}/oauth/token"
client_id = "passerelle"
client_secret = "s3cret"
scopes = ["records:read"]
page_size = 2
backoff_ms = 10
"#,
            db = app.database_url
        ),
    )
    .unwrap();
    let run = || {
        let file = file.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_passerelle"))
                    .arg("--config")
                    .arg(&file)
                    .args(["sync", "anvita"])
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let out = run().await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("synced anvita: 3 pages, 5 records (5 created"),
        "{stdout}"
    );
    let again = run().await;
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(stdout.contains("0 records"), "{stdout}");
    assert_eq!(
        api.lock().unwrap().tokens_issued,
        2,
        "one token per process"
    );
    assert_eq!(remote_actors(&app).await, 5);
}

fn scheduled(base: &str) -> ConnectorConfig {
    ConnectorConfig {
        interval_secs: 1,
        ..config(base)
    }
}

async fn serve_runs_scheduled_connectors_without_sync(backend: Backend) {
    let (api, base) = spawn_api((0..7).map(actor).collect()).await;
    // The partner must exist before the connector can write for it.
    let Some(mut seeded) = TestApp::spawn(backend).await else {
        return;
    };
    seeded.seed().await;
    let mut app = seeded
        .spawn_beside(|c| c.connectors = vec![scheduled(&base)])
        .await;
    let ran = within(Duration::from_secs(20), async || {
        remote_actors(&app).await == 7
    })
    .await;
    assert!(
        ran.is_some(),
        "the scheduled pass did not run: {:?}",
        api.lock().unwrap().requests
    );
    // New records upstream arrive at a later tick, from the stored cursor.
    api.lock().unwrap().records.extend((7..9).map(actor));
    let arrived = within(Duration::from_secs(20), async || {
        remote_actors(&app).await == 9
    });
    assert!(arrived.await.is_some());
    // A pass commits its records before it counts them in the metrics, so wait for those too.
    let mut metrics = String::new();
    let counted = within(Duration::from_secs(10), async || {
        metrics = app.metrics().await;
        metrics
            .contains(r#"passerelle_connector_records_total{partner="anvita",effect="created"} 9"#)
    });
    assert!(counted.await.is_some(), "{metrics}");
    assert!(
        metrics.contains(r#"passerelle_connector_passes_total{partner="anvita",outcome="ok"}"#),
        "{metrics}"
    );
    // Shutdown stops the scheduler promptly and leaves no lease behind.
    tokio::time::timeout(std::time::Duration::from_secs(10), app.stop())
        .await
        .expect("the scheduler stops on shutdown");
    let before = api.lock().unwrap().requests.len();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        api.lock().unwrap().requests.len(),
        before,
        "no pass after shutdown"
    );
    let lease = seeded
        .app
        .store
        .run(|c| connectors::lease::holder(c, "anvita"))
        .await
        .map_err(|e| e.message())
        .unwrap();
    assert_eq!(lease, None);
    drop(app);
    seeded.stop().await;
}

async fn replicas_on_one_database_never_fetch_the_same_page(backend: Backend) {
    let (api, base) = spawn_api((0..12).map(actor).collect()).await;
    // A slow partner: a pass (4 pages) outlasts the 1 s interval, so the replicas' ticks
    // overlap with each other's passes.
    api.lock().unwrap().delay_ms = 500;
    let Some(mut seeded) = TestApp::spawn(backend).await else {
        return;
    };
    seeded.seed().await;
    let mut one = seeded
        .spawn_beside(|c| c.connectors = vec![scheduled(&base)])
        .await;
    let mut two = seeded
        .spawn_beside(|c| c.connectors = vec![scheduled(&base)])
        .await;
    let pulled = within(Duration::from_secs(30), async || {
        remote_actors(&one).await == 12
    });
    assert!(pulled.await.is_some());
    // A few more ticks on both.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    one.stop().await;
    two.stop().await;
    let requests = api.lock().unwrap().requests.clone();
    // Every page but the last position was fetched exactly once; later passes resume at "12".
    let mut pages: Vec<&Option<String>> = requests
        .iter()
        .filter(|r| r.as_deref() != Some("12"))
        .collect();
    assert_eq!(pages.len(), 4, "{requests:?}");
    pages.dedup();
    assert_eq!(pages.len(), 4, "a page was fetched twice: {requests:?}");
    let busy: u64 = [&one, &two]
        .iter()
        .flat_map(|a| a.app.sync_stats.snapshot().into_values())
        .map(|s| s.busy)
        .sum();
    assert!(busy > 0, "the replicas never met at the lease");
    drop((one, two));
    seeded.stop().await;
}

async fn a_lease_is_held_by_one_replica_until_it_expires(app: TestApp) {
    use connectors::lease;
    app.app
        .store
        .run(|c| {
            let t = 1_000_000;
            assert!(lease::acquire(c, "anvita", "a", t, 5_000)?);
            assert!(!lease::acquire(c, "anvita", "b", t + 1, 5_000)?);
            assert!(
                lease::acquire(c, "anvita", "a", t + 2, 5_000)?,
                "its own lease"
            );
            assert!(lease::renew(c, "anvita", "a", t + 3, 5_000)?);
            assert!(!lease::renew(c, "anvita", "b", t + 3, 5_000)?);
            // Expired: another replica takes it, and the first can no longer renew.
            assert!(lease::acquire(c, "anvita", "b", t + 6_000, 5_000)?);
            assert!(!lease::renew(c, "anvita", "a", t + 6_001, 5_000)?);
            assert_eq!(lease::holder(c, "anvita")?, Some(("b".into(), t + 11_000)));
            // Released only by its holder.
            lease::release(c, "anvita", "a")?;
            assert!(lease::holder(c, "anvita")?.is_some());
            lease::release(c, "anvita", "b")?;
            assert!(lease::acquire(c, "anvita", "a", t + 6_002, 5_000)?);
            Ok(())
        })
        .await
        .map_err(|e| e.message())
        .unwrap();
}

#[test]
fn connector_settings_are_typed_and_secrets_stay_out_of_logs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    let one = r#"
[[connectors]]
partner = "anvita"
base_url = "https://api.example.org/records"
token_url = "https://api.example.org/token"
client_id = "id"
client_secret = "hunter2"
"#;
    std::fs::write(&file, one).unwrap();
    let config = passerelle::config::Config::load(Some(&file), std::iter::empty()).unwrap();
    let c = &config.connectors[0];
    assert_eq!(
        (c.kind, c.page_size, c.interval_secs),
        (ConnectorKind::Rest, 100, 0)
    );
    assert!(!format!("{config:?}").contains("hunter2"));
    // Two connectors for one partner, or an unknown key, are refused.
    std::fs::write(&file, format!("{one}{one}")).unwrap();
    let e = passerelle::config::Config::load(Some(&file), std::iter::empty()).unwrap_err();
    assert!(e.to_string().contains("two connectors"), "{e}");
    std::fs::write(&file, format!("{one}colour = \"red\"\n")).unwrap();
    assert!(passerelle::config::Config::load(Some(&file), std::iter::empty()).is_err());
}

backend_tests!(
    a_graphql_source_is_read_the_same_way,
    the_cli_runs_one_pass_from_the_configuration,
    a_pass_pulls_every_page_then_only_what_is_new,
    transient_failures_are_retried_and_expired_tokens_renewed,
    a_restart_mid_pass_loses_nothing_and_duplicates_nothing,
    a_bad_page_is_refused_whole_with_its_paths,
    a_lease_is_held_by_one_replica_until_it_expires,
);

per_backend!(
    serve_runs_scheduled_connectors_without_sync,
    replicas_on_one_database_never_fetch_the_same_page,
);
