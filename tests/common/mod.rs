//! The test harness: starts the real app (router, store, migrations) on a random loopback port
//! with a fresh database, SQLite file or PostgreSQL database, and speaks HTTP to it.
//!
//! PostgreSQL tests use `PASSERELLE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) to create one database per test. When the
//! server cannot be reached they are skipped with a message, except under `CI=true`, where they
//! fail.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod node;
pub mod records;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;

use diesel::{Connection, RunQueryDsl};
use passerelle::app::App;
use passerelle::config::Config;
use passerelle::storage::DatabaseUrl;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Declares each listed `async fn NAME(app: TestApp)` as a test on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) = $crate::common::TestApp::spawn($crate::common::Backend::Sqlite).await {
                        super::$name(app).await
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) = $crate::common::TestApp::spawn($crate::common::Backend::Postgres).await {
                        super::$name(app).await
                    }
                }
            )*
        }
    };
}

/// A fresh database, removed when dropped.
pub enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres {
        admin_url: String,
        name: String,
    },
    /// Another app's database (`TestApp::spawn_beside`): left alone when dropped.
    Shared,
}

impl TestDb {
    pub fn create(backend: Backend) -> Option<(TestDb, String)> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("passerelle.db").display());
                Some((TestDb::Sqlite(dir), url))
            }
            Backend::Postgres => {
                let admin_url = std::env::var("PASSERELLE_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
                let mut admin = match diesel::PgConnection::establish(&admin_url) {
                    Ok(c) => c,
                    Err(e) => {
                        if std::env::var("CI").is_ok_and(|v| v == "true") {
                            panic!("PostgreSQL is required under CI=true but {admin_url} is unreachable: {e}");
                        }
                        eprintln!("SKIPPED: PostgreSQL unreachable at {admin_url} ({e}); set CI=true to make this fail");
                        return None;
                    }
                };
                let name = format!("passerelle_test_{}", uuid::Uuid::new_v4().simple());
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .unwrap();
                let url = replace_db_name(&admin_url, &name);
                Some((TestDb::Postgres { admin_url, name }, url))
            }
        }
    }
}

fn replace_db_name(url: &str, name: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_path(&format!("/{name}"));
    u.to_string()
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { admin_url, name } = self {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Off the async runtime: a plain thread with its own connection.
            let _ = std::thread::spawn(move || {
                if let Ok(mut c) = diesel::PgConnection::establish(&admin_url) {
                    let _ =
                        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut c);
                }
            })
            .join();
        }
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub app: App,
    pub backend: Backend,
    pub database_url: String,
    pub http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    // Last: the pool is dropped before the database is.
    db: TestDb,
}

impl TestApp {
    /// Starts the app on a fresh, migrated, empty database.
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Starts the app with a configuration adjusted by `adjust`.
    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Option<TestApp> {
        let (db, database_url) = TestDb::create(backend)?;
        Some(Self::start(backend, db, database_url, adjust).await)
    }

    /// Starts another app (another replica) on this app's database; drop it before this one.
    pub async fn spawn_beside(&self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        Self::start(
            self.backend,
            TestDb::Shared,
            self.database_url.clone(),
            adjust,
        )
        .await
    }

