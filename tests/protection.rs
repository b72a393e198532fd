//! The gateway protects itself: limits refused before execution with their own codes, rate
//! limits, CSRF prevention, introspection by scope, CORS by allow-list, execution timeout. On
//! both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{error_code, serve, Backend, TestApp, TestDb, GQL_ACCEPT, TEST_VIEWER};
use passerelle::config::{Bucket, Config};
use serde_json::{json, Value};

async fn spawn(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Option<TestApp> {
    let app = TestApp::spawn_with(backend, adjust).await?;
    app.seed().await;
    Some(app)
}

/// POSTs `query` asking for GraphQL-over-HTTP responses; returns status and body.
async fn ask(app: &TestApp, query: &str) -> (u16, Value) {
    let (status, _, body) = app
        .post_json(&json!({ "query": query }), &[GQL_ACCEPT])
        .await;
    (status, body)
}

const DEEP: &str = "{ actions(first: 1) { nodes { outcomes { indicator } } } }";

async fn limits_are_refused_with_their_own_codes(backend: Backend) {
    let Some(app) = spawn(backend, |c| {
        c.max_query_depth = 3;
        c.max_query_complexity = 300;
        c.max_query_aliases = 2;
        c.max_query_tokens = 30;
    })
    .await
    else {
        return;
    };
    // Within every limit: runs.
    let (status, body) = ask(&app, "{ partners { slug } }").await;
    assert_eq!(status, 200, "{body}");
    let cases = [
        (DEEP, "QUERY_TOO_DEEP"),
        (
            "{ actions(first: 100) { nodes { title summary status startsOn } } }",
            "QUERY_TOO_COMPLEX",
        ),
        ("{ a: partners { slug } b: partners { slug } c: partners { slug } }", "TOO_MANY_ALIASES"),
        (
            "{ partners { slug name slug name slug name slug name slug name slug name slug name slug name slug name slug name slug name slug name slug name } }",
            "TOO_MANY_TOKENS",
        ),
    ];
    for (query, code) in cases {
        let (status, body) = ask(&app, query).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (400, code),
            "{query}: {body}"
        );
        assert!(
            body.get("data").is_none(),
            "refused before execution: {body}"
        );
        // Legacy clients get the same code with a 200.
        let body = app.graphql(query, json!({})).await;
        assert_eq!(error_code(&body), code);
    }
}

/// `passerelle_document_cache_misses_total` from `/metrics`.
async fn document_cache_misses(app: &TestApp) -> u64 {
    let metrics = app.metrics().await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("passerelle_document_cache_misses_total "))
        .unwrap_or_else(|| panic!("no document cache metric in {metrics}"))
        .parse()
        .unwrap()
}

/// A document sent again is not parsed again, but every request is still checked against its
/// own caller, and a refused document is refused every time.
async fn documents_are_parsed_once_and_checked_per_request(backend: Backend) {
    let Some(app) = spawn(backend, |c| {
        c.max_query_tokens = 30;
        // Otherwise repeated queries are answered from it, before their document is looked at.
        c.response_cache_entries = 0;
    })
    .await
    else {
        return;
    };
    let query = "{ partners { slug } }";
    let before = document_cache_misses(&app).await;
    let first = ask(&app, query).await;
    assert_eq!(first.0, 200, "{}", first.1);
    for _ in 0..3 {
        assert_eq!(ask(&app, query).await, first);
    }
    assert_eq!(document_cache_misses(&app).await, before + 1);
    // Another operation name is another entry: the checks depend on which operation runs.
    let named = "query A { partners { slug } } query B { __typename }";
    for op in ["A", "B", "A"] {
        let (status, _, body) = app
            .post_json(
                &json!({ "query": named, "operationName": op }),
                &[GQL_ACCEPT],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"].get("partners").is_some(), op == "A", "{body}");
    }
    assert_eq!(document_cache_misses(&app).await, before + 3);
    // Refused documents are not kept: each is counted (and refused) again.
    let long = "{ partners { slug name slug name slug name slug name slug name slug name slug name slug name slug name slug name slug name slug name slug name slug name slug name } }";
    for _ in 0..2 {
        let (status, body) = ask(&app, long).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (400, "TOO_MANY_TOKENS")
        );
    }
    assert_eq!(document_cache_misses(&app).await, before + 5);
    // A cached introspection document is still refused to a caller without the scope.
    let (status, _, _) = app
        .post_json(
            &json!({ "query": INTROSPECTION_SHORT }),
            &[(TEST_VIEWER, "partner=caravan; scopes=read,introspect")],
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = ask(&app, INTROSPECTION_SHORT).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (403, "INTROSPECTION_DISABLED")
    );
    assert_eq!(document_cache_misses(&app).await, before + 6);
}

