//! Hostile and unlucky clients, and outages (issue 37), on loopback and bounded in time: slow
//! bodies hold no request slot and get 408 `BODY_TIMEOUT`; idle and half-sent connections are
//! closed; the server keeps accepting when it runs out of file descriptors; shed requests are
//! counted, not logged one by one; a stopped database is answered 503 at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Backend, TestApp};
use diesel::{Connection, RunQueryDsl};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const QUERY: &str = r#"{"query":"{ __typename }"}"#;

/// The head of a POST to /graphql whose body is `length` bytes long.
fn post_head(length: usize) -> String {
    format!(
        "POST /graphql HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {length}\r\n\r\n"
    )
}

/// A client that sends a request's head, then its body one byte a second until told to stop
/// or the server closes; returns what the server answered.
fn slow_client(addr: std::net::SocketAddr, length: usize) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(post_head(length).as_bytes())
            .await
            .unwrap();
        let (mut read, mut write) = stream.into_split();
        let trickle = tokio::spawn(async move {
            for _ in 0..length {
                if write.write_all(b" ").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let mut answer = Vec::new();
        let _ = read.read_to_end(&mut answer).await;
        trickle.abort();
        String::from_utf8_lossy(&answer).into_owned()
    })
}

/// Reads one response (head and a `content-length` body) from a keep-alive connection.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "closed mid-head");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    head + &String::from_utf8_lossy(&body)
}

