//! The `passerelle` binary as an operator uses it: schema, seed, configuration errors, serve
//! and SIGTERM; and graceful shutdown finishing a request in flight.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn passerelle() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_passerelle"));
    // The tests' own environment must not leak settings into the binary.
    for (k, _) in std::env::vars() {
        if k.starts_with("PASSERELLE_") || k == "DATABASE_URL" {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn schema_command_prints_the_checked_in_sdl() {
    let out = passerelle().arg("schema").output().unwrap();
    assert!(out.status.success());
    let checked_in =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), checked_in);
}

#[test]
fn seed_is_idempotent_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("hub.db").display());
    let first = passerelle()
        .arg("seed")
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let first = String::from_utf8(first.stdout).unwrap();
    assert!(first.contains("actions (17 created)"), "{first}");
    let second = passerelle()
        .arg("seed")
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    let second = String::from_utf8(second.stdout).unwrap();
    assert!(
        second.contains("actions (17 unchanged)") && !second.contains("created"),
        "{second}"
    );
}

#[test]
fn bad_configuration_is_named_and_exits_2() {
    let out = passerelle()
        .arg("migrate")
        .env("PASSERELLE_MAX_PAGE_SIZE", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("invalid configuration") && err.contains("max_page_size"),
        "{err}"
    );

    let out = passerelle()
        .arg("migrate")
        .env("PASSERELLE_LISTN", "127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("listn"));

    let out = passerelle()
        .arg("migrate")
        .env("DATABASE_URL", "mysql://nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("sqlite://"));
}

#[test]
fn unreachable_database_fails_clearly_without_leaking_the_password() {
    let out = passerelle()
        .arg("migrate")
        .env(
            "DATABASE_URL",
            "postgres://someone:s3cret@127.0.0.1:1/nothing",
        )
        .env("PASSERELLE_DB_CONNECT_TIMEOUT_SECS", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("database"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn serve_demo_answers_then_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = passerelle()
        .args(["serve", "--demo"])
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("hub.db").display()),
        )
        .env("PASSERELLE_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let body: serde_json::Value = loop {
        let res = rt.block_on(
            client
                .post(format!("http://127.0.0.1:{port}/graphql"))
                .json(&serde_json::json!({ "query": "{ actions(filter: { partners: [\"caravan\"] }) { totalCount } }" }))
                .send(),
        );
        if let Ok(res) = res {
            break rt.block_on(res.json()).unwrap();
        }
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(body["data"]["actions"]["totalCount"], 3);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(
        out.contains("http://127.0.0.1:") && out.contains("/graphql") && out.contains("stopped"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_request_in_flight_finish() {
    let mut app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let body = br#"{"query":"{ partners { slug } }"}"#;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The request is half sent when shutdown begins; it must still be answered.
    app.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream.write_all(&body[10..]).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains(r#"{"data":{"partners":[]}}"#),
        "{response}"
    );
    // New connections are refused once the server has stopped.
    app.stop().await;
    assert!(tokio::net::TcpStream::connect(app.addr).await.is_err());
}

#[test]
fn synthetic_seed_is_deterministic_and_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let run = || {
        let out = passerelle()
            .args(["seed", "--synthetic", "--scale", "0.0003"])
            .env("DATABASE_URL", &url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    assert!(
        first.contains("1 partners (1 created, 0 already there), 30 actions, 300 outcomes"),
        "{first}"
    );
    let second = run();
    assert!(second.contains("(0 created, 1 already there)"), "{second}");
    let bad = passerelle()
        .args(["seed", "--synthetic", "--scale", "0"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

/// A command on PostgreSQL ends with its own exit code, never a signal. The pool (r2d2) opens
/// connections on threads of its own, which nothing can join; libcrypto's exit handler freed
/// OpenSSL's state under a connection being opened there, and about one command in twenty
/// ended with SIGSEGV after its work was done. Sixty runs catch that nineteen times in twenty.
#[test]
fn commands_on_postgresql_exit_with_their_code_never_a_signal() {
    use std::os::unix::process::ExitStatusExt;
    let Some((_db, url)) = common::TestDb::create(Backend::Postgres) else {
        return;
    };
    let run = |args: &[&str]| {
        passerelle()
            .args(args)
            .env("DATABASE_URL", &url)
            .env("PASSERELLE_LOG_LEVEL", "warn")
            .output()
            .unwrap()
    };
    let migrated = run(&["migrate"]);
    assert!(migrated.status.success(), "{:?}", migrated);
    for i in 0..60 {
        let out = run(&["sharing", "list"]);
        assert_eq!(
            (out.status.code(), out.status.signal()),
            (Some(0), None),
            "run {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bad = run(&["sharing", "end", "not-an-id"]);
    assert_eq!((bad.status.code(), bad.status.signal()), (Some(1), None));
}
