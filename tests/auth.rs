//! Passerelle as an OAuth2 authorization server: the real `oauth2` crate client against the real
//! token endpoint over loopback HTTP, and every way a bearer token must be refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::{ClientCreds, TestApp};
use diesel::prelude::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use passerelle::auth::tokens::Claims;
use passerelle::storage::schema::signing_keys;
use serde_json::{json, Value};

const VIEWER: &str = "{ viewer { partner { slug } scopes } }";

async fn post_form(
    app: &TestApp,
    path: &str,
    basic: Option<&ClientCreds>,
    form: &[(&str, &str)],
) -> (u16, Option<String>, Value) {
    let mut req = app.http.post(app.url(path)).form(form);
    if let Some(c) = basic {
        req = req.basic_auth(&c.id, Some(&c.secret));
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

async fn token_via_basic_and_post(app: TestApp) {
    app.seed().await;
    let creds = app.client("caravan", "read read:sensitive").await;
    // client_secret_basic, all the client's scopes.
    let token = app.token_for(&creds, "").await;
    let data = app.data_as(&token, VIEWER, json!({})).await;
    assert_eq!(data["viewer"]["partner"]["slug"], "caravan");
    assert_eq!(data["viewer"]["scopes"], json!(["read", "read:sensitive"]));

    // client_secret_post, narrowed to one scope, through the oauth2 crate too.
    use oauth2::TokenResponse;
    let client = oauth2::basic::BasicClient::new(oauth2::ClientId::new(creds.id.clone()))
        .set_client_secret(oauth2::ClientSecret::new(creds.secret.clone()))
        .set_auth_type(oauth2::AuthType::RequestBody)
        .set_token_uri(oauth2::TokenUrl::new(app.url("/oauth/token")).unwrap());
    let http = oauth2::reqwest::ClientBuilder::new()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let issued = client
        .exchange_client_credentials()
        .add_scope(oauth2::Scope::new("read".into()))
        .request_async(&http)
        .await
        .unwrap();
    assert!(issued.expires_in().unwrap().as_secs() <= app.app.config.token_ttl_secs);
    let data = app
        .data_as(issued.access_token().secret(), VIEWER, json!({}))
        .await;
    assert_eq!(data["viewer"]["scopes"], json!(["read"]));

    // Anonymous callers still work and are nobody.
    let data = app.data(VIEWER, json!({})).await;
    assert_eq!(data["viewer"], json!({ "partner": null, "scopes": [] }));
}

async fn token_endpoint_errors_follow_rfc_6749(app: TestApp) {
    app.seed().await;
    let creds = app.client("anvita", "read").await;
    let wrong = ClientCreds {
        id: creds.id.clone(),
        secret: "not-the-secret".into(),
    };
    let (status, challenge, body) = post_form(
        &app,
        "/oauth/token",
        Some(&wrong),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    assert!(challenge.unwrap().starts_with("Basic"));
    let unknown = ClientCreds {
        id: "pc_nobody".into(),
        secret: creds.secret.clone(),
    };
    let (status, _, body) = post_form(
        &app,
        "/oauth/token",
        Some(&unknown),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, _, body) = post_form(
        &app,
        "/oauth/token",
        None,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, _, body) = post_form(
        &app,
        "/oauth/token",
        Some(&creds),
        &[("grant_type", "password")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (status, _, body) = post_form(
        &app,
        "/oauth/token",
        Some(&creds),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "read admin"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );
    let (status, _, body) = post_form(
        &app,
        "/oauth/token",
        Some(&creds),
        &[("grant_type", "client_credentials"), ("scope", "root")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    // Basic and body credentials at once.
    let (status, _, body) = post_form(
        &app,
        "/oauth/token",
        Some(&creds),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &creds.id),
            ("client_secret", &creds.secret),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // Success carries no-store.
    let res = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(&creds.id, Some(&creds.secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    // A revoked client gets no token.
    let id = creds.id.clone();
    assert!(app
        .app
        .store
        .run(move |c| passerelle::auth::clients::revoke(c, &id))
        .await
        .map_err(|e| e.message())
        .unwrap());
    let (status, _, body) = post_form(
        &app,
        "/oauth/token",
        Some(&creds),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

/// The current signing key from the database: (kid, PKCS#8 DER).
async fn signing_key(app: &TestApp) -> (String, Vec<u8>) {
    let (kid, private): (String, String) = app
        .app
        .store
        .run(|c| {
            Ok(signing_keys::table
                .filter(signing_keys::retired_at.is_null())
                .order(signing_keys::created_at.desc())
                .select((signing_keys::kid, signing_keys::private_key))
                .first(c)?)
        })
        .await
        .map_err(|e| e.message())
        .unwrap();
    (kid, STANDARD.decode(private).unwrap())
}

fn claims(app: &TestApp, client_id: &str, exp_from_now: i64) -> Claims {
    let now = passerelle::auth::unix_now();
    Claims {
        iss: app.app.config.token_issuer.clone(),
        sub: client_id.into(),
        aud: app.app.config.token_audience.clone(),
        exp: now + exp_from_now,
        iat: now - 10,
        nbf: now - 10,
        jti: uuid::Uuid::new_v4().to_string(),
        scope: "read".into(),
        client_id: client_id.into(),
        partner: "caravan".into(),
    }
}

fn sign(kid: &str, der: &[u8], claims: &Claims) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(der)).unwrap()
}

async fn refused(app: &TestApp, authorization: &str, error: &str) -> String {
    let (status, challenge, body) = app
        .graphql_raw(Some(authorization), VIEWER, json!({}))
        .await;
    assert_eq!(status, 401, "{authorization}: {body}");
    let challenge = challenge.expect("a WWW-Authenticate header");
    assert!(
        challenge.starts_with("Bearer realm=\"passerelle\""),
        "{challenge}"
    );
    assert!(
        challenge.contains(&format!("error=\"{error}\"")),
        "{challenge}"
    );
    assert!(challenge.contains("error_description="), "{challenge}");
    assert!(body["data"].is_null(), "{body}");
    challenge
}

/// A token is verified once and remembered, but never past its expiry (plus the 5 s leeway).
async fn a_remembered_token_still_expires(app: TestApp) {
    app.seed().await;
    let creds = app.client("caravan", "read").await;
    let (kid, der) = signing_key(&app).await;
    let short = sign(&kid, &der, &claims(&app, &creds.id, 1));
    app.data_as(&short, VIEWER, json!({})).await;
    app.data_as(&short, VIEWER, json!({})).await;
    tokio::time::sleep(std::time::Duration::from_millis(6_500)).await;
    assert!(refused(&app, &format!("Bearer {short}"), "invalid_token")
        .await
        .contains("expired"));
}

async fn bad_tokens_are_refused_with_401(app: TestApp) {
    app.seed().await;
    let creds = app.client("caravan", "read").await;
    let good = app.token_for(&creds, "").await;
    app.data_as(&good, VIEWER, json!({})).await;
    let (kid, der) = signing_key(&app).await;
    // Our own key, signing a token that expired a minute ago: the control is that the same
    // key and claims with a future expiry pass.
    let fresh = sign(&kid, &der, &claims(&app, &creds.id, 300));
    app.data_as(&fresh, VIEWER, json!({})).await;
    let expired = sign(&kid, &der, &claims(&app, &creds.id, -60));
    assert!(refused(&app, &format!("Bearer {expired}"), "invalid_token")
        .await
        .contains("expired"));
    // Wrong audience, wrong issuer.
    let mut c = claims(&app, &creds.id, 300);
    c.aud = "someone-else".into();
    assert!(refused(
        &app,
        &format!("Bearer {}", sign(&kid, &der, &c)),
        "invalid_token"
    )
    .await
    .contains("audience"));
    let mut c = claims(&app, &creds.id, 300);
    c.iss = "https://evil.example".into();
    assert!(refused(
        &app,
        &format!("Bearer {}", sign(&kid, &der, &c)),
        "invalid_token"
    )
    .await
    .contains("issuer"));
    // Another key claiming our kid: wrong signature.
    let rng = ring::rand::SystemRandom::new();
    let other = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let forged = sign(&kid, other.as_ref(), &claims(&app, &creds.id, 300));
    assert!(refused(&app, &format!("Bearer {forged}"), "invalid_token")
        .await
        .contains("signature"));
    // Unknown kid.
    let forged = sign("k-unknown", other.as_ref(), &claims(&app, &creds.id, 300));
    refused(&app, &format!("Bearer {forged}"), "invalid_token").await;
    // alg: none, and HS256 keyed with the public key.
    let payload =
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(&app, &creds.id, 300)).unwrap());
    let none_header =
        URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#));
    refused(
        &app,
        &format!("Bearer {none_header}.{payload}."),
        "invalid_token",
    )
    .await;
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(kid.clone());
    let hmac = jsonwebtoken::encode(
        &hs,
        &claims(&app, &creds.id, 300),
        &EncodingKey::from_secret(b"secret"),
    )
    .unwrap();
    refused(&app, &format!("Bearer {hmac}"), "invalid_token").await;
    // Garbage and malformed headers.
    refused(&app, "Bearer not.a.jwt", "invalid_token").await;
    refused(&app, "Basic Zm9vOmJhcg==", "invalid_request").await;
    refused(&app, "Bearer ", "invalid_request").await;

    // Revoked through RFC 7009 by its own client: refused from then on.
    let (status, _, _) = post_form(&app, "/oauth/revoke", Some(&creds), &[("token", &good)]).await;
    assert_eq!(status, 200);
    assert!(refused(&app, &format!("Bearer {good}"), "invalid_token")
        .await
        .contains("revoked"));
    // A token of a client revoked since, as `passerelle client revoke` does (tests/sessions.rs
    // covers how soon each replica notices).
    let other_token = app.token_for(&creds, "").await;
    app.data_as(&other_token, VIEWER, json!({})).await;
    let id = creds.id.clone();
    app.app
        .store
        .run(move |c| passerelle::auth::clients::revoke(c, &id))
        .await
        .map_err(|e| e.message())
        .unwrap();
    let bearer = format!("Bearer {other_token}");
    common::within(common::RECHECK_BOUND, || async {
        app.graphql_raw(Some(&bearer), VIEWER, json!({})).await.0 == 401
    })
    .await
    .expect("a revoked client's token is refused");
    refused(&app, &bearer, "invalid_token").await;
}

async fn revocation_is_limited_to_the_owner(app: TestApp) {
    app.seed().await;
    let a = app.client("caravan", "read").await;
    let b = app.client("anvita", "read").await;
    let token = app.token_for(&a, "").await;
    // Another client's revocation request is answered 200 and ignored.
    let (status, _, _) = post_form(&app, "/oauth/revoke", Some(&b), &[("token", &token)]).await;
    assert_eq!(status, 200);
    app.data_as(&token, VIEWER, json!({})).await;
    // Unauthenticated revocation is refused.
    let (status, _, body) = post_form(&app, "/oauth/revoke", None, &[("token", &token)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // Garbage tokens: 200, per RFC 7009 §2.2.
    let (status, _, _) = post_form(&app, "/oauth/revoke", Some(&a), &[("token", "garbage")]).await;
    assert_eq!(status, 200);
}

async fn introspection_follows_rfc_7662(app: TestApp) {
    app.seed().await;
    let a = app.client("caravan", "read read:sensitive").await;
    let b = app.client("anvita", "read").await;
    let admin = app.client("department", "admin").await;
    let token = app.token_for(&a, "read").await;
    let (status, _, body) =
        post_form(&app, "/oauth/introspect", Some(&a), &[("token", &token)]).await;
    assert_eq!(status, 200);
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["scope"], "read");
    assert_eq!(body["client_id"], a.id.as_str());
    assert_eq!(body["partner"], "caravan");
    assert!(body["exp"].as_i64().unwrap() > passerelle::auth::unix_now());
    // Another partner's client may not learn about it; an admin client may.
    let (_, _, body) = post_form(&app, "/oauth/introspect", Some(&b), &[("token", &token)]).await;
    assert_eq!(body, json!({ "active": false }));
    let (_, _, body) = post_form(
        &app,
        "/oauth/introspect",
        Some(&admin),
        &[("token", &token)],
    )
    .await;
    assert_eq!(body["active"], true);
    let (_, _, body) =
        post_form(&app, "/oauth/introspect", Some(&a), &[("token", "garbage")]).await;
    assert_eq!(body, json!({ "active": false }));
    let (status, _, body) = post_form(&app, "/oauth/introspect", None, &[("token", &token)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // After revocation: inactive.
    post_form(&app, "/oauth/revoke", Some(&a), &[("token", &token)]).await;
    let (_, _, body) = post_form(&app, "/oauth/introspect", Some(&a), &[("token", &token)]).await;
    assert_eq!(body, json!({ "active": false }));
}

async fn metadata_and_jwks_are_published(app: TestApp) {
    let meta: Value = app
        .http
        .get(app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let issuer = app.app.config.token_issuer.clone();
    assert_eq!(meta["issuer"], issuer.as_str());
    assert_eq!(meta["token_endpoint"], format!("{issuer}/oauth/token"));
    assert_eq!(meta["grant_types_supported"], json!(["client_credentials"]));
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    assert!(meta["scopes_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("read:sensitive")));
    let jwks: Value = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let (kid, _) = signing_key(&app).await;
    assert_eq!(keys[0]["kid"], kid.as_str());
    assert_eq!(
        (keys[0]["kty"].as_str(), keys[0]["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    assert!(keys[0].get("d").is_none(), "no private part in the JWKS");
}

async fn key_rotation_keeps_old_tokens_valid(app: TestApp) {
    app.seed().await;
    let creds = app.client("caravan", "read").await;
    let before = app.token_for(&creds, "").await;
    let old_kid = jsonwebtoken::decode_header(&before).unwrap().kid.unwrap();
    let new_kid = app
        .app
        .keys
        .rotate()
        .await
        .map_err(|e| e.message())
        .unwrap();
    assert_ne!(old_kid, new_kid);
    // Another replica would pick the new key up within key_cache_secs; this one reloads now.
    app.app
        .keys
        .reload()
        .await
        .map_err(|e| e.message())
        .unwrap();
    let after = app.token_for(&creds, "").await;
    assert_eq!(
        jsonwebtoken::decode_header(&after).unwrap().kid.unwrap(),
        new_kid
    );
    app.data_as(&before, VIEWER, json!({})).await;
    app.data_as(&after, VIEWER, json!({})).await;
    let jwks: Value = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: std::collections::BTreeSet<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [new_kid.as_str(), old_kid.as_str()].into());
}

async fn a_second_replica_verifies_the_first_ones_tokens(app: TestApp) {
    app.seed().await;
    let creds = app.client("caravan", "read").await;
    let token = app.token_for(&creds, "").await;
    // A second app on the same database: its own key cache, same keys.
    let config = (*app.app.config).clone();
    let replica = passerelle::app::App::start(config)
        .await
        .map_err(|e| e.message())
        .unwrap();
    let claims = passerelle::auth::tokens::verify_jwt(&replica.config, &replica.keys, &token)
        .await
        .map_err(|e| e.message())
        .unwrap();
    assert_eq!(claims.unwrap().partner, "caravan");
}

/// Two key encryption keys (32 bytes, base64).
const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OTHER_KEK: &str = "Hx4dHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

async fn stored_private_keys(app: &passerelle::app::App) -> Vec<(String, String)> {
    app.store
        .run(|conn| {
            Ok(signing_keys::table
                .select((signing_keys::kid, signing_keys::private_key))
                .order(signing_keys::created_at)
                .load::<(String, String)>(conn)?)
        })
        .await
        .map_err(|e| e.message())
        .unwrap()
}

/// The PKCS#8 (base64) inside a stored key, checked to be a real Ed25519 key.
fn opened(kid: &str, stored: &str) -> String {
    let cipher =
        passerelle::auth::keys::KeyCipher::new(Some(&STANDARD.decode(KEK).unwrap())).unwrap();
    let plain = cipher.open(kid, stored).map_err(|e| e.message()).unwrap();
    let der = STANDARD.decode(&plain).unwrap();
    ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).unwrap();
    plain
}

async fn signing_keys_are_encrypted_at_rest(app: TestApp) {
    app.seed().await;
    // `app` has no key encryption key: its first key is in plaintext.
    let creds = app.client("caravan", "read").await;
    let before = app.token_for(&creds, "").await;
    let rows = stored_private_keys(&app.app).await;
    assert_eq!(rows.len(), 1);
    let plaintext = rows[0].1.clone();
    assert!(!plaintext.starts_with("enc:"));
    let old_kid = rows[0].0.clone();

    // A replica with a key encryption key seals it at start, and still verifies its tokens.
    let mut config = (*app.app.config).clone();
    config.key_encryption_key = Some(passerelle::config::Secret(KEK.into()));
    let sealed = passerelle::app::App::start(config.clone())
        .await
        .map_err(|e| e.message())
        .unwrap();
    let claims = passerelle::auth::tokens::verify_jwt(&sealed.config, &sealed.keys, &before)
        .await
        .map_err(|e| e.message())
        .unwrap();
    assert_eq!(claims.unwrap().partner, "caravan");
    // Keys made from now on are sealed when made.
    sealed.keys.rotate().await.map_err(|e| e.message()).unwrap();
    sealed.keys.reload().await.map_err(|e| e.message()).unwrap();
    let rows = stored_private_keys(&sealed).await;
    assert_eq!(rows.len(), 2);
    let first = rows.iter().find(|r| r.0 == old_kid).unwrap();
    assert_eq!(opened(&first.0, &first.1), plaintext);
    for (kid, stored) in &rows {
        let plain = opened(kid, stored);
        assert!(stored.starts_with("enc:v1:"), "{stored}");
        assert!(
            !stored.contains(&plain),
            "the plaintext key is in the column"
        );
        assert!(!stored.contains(&plain[..16]));
    }

    // A wrong key, or none, stops the start with a stable code (no panic).
    for kek in [Some(OTHER_KEK), None] {
        let mut wrong = config.clone();
        wrong.key_encryption_key = kek.map(|k| passerelle::config::Secret(k.into()));
        match passerelle::app::App::start(wrong).await {
            Ok(_) => panic!("started with the wrong key encryption key {kek:?}"),
            Err(e) => assert_eq!(e.code(), "SIGNING_KEY_UNREADABLE", "{}", e.message()),
        }
    }

    // From the first start with a key: sealed keys sign tokens the endpoint verifies.
    let fresh = TestApp::spawn_with(app.backend, |c| {
        c.key_encryption_key = Some(passerelle::config::Secret(KEK.into()));
    })
    .await
    .unwrap();
    fresh.seed().await;
    let rows = stored_private_keys(&fresh.app).await;
    assert!(rows[0].1.starts_with("enc:v1:"));
    opened(&rows[0].0, &rows[0].1);
    let token = fresh.token("anvita", "read").await;
    let data = fresh.data_as(&token, VIEWER, json!({})).await;
    assert_eq!(data["viewer"]["partner"]["slug"], "anvita");
}

const AUDIT: &str =
    "{ auditLog(last: 50) { clientId partner operation returnedPartners outcome } }";

async fn oauth_endpoints_are_audited_without_secrets_or_tokens(app: TestApp) {
    app.seed().await;
    let admin = app.token("department", "admin").await;
    let creds = app.client("caravan", "read research").await;
    let token = app.token_for(&creds, "read").await;
    // A wrong secret, and a secret pasted where the client id goes.
    let wrong = ClientCreds {
        id: creds.id.clone(),
        secret: "not-the-secret".into(),
    };
    let (status, _, _) = post_form(
        &app,
        "/oauth/token",
        Some(&wrong),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, 401);
    let pasted = ClientCreds {
        id: format!("{}+{}", creds.secret, "x"),
        secret: creds.secret.clone(),
    };
    let (status, _, _) = post_form(
        &app,
        "/oauth/token",
        Some(&pasted),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, 401);
    post_form(
        &app,
        "/oauth/introspect",
        Some(&creds),
        &[("token", &token)],
    )
    .await;
    post_form(&app, "/oauth/revoke", Some(&creds), &[("token", &token)]).await;

    let data = app.data_as(&admin, AUDIT, json!({})).await;
    let entries = data["auditLog"].as_array().unwrap();
    let find = |operation: &str, outcome: &str| {
        entries
            .iter()
            .find(|e| e["operation"] == operation && e["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {operation} {outcome} in {entries:#?}"))
    };
    let issued = find("POST /oauth/token", "issued: read");
    assert_eq!(issued["clientId"], creds.id.as_str());
    assert_eq!(issued["partner"], "caravan");
    let refused = entries
        .iter()
        .filter(|e| {
            e["operation"] == "POST /oauth/token" && e["outcome"] == "refused: invalid_client"
        })
        .collect::<Vec<_>>();
    assert_eq!(refused.len(), 2, "{entries:#?}");
    // The claimed id when it looks like one, never free text; no partner: nobody was authenticated.
    assert!(refused.iter().any(|e| e["clientId"] == creds.id.as_str()));
    assert!(refused.iter().any(|e| e["clientId"] == "(malformed)"));
    assert!(refused.iter().all(|e| e["partner"].is_null()));
    let introspected = find("POST /oauth/introspect", "active");
    assert_eq!(introspected["clientId"], creds.id.as_str());
    assert_eq!(introspected["returnedPartners"], json!(["caravan"]));
    assert_eq!(
        find("POST /oauth/revoke", "revoked")["clientId"],
        creds.id.as_str()
    );

    // Nothing in the table holds a secret or a token, whole or in part.
    let rows = app
        .app
        .store
        .run(|conn| passerelle::auth::audit::recent(conn, 1000))
        .await
        .map_err(|e| e.message())
        .unwrap();
    assert!(rows.len() >= 6, "{rows:#?}");
    let stored = serde_json::to_string(&rows).unwrap();
    let signature = token.rsplit('.').next().unwrap();
    for secret in [
        creds.secret.as_str(),
        "not-the-secret",
        &token,
        signature,
        &admin,
    ] {
        assert!(!stored.contains(secret), "{secret} is in the audit log");
    }
}

backend_tests!(
    signing_keys_are_encrypted_at_rest,
    oauth_endpoints_are_audited_without_secrets_or_tokens,
    token_via_basic_and_post,
    token_endpoint_errors_follow_rfc_6749,
    a_remembered_token_still_expires,
    bad_tokens_are_refused_with_401,
    revocation_is_limited_to_the_owner,
    introspection_follows_rfc_7662,
    metadata_and_jwks_are_published,
    key_rotation_keeps_old_tokens_valid,
    a_second_replica_verifies_the_first_ones_tokens,
);