/// How long until the server closes `stream` (reading nothing more), or `None` after `bound`.
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(bound.saturating_sub(start.elapsed()), stream.read(&mut buf))
            .await
        {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A metric's value on the `/metrics` page.
fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_holds_no_slot_and_gets_body_timeout() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.body_min_rate_grace_ms = 1_000;
        c.body_read_timeout_ms = 3_000;
    })
    .await
    .unwrap();
    let started = Instant::now();
    let client = slow_client(app.addr, 100);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Headers in, body trickling: no request slot is taken.
    assert_eq!(app.app.admission.in_flight(), 0);
    let answer = tokio::time::timeout(Duration::from_secs(8), client)
        .await
        .expect("the slow client was not answered in time")
        .unwrap();
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"BODY_TIMEOUT""#), "{answer}");
    assert!(
        answer.contains(r#"{"errors":[{"#),
        "GraphQL-shaped: {answer}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    // After the grace (1 s) at one byte a second, far below the minimum rate: about 1 s.
    assert!(took < Duration::from_secs(4), "{took:?}");
    let page = app.metrics().await;
    assert_eq!(
        metric(
            &page,
            r#"passerelle_requests_refused_total{reason="body_timeout"}"#
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_import_is_cut_at_the_minimum_rate() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.body_min_rate_grace_ms = 1_000;
        c.body_min_bytes_per_sec = 100;
    })
    .await
    .unwrap();
    app.seed().await;
    let token = app.token("caravan", "read write").await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /import HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/x-ndjson\r\n\
         authorization: Bearer {token}\r\ncontent-length: 10000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (mut read, mut write) = stream.into_split();
    let trickle = tokio::spawn(async move {
        while write.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(8), read.read_to_end(&mut answer)).await;
    trickle.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"BODY_TIMEOUT""#), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(app.app.admission.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_slow_clients_do_not_stop_a_normal_request() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        // They stay slow for the whole test.
        c.body_min_rate_grace_ms = 20_000;
        c.body_read_timeout_ms = 25_000;
    })
    .await
    .unwrap();
    let slots = app.app.config.max_concurrent_requests;
    let clients: Vec<_> = (0..slots + 8)
        .map(|_| slow_client(app.addr, 1000))
        .collect();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(app.app.admission.in_flight(), 0);
    for _ in 0..5 {
        let started = Instant::now();
        let (status, headers, body) = app
            .post_json(&json!({"query": "{ __typename }"}), &[])
            .await;
        assert_eq!(status, 200, "{headers:?} {body}");
        assert_eq!(body["data"]["__typename"], "Query");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(app.app.admission.shed(), 0);
    for c in clients {
        c.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_are_closed() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.idle_timeout_ms = 2_500;
        c.header_read_timeout_ms = 1_000;
    })
    .await
    .unwrap();
    // A keep-alive connection after its answer, and one that never sends a byte: idle.
    let mut kept = TcpStream::connect(app.addr).await.unwrap();
    kept.write_all(format!("{}{QUERY}", post_head(QUERY.len())).as_bytes())
        .await
        .unwrap();
    let answer = read_response(&mut kept).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    // One that stops mid-headers: the header timeout.
    let mut half = TcpStream::connect(app.addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nhost: loc")
        .await
        .unwrap();
    let (kept_closed, silent_closed, half_closed) = tokio::join!(
        closed_within(&mut kept, Duration::from_secs(6)),
        closed_within(&mut silent, Duration::from_secs(6)),
        closed_within(&mut half, Duration::from_secs(6)),
    );
    let secs = |d: Option<Duration>| d.expect("still open after 6 s").as_secs_f64();
    // Between requests, a connection is held to the idle timeout (2.5 s), not the header one.
    assert!((2.0..4.5).contains(&secs(kept_closed)), "{kept_closed:?}");
    assert!(
        (2.0..4.5).contains(&secs(silent_closed)),
        "{silent_closed:?}"
    );
    assert!((0.8..2.0).contains(&secs(half_closed)), "{half_closed:?}");
    // One that trickles its headers is never quiet, and is closed by the header timeout.
    let mut slowloris = TcpStream::connect(app.addr).await.unwrap();
    let started = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nx-a: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = false;
    for b in head {
        if slowloris.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(200), slowloris.read(&mut buf)).await
        {
            closed = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(closed, "the slowloris connection was never closed");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let page = app.metrics().await;
    assert!(
        metric(
            &page,
            r#"passerelle_connections_closed_total{reason="idle"}"#
        ) >= 2.0
    );
    assert!(
        metric(
            &page,
            r#"passerelle_connections_closed_total{reason="header_timeout"}"#
        ) >= 2.0
    );
}

/// A `passerelle serve` child run through `sh -c "<prefix> exec passerelle serve"`, with its
/// standard error kept; killed when dropped.
struct Served {
    child: std::process::Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_under(prefix: &str, database_url: &str, settings: &[(&str, &str)]) -> Served {
    serve_args(prefix, "serve", database_url, settings)
}

fn serve_args(prefix: &str, args: &str, database_url: &str, settings: &[(&str, &str)]) -> Served {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("{prefix} exec \"$0\" {args}"))
        .arg(env!("CARGO_BIN_EXE_passerelle"));
    for (k, _) in std::env::vars() {
        if k.starts_with("PASSERELLE_") || k == "DATABASE_URL" || k.starts_with("RUST_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("PASSERELLE_DATABASE_URL", database_url)
        .env("PASSERELLE_LISTEN", "127.0.0.1:0")
        .env("PASSERELLE_LOG_LEVEL", "info");
    for (k, v) in settings {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let err = BufReader::new(child.stderr.take().unwrap());
    let keep = stderr.clone();
    std::thread::spawn(move || {
        for line in err.lines().map_while(Result::ok) {
            let mut s = keep.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = match lines.next() {
            Some(l) => l.unwrap(),
            None => panic!("server exited before listening: {}", stderr.lock().unwrap()),
        };
        if let Some(url) = line.trim().strip_prefix("GraphQL:") {
            break url
                .trim()
                .trim_start_matches("http://")
                .trim_end_matches("/graphql")
                .to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Served {
        child,
        addr,
        stderr,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_keeps_working_out_of_file_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    // 64 descriptors; idle connections would stay open 60 s.
    let server = serve_under(
        "ulimit -n 64 &&",
        &url,
        &[("PASSERELLE_IDLE_TIMEOUT_MS", "60000")],
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let graphql = format!("http://{}/graphql", server.addr);
    let ask = || async {
        http.post(&graphql)
            .header("content-type", "application/json")
            .body(QUERY)
            .timeout(Duration::from_secs(10))
            .send()
            .await
    };
    assert_eq!(ask().await.unwrap().status(), 200);
    // More idle connections than the process has descriptors.
    let mut idle = Vec::new();
    for _ in 0..150 {
        idle.push(TcpStream::connect(&server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let answered = ask().await.unwrap();
    assert_eq!(answered.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let page = http
        .get(format!("http://{}/metrics", server.addr))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metric(&page, "passerelle_accept_errors_total") >= 1.0,
        "{page}"
    );
    assert!(
        metric(
            &page,
            r#"passerelle_connections_closed_total{reason="pressure"}"#
        ) >= 1.0
    );
    drop(idle);
    // Logged once per interval, not once per failure.
    let log = server.stderr.lock().unwrap().clone();
    let lines = log.matches("cannot accept connections").count();
    assert!((1..=2).contains(&lines), "{lines} lines: {log}");
    // And the start said that max_connections (512) does not fit in 64 descriptors.
    assert!(log.contains("close to the open-file limit"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shed_requests_are_counted_not_logged_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let config = dir.path().join("p.toml");
    std::fs::write(&config, "[rate_limit]\nenabled = false\n").unwrap();
    // One slot and no queue: a request arriving while another runs is shed at once.
    let server = serve_under(
        "",
        &url,
        &[
            ("PASSERELLE_MAX_CONCURRENT_REQUESTS", "1"),
            ("PASSERELLE_MAX_QUEUED_REQUESTS", "0"),
            ("PASSERELLE_CONFIG", config.to_str().unwrap()),
        ],
    );
    let http = reqwest::Client::new();
    let graphql = format!("http://{}/graphql", server.addr);
    let requests = (0..400).map(|_| {
        let (http, graphql) = (http.clone(), graphql.clone());
        tokio::spawn(async move {
            let res = http
                .post(&graphql)
                .header("content-type", "application/json")
                .body(r#"{"query":"{ partners { slug } }"}"#)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .unwrap();
            (
                res.status().as_u16(),
                res.headers().contains_key("retry-after"),
            )
        })
    });
    let mut shed = 0;
    for r in futures_join(requests.collect()).await {
        let (status, retry_after) = r;
        if status == 503 {
            assert!(retry_after);
            shed += 1;
        } else {
            assert!(status == 200 || status == 429, "{status}");
        }
    }
    assert!(shed > 0, "no request was shed");
    let page = http
        .get(format!("http://{}/metrics", server.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(
            &page,
            r#"passerelle_requests_refused_total{reason="overloaded"}"#
        ),
        f64::from(shed)
    );
    assert_eq!(
        metric(&page, "passerelle_responses_unavailable_total"),
        f64::from(shed)
    );
    let log = server.stderr.lock().unwrap().clone();
    assert!(!log.contains("ERROR"), "{log}");
    let lines = log.matches("answered 503").count();
    assert!(
        (1..=2).contains(&lines),
        "{shed} shed, {lines} lines: {log}"
    );
}

async fn futures_join<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_is_answered_503_at_once_and_readyz_says_so() {
    let Some(app) = TestApp::spawn_with(Backend::Postgres, |c| {
        c.db_connect_timeout_secs = 1;
        c.db_probe_interval_ms = 200;
    })
    .await
    else {
        return;
    };
    let ready = || async {
        let res = app.http.get(app.url("/readyz")).send().await.unwrap();
        let retry = res
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (
            res.status().as_u16(),
            retry,
            res.json::<serde_json::Value>().await.unwrap(),
        )
    };
    assert_eq!(ready().await.0, 200);
    let url = app.database_url.clone();
    tokio::task::spawn_blocking(move || refuse_connections(&url, true))
        .await
        .unwrap();
    // Requests that find it down wait the connect timeout (1 s) at most, or fail on a
    // terminated connection; within a few of them, it is known down.
    let known = common::within(Duration::from_secs(6), async || {
        let started = Instant::now();
        let (status, _, body) = ready().await;
        assert_eq!(status, 503, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        body["reason"] == "database unreachable"
    })
    .await;
    assert!(known.is_some(), "never known to be down");
    // From then on, at once: /readyz, and requests that need the database, with Retry-After.
    for _ in 0..3 {
        let started = Instant::now();
        let (status, retry, body) = ready().await;
        assert_eq!((status, retry.as_deref()), (503, Some("1")), "{body}");
        assert_eq!(body["reason"], "database unreachable");
        let (status, headers, body) = app
            .post_json(&json!({"query": "{ partners { slug } }"}), &[])
            .await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(common::error_code(&body), "SERVICE_UNAVAILABLE");
        assert_eq!(headers["retry-after"], "1");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(app.app.admission.shed(), 0);
    let page = app.metrics().await;
    assert_eq!(metric(&page, "passerelle_database_up"), 0.0);
    assert!(
        metric(
            &page,
            r#"passerelle_requests_refused_total{reason="database_down"}"#
        ) >= 3.0
    );
    // Back: the probe closes the circuit within a few of its intervals.
    let url = app.database_url.clone();
    tokio::task::spawn_blocking(move || refuse_connections(&url, false))
        .await
        .unwrap();
    let back = common::within(Duration::from_secs(5), async || ready().await.0 == 200).await;
    assert!(
        back.is_some(),
        "still not ready 5 s after the database came back"
    );
    let (status, _, body) = app
        .post_json(&json!({"query": "{ partners { slug } }"}), &[])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["partners"], json!([]));
}

/// Stops a PostgreSQL test database without stopping the server: no new connection is allowed
/// and the open ones are terminated. `false` allows them again.
fn refuse_connections(database_url: &str, refuse: bool) {
    let name = url::Url::parse(database_url).unwrap().path()[1..].to_owned();
    let admin = std::env::var("PASSERELLE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut c = diesel::PgConnection::establish(&admin).unwrap();
    diesel::sql_query(format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS {}",
        !refuse
    ))
    .execute(&mut c)
    .unwrap();
    if refuse {
        diesel::sql_query(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .execute(&mut c)
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_answered_503_and_readyz_says_so() {
    // A 4 MiB file system of the server's own (a mount namespace), filled once it serves.
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("disk");
    std::fs::create_dir(&mount).unwrap();
    let url = format!("sqlite://{}", mount.join("p.db").display());
    // Seeded, with a client, before it serves (SQLite resolves /proc/PID/root to the outside).
    let server = serve_args(
        &format!(
            "exec unshare -Urm sh -c 'mount -t tmpfs -o size=4m tmpfs {disk} && \"$0\" seed >/dev/null && \
             \"$0\" client create --partner caravan --scopes read > {disk}/../client.txt && \
             exec \"$0\" serve' \"$0\" #",
            disk = mount.display()
        ),
        "",
        &url,
        &[],
    );
    // The server's files, as seen from outside its namespace.
    let inside = std::path::PathBuf::from(format!("/proc/{}/root", server.child.id()))
        .join(mount.strip_prefix("/").unwrap());
    let out = std::fs::read_to_string(dir.path().join("client.txt")).unwrap();
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_owned()
    };
    let (id, secret) = (field("client_id:"), field("client_secret:"));
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    let token = || {
        http.post(format!("{base}/oauth/token"))
            .basic_auth(&id, Some(&secret))
            .form(&[("grant_type", "client_credentials")])
            .timeout(Duration::from_secs(10))
            .send()
    };
    let readyz = || {
        http.get(format!("{base}/readyz"))
            .timeout(Duration::from_secs(10))
            .send()
    };
    assert_eq!(token().await.unwrap().status(), 200);
    assert_eq!(readyz().await.unwrap().status(), 200);
    // Fill it.
    {
        use std::io::Write;
        let mut fill = std::fs::File::create(inside.join("fill")).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while fill.write_all(&chunk).is_ok() {}
    }
    let res = token().await.unwrap();
    let status = res.status().as_u16();
    let retry = res.headers().contains_key("retry-after");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert!(retry);
    let res = readyz().await.unwrap();
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["reason"], "storage full", "{body}");
    let log = server.stderr.lock().unwrap().clone();
    assert!(!log.contains("internal error"), "{log}");
}

/// Serves an empty SQLite database whose `partners` table is then renamed away, so that a
/// query for partners is an internal error; returns the log after one such query.
async fn log_of_an_internal_error(settings: &[(&str, &str)]) -> (String, i64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let server = serve_under("", &format!("sqlite://{}", path.display()), settings);
    tokio::task::spawn_blocking(move || {
        let mut c = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        diesel::sql_query("ALTER TABLE partners RENAME TO partners_gone")
            .execute(&mut c)
            .unwrap();
    })
    .await
    .unwrap();
    let rss = || {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            .unwrap()
    };
    let before = rss();
    let res = reqwest::Client::new()
        .post(format!("http://{}/graphql", server.addr))
        .header("content-type", "application/json")
        .body(r#"{"query":"{ partners { slug } }"}"#)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    let body = res.text().await.unwrap();
    assert!(body.contains("INTERNAL_SERVER_ERROR"), "{body}");
    let grown_kb = rss() - before;
    // The server's stderr is read by a thread of the test: the line may come a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = server.stderr.lock().unwrap().clone();
        if log.contains("internal error") || std::time::Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(log.contains("internal error"), "{log}");
    (log, grown_kb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_backtrace_does_not_make_errors_capture_backtraces() {
    // RUST_BACKTRACE=1 as a production unit might set it: no backtrace captured, nor symbolised.
    let (log, grown_kb) = log_of_an_internal_error(&[("RUST_BACKTRACE", "1")]).await;
    assert!(!log.contains("Stack backtrace"), "{log}");
    assert!(grown_kb < 20_000, "RSS grew by {grown_kb} kB");
    // Asked for explicitly, they are.
    let (log, _) =
        log_of_an_internal_error(&[("RUST_BACKTRACE", "1"), ("RUST_LIB_BACKTRACE", "1")]).await;
    assert!(log.contains("Stack backtrace"), "{log}");
}