/// Introspection within 30 tokens.
const INTROSPECTION_SHORT: &str = "{ __schema { queryType { name } } }";

async fn batches_are_limited(backend: Backend) {
    let Some(app) = spawn(backend, |c| c.max_batch_size = 2).await else {
        return;
    };
    let op = json!({ "query": "{ partners { slug } }" });
    let (status, _, body) = app.post_json(&json!([op, op]), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 2);
    assert_eq!(body[1]["data"]["partners"].as_array().unwrap().len(), 4);
    let (status, _, body) = app.post_json(&json!([op, op, op]), &[]).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "BATCH_TOO_LARGE"),
        "{body}"
    );
}

async fn callers_are_rate_limited_per_partner(backend: Backend) {
    let slow = Bucket {
        per_second: 0.1,
        burst: 2,
    };
    let Some(app) = spawn(backend, |c| {
        c.rate_limit.anonymous = slow;
        c.rate_limit.partners.insert("caravan".into(), slow);
    })
    .await
    else {
        return;
    };
    let q = json!({ "query": "{ partners { slug } }" });
    let caravan = [(TEST_VIEWER, "partner=caravan")];
    for _ in 0..2 {
        let (status, _, _) = app.post_json(&q, &caravan).await;
        assert_eq!(status, 200);
    }
    let (status, headers, body) = app.post_json(&q, &caravan).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (429, "RATE_LIMITED"),
        "{body}"
    );
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry), "{retry}");
    // Another partner has its own (default) bucket; anonymous callers share theirs.
    let (status, _, _) = app.post_json(&q, &[(TEST_VIEWER, "partner=anvita")]).await;
    assert_eq!(status, 200);
    for _ in 0..2 {
        assert_eq!(app.post_json(&q, &[]).await.0, 200);
    }
    assert_eq!(app.post_json(&q, &[]).await.0, 429);
}

/// Token requests with `creds` by HTTP Basic: status, `Retry-After`, OAuth error code.
async fn token_request(app: &TestApp, id: &str, secret: &str) -> (u16, Option<u64>, String) {
    let res = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let body: Value = res.json().await.unwrap();
    let error = body["error"].as_str().unwrap_or_default().to_owned();
    (status, retry, error)
}

async fn wrong_secrets_lock_a_client_id_out(backend: Backend) {
    let Some(app) = spawn(backend, |c| {
        c.rate_limit.client_auth_failures = Bucket {
            per_second: 0.05,
            burst: 3,
        };
    })
    .await
    else {
        return;
    };
    let target = app.client("anvita", "read").await;
    let other = app.client("caravan", "read").await;
    // Successes give their token back: more token requests than the burst all succeed.
    for _ in 0..5 {
        assert_eq!(token_request(&app, &other.id, &other.secret).await.0, 200);
    }
    for _ in 0..3 {
        let (status, retry, error) = token_request(&app, &target.id, "not-the-secret").await;
        assert_eq!(
            (status, retry, error.as_str()),
            (401, None, "invalid_client")
        );
    }
    // Used up: refused before the secret is checked, the right one included.
    let (status, retry, error) = token_request(&app, &target.id, &target.secret).await;
    assert_eq!((status, error.as_str()), (429, "temporarily_unavailable"));
    assert!(retry.is_some_and(|s| (1..=20).contains(&s)), "{retry:?}");
    // The other OAuth endpoints authenticate clients the same way.
    let res = app
        .http
        .post(app.url("/oauth/introspect"))
        .basic_auth(&target.id, Some(&target.secret))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    // A real OAuth2 client reads the refusal as an OAuth2 error.
    let client = oauth2::basic::BasicClient::new(oauth2::ClientId::new(target.id.clone()))
        .set_client_secret(oauth2::ClientSecret::new(target.secret.clone()))
        .set_token_uri(oauth2::TokenUrl::new(app.url("/oauth/token")).unwrap());
    let http = oauth2::reqwest::ClientBuilder::new().build().unwrap();
    match client
        .exchange_client_credentials()
        .request_async(&http)
        .await
    {
        Err(oauth2::RequestTokenError::ServerResponse(e)) => {
            assert_eq!(e.error().to_string(), "temporarily_unavailable", "{e:?}")
        }
        other => panic!("expected an OAuth2 error response, got {other:?}"),
    }
    // Another client id is not locked out, and an unknown id is treated as a known one.
    assert_eq!(token_request(&app, &other.id, &other.secret).await.0, 200);
    for _ in 0..3 {
        assert_eq!(
            token_request(&app, "pc_nobody", "not-the-secret").await.0,
            401
        );
    }
    assert_eq!(
        token_request(&app, "pc_nobody", "not-the-secret").await.0,
        429
    );
}