    async fn start(
        backend: Backend,
        db: TestDb,
        database_url: String,
        adjust: impl FnOnce(&mut Config),
    ) -> TestApp {
        let mut config = Config {
            database_url: DatabaseUrl::from_str(&database_url).unwrap(),
            listen: "127.0.0.1:0".parse().unwrap(),
            shutdown_grace_secs: 5,
            ..Config::default()
        };
        adjust(&mut config);
        let app = App::start(config).await.map_err(|e| e.message()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let router =
            passerelle::http::router(app.clone()).layer(axum::middleware::from_fn(test_viewer));
        // As `serve` does: the router, and the scheduled connectors beside it.
        let server = tokio::spawn(passerelle::http::serve_app(
            app.clone(),
            router,
            listener,
            async move {
                let _ = rx.await;
            },
        ));
        TestApp {
            addr,
            app,
            backend,
            database_url,
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            server: Some(server),
            db,
        }
    }

    /// Runs `sql` on a connection of its own to this app's database, outside the app, as psql
    /// or sqlite3 would.
    pub async fn write_outside(&self, sql: &'static str) {
        let (backend, url) = (self.backend, self.database_url.clone());
        tokio::task::spawn_blocking(move || match backend {
            Backend::Postgres => {
                let mut c = diesel::PgConnection::establish(&url).unwrap();
                diesel::sql_query(sql).execute(&mut c).unwrap();
            }
            Backend::Sqlite => {
                let path = url.trim_start_matches("sqlite://");
                let mut c = diesel::SqliteConnection::establish(path).unwrap();
                diesel::sql_query(sql).execute(&mut c).unwrap();
            }
        })
        .await
        .unwrap();
    }

    /// Loads the demo data through the same path as `passerelle seed`.
    pub async fn seed(&self) -> passerelle::domain::seed::LoadReport {
        passerelle::domain::seed::load_demo(&self.app.store, passerelle::app::now())
            .await
            .map_err(|e| format!("{e:?}"))
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs a GraphQL query and returns the whole JSON response.
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        let res = self
            .http
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .unwrap();
        res.json().await.unwrap()
    }

    /// POSTs a GraphQL query that must succeed and returns its `data`.
    pub async fn data(&self, query: &str, variables: Value) -> Value {
        let body = self.graphql(query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body:#}");
        body["data"].clone()
    }

    /// Runs a GraphQL request in-process as `viewer`, through the same schema and request
    /// context the HTTP endpoint builds (no HTTP pipeline: no cache, limits or rate limits).
    pub async fn execute_as(
        &self,
        viewer: &passerelle::domain::Viewer,
        query: &str,
        variables: Value,
    ) -> Value {
        let context = passerelle::graphql::RequestContext::new(
            viewer.clone(),
            self.app.store.clone(),
            self.app.page_limits(),
        );
        let request = async_graphql::Request::new(query)
            .variables(async_graphql::Variables::from_json(variables))
            .data(context);
        let response = self.app.schema.execute(request).await;
        serde_json::to_value(&response).unwrap()
    }

    /// SQL statements sent so far by this app's pool.
    pub fn statements(&self) -> u64 {
        self.app.store.statements().get()
    }

    /// The `/metrics` page, as a scraper reads it.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Asks the server to shut down gracefully, without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(&mut self) {
        self.begin_shutdown();
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

/// The test header that stands in for authentication (being built separately): the harness
/// turns `x-test-viewer: partner=caravan; scopes=read,introspect; client=ios; shared=anvita`
/// into the request's `Viewer`, the way an authentication layer attaches one. Without the header
/// the caller is anonymous. Production never reads this header.
pub const TEST_VIEWER: &str = "x-test-viewer";

async fn test_viewer(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(spec) = request
        .headers()
        .get(TEST_VIEWER)
        .and_then(|v| v.to_str().ok())
    {
        let mut viewer = passerelle::domain::Viewer::anonymous();
        for part in spec.split(';') {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            let list = || {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
            };
            match key.trim() {
                "partner" => viewer.partner = Some(value.trim().to_owned()),
                "client" => viewer.client_id = Some(value.trim().to_owned()),
                "scopes" => viewer.scopes = list().collect(),
                "shared" => viewer.shared_by = list().collect(),
                other => panic!("unknown test viewer key {other}"),
            }
        }
        request.extensions_mut().insert(viewer);
    }
    next.run(request).await
}

impl TestApp {
    /// POSTs `body` as JSON with extra headers; returns status, headers and JSON body.
    pub async fn post_json(
        &self,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.post(self.url("/graphql")).json(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, body)
    }

    /// GETs `/graphql` with the query parameters and headers; returns status, headers and body.
    pub async fn get_graphql(
        &self,
        params: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.get(self.url("/graphql")).query(params);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, body)
    }

    /// POSTs a query as the test viewer `viewer` (see `TEST_VIEWER`).
    pub async fn graphql_with_test_viewer(
        &self,
        viewer: &str,
        query: &str,
        variables: Value,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        self.post_json(
            &json!({ "query": query, "variables": variables }),
            &[(TEST_VIEWER, viewer)],
        )
        .await
    }
}

/// A partner's caller with the given scopes.
pub fn partner(id: &str, scopes: &[&str]) -> passerelle::domain::Viewer {
    passerelle::domain::Viewer {
        partner: Some(id.to_owned()),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// A registered client's credentials.
pub struct ClientCreds {
    pub id: String,
    pub secret: String,
}

impl TestApp {
    /// Registers a client through the same path as `passerelle client create`.
    pub async fn client(&self, partner: &str, scopes: &str) -> ClientCreds {
        let (partner, scopes) = (partner.to_owned(), scopes.to_owned());
        let c = self
            .app
            .store
            .run(move |conn| passerelle::auth::clients::create(conn, &partner, &scopes))
            .await
            .map_err(|e| e.message())
            .unwrap();
        ClientCreds {
            id: c.id,
            secret: c.secret,
        }
    }

    /// Obtains an access token from the real token endpoint with the `oauth2` crate's client
    /// (client_secret_basic), for `scopes` (all the client's scopes when empty).
    pub async fn token_for(&self, creds: &ClientCreds, scopes: &str) -> String {
        use oauth2::TokenResponse;
        let client = oauth2::basic::BasicClient::new(oauth2::ClientId::new(creds.id.clone()))
            .set_client_secret(oauth2::ClientSecret::new(creds.secret.clone()))
            .set_token_uri(oauth2::TokenUrl::new(self.url("/oauth/token")).unwrap());
        let http = oauth2::reqwest::ClientBuilder::new()
            .redirect(oauth2::reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut request = client.exchange_client_credentials();
        for s in scopes.split_whitespace() {
            request = request.add_scope(oauth2::Scope::new(s.to_owned()));
        }
        let token = request.request_async(&http).await.unwrap();
        token.access_token().secret().clone()
    }

    /// A new client of `partner` with `scopes`, and a token holding all of them.
    pub async fn token(&self, partner: &str, scopes: &str) -> String {
        let creds = self.client(partner, scopes).await;
        self.token_for(&creds, "").await
    }

    /// POSTs a GraphQL query with `Authorization: Bearer <token>`; returns status, the
    /// `WWW-Authenticate` header and the JSON body.
    pub async fn graphql_raw(
        &self,
        authorization: Option<&str>,
        query: &str,
        variables: Value,
    ) -> (u16, Option<String>, Value) {
        let mut req = self
            .http
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let challenge = res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = res.json().await.unwrap_or(Value::Null);
        (status, challenge, body)
    }

    /// POSTs a GraphQL query as the holder of `token`; returns the whole JSON response.
    pub async fn graphql_as(&self, token: &str, query: &str, variables: Value) -> Value {
        let (status, _, body) = self
            .graphql_raw(Some(&format!("Bearer {token}")), query, variables)
            .await;
        assert_eq!(status, 200, "{body:#}");
        body
    }

    /// Like `graphql_as`, and the response must have no errors: returns its `data`.
    pub async fn data_as(&self, token: &str, query: &str, variables: Value) -> Value {
        let body = self.graphql_as(token, query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body:#}");
        body["data"].clone()
    }
}
/// How long a change made elsewhere may take to reach a replica in these tests: ten times the
/// default `session_recheck_ms`, for a slow machine.
pub const RECHECK_BOUND: std::time::Duration = std::time::Duration::from_secs(5);

/// Polls `check` every 20 ms until it holds; how long it took, or `None` once `bound` passed.
pub async fn within(
    bound: std::time::Duration,
    mut check: impl AsyncFnMut() -> bool,
) -> Option<std::time::Duration> {
    let start = std::time::Instant::now();
    loop {
        if check().await {
            return Some(start.elapsed());
        }
        if start.elapsed() > bound {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The first error's `extensions.code`.
pub fn error_code(body: &Value) -> String {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Declares each listed `async fn NAME(backend: Backend)` as a test on SQLite and on PostgreSQL,
/// for tests that start the app themselves (with their own configuration).
#[macro_export]
macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            )*
        }
    };
}

/// The lowercase hex SHA-256 of a query, as Apollo clients send it.
pub fn sha256(text: &str) -> String {
    passerelle::persisted::sha256_hex(text)
}

/// Asks for GraphQL-over-HTTP responses (4xx for request errors).
pub const GQL_ACCEPT: (&str, &str) = ("accept", "application/graphql-response+json");

/// The real `passerelle` binary on `database_url`, with no other settings from the environment.
pub fn passerelle(database_url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_passerelle"));
    for (k, _) in std::env::vars() {
        if k.starts_with("PASSERELLE_") || k == "DATABASE_URL" {
            cmd.env_remove(k);
        }
    }
    cmd.env("PASSERELLE_DATABASE_URL", database_url)
        .env("PASSERELLE_LOG_LEVEL", "warn");
    cmd
}

/// A `passerelle serve` child process, killed when dropped.
pub struct Server {
    child: Child,
    /// The GraphQL endpoint.
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `passerelle serve ARGS` on a free port and waits until it listens.
pub fn serve(database_url: &str, args: &[&str]) -> Server {
    let mut child = passerelle(database_url)
        .arg("serve")
        .args(args)
        .env("PASSERELLE_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if let Some(url) = line.trim().strip_prefix("GraphQL:") {
            break url.trim().to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, url }
}
