//! Checked sessions (`src/auth/sessions.rs`): a token's session is read from the database once,
//! then remembered, and a revocation or a sharing change made anywhere (this replica, another
//! replica on the same database, the `passerelle` CLI in another process) reaches every replica
//! within `session_recheck_ms`: at once on the replica that made it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ClientCreds, TestApp, RECHECK_BOUND};
use passerelle::domain::Visibility;
use serde_json::json;

const VIEWER: &str = "{ viewer { partner { slug } } }";
const ACTIONS: &str = "{ actions(first: 100) { nodes { localId } } }";

/// Statements one request runs.
async fn cost(app: &TestApp, token: &str) -> u64 {
    let before = app.statements();
    app.data_as(token, VIEWER, json!({})).await;
    app.statements() - before
}

/// Whether `token` is refused on `app`.
async fn refused(app: &TestApp, token: &str) -> bool {
    let (status, _, body) = app
        .graphql_raw(Some(&format!("Bearer {token}")), VIEWER, json!({}))
        .await;
    match status {
        401 => true,
        200 => false,
        _ => panic!("{status}: {body}"),
    }
}

/// Runs the real `passerelle` binary on the app's database, as an operator would, in another
/// process; returns its standard output.
async fn cli(app: &TestApp, args: &[&str]) -> String {
    let mut cmd = common::passerelle(&app.database_url);
    cmd.args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "passerelle {args:?} ({}): {} {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn revoke_over_http(app: &TestApp, creds: &ClientCreds, token: &str) {
    let res = app
        .http
        .post(app.url("/oauth/revoke"))
        .basic_auth(&creds.id, Some(&creds.secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// Whether `token` sees anvita's `partners`-visible action on `app`.
async fn shows(app: &TestApp, token: &str) -> bool {
    let data = app.data_as(token, ACTIONS, json!({})).await;
    data["actions"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["localId"] == "anvita-shared-later")
}

/// The session is read once per token, not once per request; with `session_recheck_ms = 0`,
/// once per request.
async fn a_checked_session_is_remembered(app: TestApp) {
    app.seed().await;
    // Rechecked every 30 s: a machine too busy to read the counter in time (which makes a
    // request check its session, as it should) cannot get in the way here.
    let remembered = app.spawn_beside(|c| c.session_recheck_ms = 60_000).await;
    let every_time = app.spawn_beside(|c| c.session_recheck_ms = 0).await;
    let mut again = Vec::new();
    for replica in [&remembered, &every_time] {
        let token = replica.token("caravan", "read").await;
        cost(replica, &token).await;
        again.push(cost(replica, &token).await);
    }
    assert_eq!(
        again[0] + 1,
        again[1],
        "remembered, the session is not read again"
    );
}

/// A token revoked over RFC 7009 on one replica is refused there at once and on the other
/// replica soon after; a client revoked by the CLI, in another process, on both.
async fn a_revocation_reaches_every_replica(app: TestApp) {
    app.seed().await;
    let other = app.spawn_beside(|_| {}).await;
    let creds = app.client("caravan", "read").await;
    let token = app.token_for(&creds, "").await;
    for replica in [&app, &other] {
        // Twice: the second answer comes from the remembered session.
        assert!(!refused(replica, &token).await);
        assert!(!refused(replica, &token).await);
    }
    revoke_over_http(&app, &creds, &token).await;
    assert!(refused(&app, &token).await, "at once where it was revoked");
    let took = common::within(RECHECK_BOUND, || refused(&other, &token))
        .await
        .expect("the other replica refuses the revoked token");
    eprintln!("the other replica refused the token after {took:?}");

    let creds = app.client("anvita", "read").await;
    let token = app.token_for(&creds, "").await;
    for replica in [&app, &other] {
        assert!(!refused(replica, &token).await);
        assert!(!refused(replica, &token).await);
    }
    let out = cli(&app, &["client", "revoke", &creds.id]).await;
    assert!(out.contains("revoked"), "{out}");
    for replica in [&app, &other] {
        common::within(RECHECK_BOUND, || refused(replica, &token))
            .await
            .expect("a client revoked by the CLI is refused on every replica");
    }
}

/// An agreement granted by the CLI shows its records to the grantee on every replica, and once
/// ended hides them again, though the grantee's token was checked before each change.
async fn a_sharing_change_reaches_every_replica(app: TestApp) {
    app.seed().await;
    app.app
        .store
        .run(|c| {
            let action =
                common::records::action("anvita-shared-later", "anvita", Visibility::Partners);
            passerelle::storage::writes::upsert_action(
                c,
                &common::records::writer("anvita"),
                &action,
                "2026-01-01T00:00:00Z",
            )
        })
        .await
        .map_err(|e| e.message())
        .unwrap();
    let other = app.spawn_beside(|_| {}).await;
    let token = app.token("caravan", "read").await;
    for replica in [&app, &other] {
        assert!(!shows(replica, &token).await, "not shared yet");
    }
    let out = cli(
        &app,
        &[
            "sharing",
            "grant",
            "anvita",
            "caravan",
            "--from",
            "2020-01-01",
        ],
    )
    .await;
    let id = out
        .split_whitespace()
        .nth(1)
        .expect("agreement ID recorded")
        .to_owned();
    for replica in [&app, &other] {
        common::within(RECHECK_BOUND, || shows(replica, &token))
            .await
            .expect("the grantee sees the shared record on every replica");
    }
    cli(&app, &["sharing", "end", &id, "--on", "2020-06-01"]).await;
    for replica in [&app, &other] {
        common::within(RECHECK_BOUND, || async { !shows(replica, &token).await })
            .await
            .expect("an ended agreement hides the record on every replica");
    }
}

backend_tests!(
    a_checked_session_is_remembered,
    a_revocation_reaches_every_replica,
    a_sharing_change_reaches_every_replica,
);