async fn csrf_needs_a_preflight_header(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else {
        return;
    };
    let q = [("query", "{ partners { slug } }")];
    let (status, _, body) = app.get_graphql(&q, &[]).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "CSRF_PREFLIGHT_REQUIRED")
    );
    for header in ["apollo-require-preflight", "x-apollo-operation-name"] {
        let (status, _, body) = app.get_graphql(&q, &[(header, "x")]).await;
        assert_eq!(status, 200, "{header}: {body}");
    }
    // A simple-form POST is refused too; with the header it reaches media type checks.
    let post = |headers: Vec<(&'static str, &'static str)>| {
        let mut req = app
            .http
            .post(app.url("/graphql"))
            .header("content-type", "text/plain")
            .body(r#"{"query":"{ partners { slug } }"}"#);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    let res = post(vec![]).await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        error_code(&res.json().await.unwrap()),
        "CSRF_PREFLIGHT_REQUIRED"
    );
    let res = post(vec![("apollo-require-preflight", "true")])
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    assert_eq!(
        error_code(&res.json().await.unwrap()),
        "UNSUPPORTED_MEDIA_TYPE"
    );
}

const INTROSPECTION: &str = "{ __schema { queryType { name } } }";

async fn introspection_needs_a_scope(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else {
        return;
    };
    let (status, body) = ask(&app, INTROSPECTION).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (403, "INTROSPECTION_DISABLED")
    );
    let (status, body) = ask(&app, "{ __type(name: \"Actor\") { name } }").await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (403, "INTROSPECTION_DISABLED")
    );
    // __typename is not introspection.
    assert_eq!(ask(&app, "{ __typename }").await.0, 200);
    let (status, _, body) = app
        .post_json(
            &json!({ "query": INTROSPECTION }),
            &[(TEST_VIEWER, "partner=caravan; scopes=read,introspect")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");
    let (_, _, body) = app
        .post_json(
            &json!({ "query": INTROSPECTION }),
            &[(TEST_VIEWER, "scopes=read")],
        )
        .await;
    assert_eq!(error_code(&body), "INTROSPECTION_DISABLED");
}

async fn public_introspection_opens_it_to_all(backend: Backend) {
    let Some(app) = spawn(backend, |c| c.public_introspection = true).await else {
        return;
    };
    let (status, body) = ask(&app, INTROSPECTION).await;
    assert_eq!(status, 200, "{body}");
}

async fn cors_answers_listed_origins_only(backend: Backend) {
    let Some(app) = spawn(backend, |c| {
        c.cors_allowed_origins = vec!["https://app.example.org".into()]
    })
    .await
    else {
        return;
    };
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let ok = preflight("https://app.example.org").await.unwrap();
    assert!(ok.status().is_success());
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example.org"
    );
    assert_eq!(ok.headers()["access-control-allow-credentials"], "true");
    let evil = preflight("https://evil.example.com").await.unwrap();
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    // On the actual request too.
    let (_, headers, _) = app
        .post_json(
            &json!({ "query": "{ partners { slug } }" }),
            &[("origin", "https://evil.example.com")],
        )
        .await;
    assert!(headers.get("access-control-allow-origin").is_none());
}

async fn long_operations_time_out(backend: Backend) {
    let Some(app) = spawn(backend, |c| c.execution_timeout_ms = 1).await else {
        return;
    };
    // Several rounds of loaders, each a trip to the blocking pool and the database.
    let heavy = "{ actions(first: 50) { nodes { title outcomes { indicator } partners { actor { name partnerships { name } } } subActions { title outcomes { indicator } } owner { name } } } }";
    let (status, body) = ask(&app, heavy).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (504, "TIMEOUT"),
        "{body}"
    );
}

async fn overload_is_shed_with_503_not_queued(backend: Backend) {
    let Some(app) = spawn(backend, |c| {
        c.max_concurrent_requests = 1;
        c.queue_timeout_ms = 100;
    })
    .await
    else {
        return;
    };
    // A request being handled holds the only slot. (A client sending its body slowly no longer
    // does: bodies are read before admission, tests/resilience.rs.)
    let busy = app.app.admission.enter().await.ok();
    assert!(busy.is_some());

    // The next request waits queue_timeout_ms for a slot, then is shed with a GraphQL error.
    let started = std::time::Instant::now();
    let res = app
        .http
        .post(app.url("/graphql"))
        .header("accept", "application/graphql-response+json")
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    let shed: Value = res.json().await.unwrap();
    assert_eq!(error_code(&shed), "OVERLOADED", "{shed}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(100));
    // The other heavy routes are shed the same way, with a plain error body.
    let res = app
        .http
        .get(app.url("/export/actions"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let shed: Value = res.json().await.unwrap();
    assert_eq!(shed["code"], "OVERLOADED", "{shed}");
    // So are the OAuth endpoints, each of which checks a client secret (Argon2id): a flood of
    // token requests cannot take more than the server's request slots.
    for path in ["/oauth/token", "/oauth/introspect", "/oauth/revoke"] {
        let res = app
            .http
            .post(app.url(path))
            .basic_auth("some-client", Some("wrong"))
            .form(&[("grant_type", "client_credentials"), ("token", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 503, "{path}");
        let shed: Value = res.json().await.unwrap();
        assert_eq!(shed["code"], "OVERLOADED", "{path}: {shed}");
    }
    // Light routes are never shed: health checks and metrics still answer.
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("passerelle_requests_shed_total 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("passerelle_requests_in_flight 1"),
        "{metrics}"
    );

    // Once that request is done, the slot is free again.
    drop(busy);
    let (status, body) = ask(&app, "{ __typename }").await;
    assert_eq!(
        (status, &body["data"]["__typename"]),
        (200, &json!("Query")),
        "{body}"
    );
}

per_backend!(
    limits_are_refused_with_their_own_codes,
    documents_are_parsed_once_and_checked_per_request,
    batches_are_limited,
    callers_are_rate_limited_per_partner,
    wrong_secrets_lock_a_client_id_out,
    csrf_needs_a_preflight_header,
    introspection_needs_a_scope,
    public_introspection_opens_it_to_all,
    cors_answers_listed_origins_only,
    long_operations_time_out,
    overload_is_shed_with_503_not_queued,
);

/// `serve --demo` is for trying Passerelle out: GraphiQL (introspection) works for anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_demo_opens_introspection() {
    let (_db, url) = TestDb::create(Backend::Sqlite).unwrap();
    let ask = |server: String| async move {
        let body: Value = reqwest::Client::new()
            .post(server)
            .json(&json!({ "query": INTROSPECTION }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body
    };
    let demo = serve(&url, &["--demo"]);
    let body = ask(demo.url.clone()).await;
    assert_eq!(
        body["data"]["__schema"]["queryType"]["name"], "Query",
        "{body}"
    );
    drop(demo);
    let plain = serve(&url, &[]);
    assert_eq!(
        error_code(&ask(plain.url.clone()).await),
        "INTROSPECTION_DISABLED"
    );
}

/// PostgreSQL closes every connection of the app (as a restart does): the next requests are
/// answered, an authenticated one (audited on a connection of its own) included, because a
/// connection the server closed is replaced before use rather than failing the request that
/// draws it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_closed_by_the_server_are_replaced() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    app.seed().await;
    let token = app.token("caravan", "read").await;
    let query = "{ actions(first: 5) { nodes { title } } }";
    // Several requests at once, so the pool holds several connections.
    let answered = || async {
        let (a, b, c, d) = tokio::join!(
            app.graphql_as(&token, query, json!({})),
            app.graphql_as(&token, query, json!({})),
            app.graphql_as(&token, query, json!({})),
            app.graphql_as(&token, query, json!({})),
        );
        [a, b, c, d]
    };
    for body in answered().await {
        assert!(body["data"]["actions"]["nodes"].is_array(), "{body}");
    }
    let url = app.database_url.clone();
    let closed: i64 = tokio::task::spawn_blocking(move || {
        use diesel::{Connection, QueryableByName, RunQueryDsl};
        #[derive(QueryableByName)]
        struct Closed {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut c = diesel::PgConnection::establish(&url).unwrap();
        // Waits (up to 5 s each) until each backend is gone.
        diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity, \
             LATERAL pg_terminate_backend(pid, 5000) AS done \
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND done",
        )
        .get_result::<Closed>(&mut c)
        .unwrap()
        .n
    })
    .await
    .unwrap();
    assert!(
        closed >= 3,
        "pool, audit and watch connections closed: {closed}"
    );
    for body in answered().await {
        assert!(body.get("errors").is_none(), "{body}");
        assert!(body["data"]["actions"]["nodes"].is_array(), "{body}");
    }
}
