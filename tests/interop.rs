//! External identity provider mode, against two real providers over loopback HTTP, with tokens
//! obtained by the `oauth2` crate:
//!
//! - a third-party one, panva's `oidc-provider` from npm (`tests/idp`): JWT access tokens signed
//!   with RS256, ES256 and EdDSA keys, a namespaced partner claim, opaque tokens checked by
//!   RFC 7662 introspection and revoked by RFC 7009;
//! - a second Passerelle in local mode, whose key rotation makes the consumer fetch the JWKS again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::node::{self, NodeProcess};
use common::{Backend, TestApp};
use passerelle::config::AuthMode;
use serde_json::{json, Value};

const VIEWER: &str = "{ viewer { partner { slug } scopes } }";

async fn consumer_of(provider: &TestApp) -> TestApp {
    let jwks = provider.url("/.well-known/jwks.json");
    let issuer = provider.app.config.token_issuer.clone();
    let audience = provider.app.config.token_audience.clone();
    let backend = provider.backend;
    TestApp::spawn_with(backend, move |c| {
        c.auth_mode = AuthMode::External;
        c.external_jwks_url = Some(jwks);
        c.external_issuer = Some(issuer);
        c.external_audience = Some(audience);
    })
    .await
    .unwrap()
}

async fn external_tokens_are_verified_against_the_providers_jwks(provider: TestApp) {
    provider.seed().await;
    let consumer = consumer_of(&provider).await;
    consumer.seed().await;
    let creds = provider.client("caravan", "read research").await;
    let token = provider.token_for(&creds, "").await;
    let data = consumer.data_as(&token, VIEWER, json!({})).await;
    assert_eq!(data["viewer"]["partner"]["slug"], "caravan");
    assert_eq!(data["viewer"]["scopes"], json!(["read", "research"]));

    // The provider rotates its keys: the consumer fetches the JWKS again on the unknown kid.
    provider
        .app
        .keys
        .rotate()
        .await
        .map_err(|e| e.message())
        .unwrap();
    provider
        .app
        .keys
        .reload()
        .await
        .map_err(|e| e.message())
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let rotated = provider.token_for(&creds, "read").await;
    assert_ne!(
        jsonwebtoken::decode_header(&rotated).unwrap().kid,
        jsonwebtoken::decode_header(&token).unwrap().kid
    );
    let data = consumer.data_as(&rotated, VIEWER, json!({})).await;
    assert_eq!(data["viewer"]["scopes"], json!(["read"]));

    // A token signed by a key the provider does not publish (the consumer's own).
    let own = consumer.client("caravan", "read").await;
    let foreign = consumer.token_for(&own, "").await;
    let (status, challenge, _) = consumer
        .graphql_raw(Some(&format!("Bearer {foreign}")), VIEWER, json!({}))
        .await;
    assert_eq!(status, 401);
    assert!(challenge.unwrap().contains("invalid_token"));

    // A tampered payload keeps the provider's kid but not its signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: serde_json::Value =
        serde_json::from_slice(&b64.decode(&parts[1]).unwrap()).unwrap();
    claims["partner"] = json!("anvita");
    parts[1] = b64.encode(serde_json::to_vec(&claims).unwrap());
    let (status, challenge, _) = consumer
        .graphql_raw(
            Some(&format!("Bearer {}", parts.join("."))),
            VIEWER,
            json!({}),
        )
        .await;
    assert_eq!(status, 401);
    assert!(challenge.unwrap().contains("signature"));
}

async fn a_consumer_for_another_audience_refuses_the_token(provider: TestApp) {
    provider.seed().await;
    let jwks = provider.url("/.well-known/jwks.json");
    let issuer = provider.app.config.token_issuer.clone();
    let consumer = TestApp::spawn_with(provider.backend, move |c| {
        c.auth_mode = AuthMode::External;
        c.external_jwks_url = Some(jwks);
        c.external_issuer = Some(issuer);
        c.external_audience = Some("another-api".into());
    })
    .await
    .unwrap();
    let token = provider.token("caravan", "read").await;
    let (status, challenge, _) = consumer
        .graphql_raw(Some(&format!("Bearer {token}")), VIEWER, json!({}))
        .await;
    assert_eq!(status, 401);
    assert!(challenge.unwrap().contains("audience"));
}

/// Opaque tokens: the consumer asks the provider's RFC 7662 endpoint with the `oauth2` crate.
async fn opaque_tokens_are_introspected_at_the_provider(provider: TestApp) {
    provider.seed().await;
    // Passerelle's own client at the provider, allowed to introspect every token.
    let gateway = provider.client("department", "admin").await;
    let url = provider.url("/oauth/introspect");
    let consumer = TestApp::spawn_with(provider.backend, move |c| {
        c.auth_mode = AuthMode::External;
        c.external_introspection_url = Some(url);
        c.external_client_id = Some(gateway.id);
        c.external_client_secret = Some(gateway.secret);
    })
    .await
    .unwrap();
    consumer.seed().await;
    let creds = provider.client("anvita", "read read:sensitive").await;
    let token = provider.token_for(&creds, "read").await;
    let data = consumer.data_as(&token, VIEWER, json!({})).await;
    assert_eq!(data["viewer"]["partner"]["slug"], "anvita");
    assert_eq!(data["viewer"]["scopes"], json!(["read"]));
    // Cached: the same token again still works (and does not depend on a second call).
    consumer.data_as(&token, VIEWER, json!({})).await;

    // Revoked at the provider before the consumer ever saw it: inactive, 401.
    let revoked = provider.token_for(&creds, "").await;
    let res = provider
        .http
        .post(provider.url("/oauth/revoke"))
        .basic_auth(&creds.id, Some(&creds.secret))
        .form(&[("token", revoked.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for bad in [revoked.as_str(), "an-opaque-token-nobody-issued"] {
        let (status, challenge, _) = consumer
            .graphql_raw(Some(&format!("Bearer {bad}")), VIEWER, json!({}))
            .await;
        assert_eq!(status, 401, "{bad}");
        assert!(challenge.unwrap().contains("invalid_token"));
    }
}

backend_tests!(
    external_tokens_are_verified_against_the_providers_jwks,
    a_consumer_for_another_audience_refuses_the_token,
    opaque_tokens_are_introspected_at_the_provider,
);

// ---------------------------------------------------------------- oidc-provider from npm

/// The resource indicator (RFC 8707) and `aud` of Passerelle's tokens at the provider.
const RESOURCE: &str = "https://passerelle.test/graphql";
/// A namespaced claim, as Auth0 requires for custom claims.
const PARTNER_CLAIM: &str = "https://passerelle.test/partner";
const ELSEWHERE: &str = "https://elsewhere.test/api";

/// The provider's clients: (id, secret, partner, scopes it may get).
const CLIENTS: [(&str, &str, Option<&str>, &str); 3] = [
    (
        "caravan-app",
        "caravan-secret",
        Some("caravan"),
        "read write research",
    ),
    ("anvita-app", "anvita-secret", Some("anvita"), "read"),
    // Passerelle itself, to call introspection.
    ("passerelle", "passerelle-secret", None, ""),
];

struct Idp {
    _process: NodeProcess,
    issuer: String,
    /// The provider's OpenID discovery document.
    metadata: Value,
}

/// Starts oidc-provider on loopback; `None` (skip) without Node.js, except under `CI=true`.
async fn start_idp() -> Option<Idp> {
    let dir = tokio::task::spawn_blocking(|| node::prepare("idp", "oidc-provider"))
        .await
        .unwrap()?;
    let clients: Vec<Value> = CLIENTS
        .iter()
        .map(|(id, secret, partner, scope)| {
            json!({ "client_id": id, "client_secret": secret, "partner": partner, "scope": scope })
        })
        .collect();
    let config = json!({
        "clients": clients,
        "resources": {
            RESOURCE: { "alg": "RS256" },
            "https://passerelle.test/graphql/es256": { "audience": RESOURCE, "alg": "ES256" },
            "https://passerelle.test/graphql/eddsa": { "audience": RESOURCE, "alg": "EdDSA" },
            "https://passerelle.test/graphql/opaque": { "audience": RESOURCE, "format": "opaque" },
            ELSEWHERE: { "alg": "RS256" },
            "https://elsewhere.test/opaque": { "format": "opaque" },
        },
        "partnerClaim": PARTNER_CLAIM,
    });
    let process = tokio::task::spawn_blocking(move || {
        node::start(
            &dir,
            "provider.mjs",
            &[("IDP_CONFIG", config.to_string())],
            "ISSUER ",
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    let issuer = process.announced.clone();
    let metadata: Value = reqwest::get(format!("{issuer}/.well-known/openid-configuration"))
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    Some(Idp {
        _process: process,
        issuer,
        metadata,
    })
}

fn endpoint(idp: &Idp, name: &str) -> String {
    idp.metadata[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {:#}", idp.metadata))
        .to_owned()
}

fn http() -> oauth2::reqwest::Client {
    oauth2::reqwest::ClientBuilder::new()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn secret_of(client: &str) -> &'static str {
    CLIENTS.iter().find(|c| c.0 == client).unwrap().1
}

/// A client credentials token from the provider's token endpoint, for `resource`.
async fn idp_token(idp: &Idp, client: &str, scopes: &str, resource: &str) -> String {
    use oauth2::TokenResponse;
    let oauth = oauth2::basic::BasicClient::new(oauth2::ClientId::new(client.to_owned()))
        .set_client_secret(oauth2::ClientSecret::new(secret_of(client).to_owned()))
        .set_token_uri(oauth2::TokenUrl::new(endpoint(idp, "token_endpoint")).unwrap());
    let mut request = oauth
        .exchange_client_credentials()
        .add_extra_param("resource", resource);
    for s in scopes.split_whitespace() {
        request = request.add_scope(oauth2::Scope::new(s.to_owned()));
    }
    let token = request.request_async(&http()).await.unwrap();
    token.access_token().secret().clone()
}

/// Revokes `token` at the provider (RFC 7009) as the client it was issued to. A plain form POST:
/// the `oauth2` crate refuses revocation URLs that are not https, as RFC 7009 asks.
async fn idp_revoke(idp: &Idp, client: &str, token: &str) {
    let res = reqwest::Client::new()
        .post(endpoint(idp, "revocation_endpoint"))
        .basic_auth(client, Some(secret_of(client)))
        .form(&[("token", token), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

/// Passerelle in external mode for `idp`, configured from its discovery document.
async fn passerelle_for(idp: &Idp, backend: Backend, cache_secs: u64) -> Option<TestApp> {
    let jwks = endpoint(idp, "jwks_uri");
    let introspection = endpoint(idp, "introspection_endpoint");
    let issuer = idp.issuer.clone();
    let app = TestApp::spawn_with(backend, move |c| {
        c.auth_mode = AuthMode::External;
        c.external_jwks_url = Some(jwks);
        c.external_issuer = Some(issuer);
        c.external_audience = Some(RESOURCE.into());
        c.external_partner_claim = PARTNER_CLAIM.into();
        c.external_introspection_url = Some(introspection);
        c.external_client_id = Some("passerelle".into());
        c.external_client_secret = Some(secret_of("passerelle").into());
        c.external_introspection_cache_secs = cache_secs;
    })
    .await?;
    app.seed().await;
    Some(app)
}

async fn refusal(app: &TestApp, token: &str) -> String {
    let (status, challenge, body) = app
        .graphql_raw(Some(&format!("Bearer {token}")), VIEWER, json!({}))
        .await;
    assert_eq!(status, 401, "{body:#}");
    assert_eq!(body["code"], "INVALID_TOKEN", "{body:#}");
    let challenge = challenge.expect("a WWW-Authenticate header");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    challenge
}

const CARAVAN_ACTIONS: &str =
    r#"{ actions(first: 100, filter: { partners: ["caravan"] }) { nodes { localId } } }"#;

fn local_ids(data: &Value) -> Vec<String> {
    data["actions"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["localId"].as_str().unwrap().to_owned())
        .collect()
}

async fn jwts_of_oidc_provider_give_partner_and_scopes(backend: Backend) {
    let Some(idp) = start_idp().await else {
        return;
    };
    let Some(app) = passerelle_for(&idp, backend, 30).await else {
        return;
    };
    // One token per signing algorithm, all with Passerelle's audience.
    for (resource, alg) in [
        (RESOURCE.to_owned(), jsonwebtoken::Algorithm::RS256),
        (format!("{RESOURCE}/es256"), jsonwebtoken::Algorithm::ES256),
        (format!("{RESOURCE}/eddsa"), jsonwebtoken::Algorithm::EdDSA),
    ] {
        let token = idp_token(&idp, "caravan-app", "read write research", &resource).await;
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, alg);
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        let data = app.data_as(&token, VIEWER, json!({})).await;
        assert_eq!(data["viewer"]["partner"]["slug"], "caravan", "{alg:?}");
        assert_eq!(
            data["viewer"]["scopes"],
            json!(["read", "research", "write"]),
            "{alg:?}"
        );
    }
    // The provider grants only what the client may have: anvita asks for `write` in vain.
    let anvita = idp_token(&idp, "anvita-app", "read write", RESOURCE).await;
    let data = app.data_as(&anvita, VIEWER, json!({})).await;
    assert_eq!(data["viewer"]["partner"]["slug"], "anvita");
    assert_eq!(data["viewer"]["scopes"], json!(["read"]));

    // A private record written with the provider's token: its partner sees it, no other does.
    let caravan = idp_token(&idp, "caravan-app", "read write", RESOURCE).await;
    let created = app
        .graphql_as(
            &caravan,
            r#"mutation { upsertAction(input: { id: "caravan-interop-private", kind: EVENT, title: "Réunion interne" }) { effect } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        created["data"]["upsertAction"]["effect"], "CREATED",
        "{created:#}"
    );
    let own = local_ids(&app.data_as(&caravan, CARAVAN_ACTIONS, json!({})).await);
    assert!(
        own.contains(&"caravan-interop-private".to_owned()),
        "{own:?}"
    );
    let others = local_ids(&app.data_as(&anvita, CARAVAN_ACTIONS, json!({})).await);
    let public = local_ids(&app.data(CARAVAN_ACTIONS, json!({})).await);
    assert!(
        !others.contains(&"caravan-interop-private".to_owned()),
        "{others:?}"
    );
    assert_eq!(others, public);
    assert_eq!(own.len(), public.len() + 1);

    // A token of the same provider for another resource server.
    let elsewhere = idp_token(&idp, "caravan-app", "read", ELSEWHERE).await;
    assert!(refusal(&app, &elsewhere).await.contains("audience"));
    let opaque_elsewhere =
        idp_token(&idp, "caravan-app", "read", "https://elsewhere.test/opaque").await;
    assert!(refusal(&app, &opaque_elsewhere).await.contains("audience"));
}

async fn opaque_tokens_of_oidc_provider_are_introspected_and_revocation_is_bounded(
    backend: Backend,
) {
    let Some(idp) = start_idp().await else {
        return;
    };
    // Introspection answers are reused for 2 s at most.
    let Some(app) = passerelle_for(&idp, backend, 2).await else {
        return;
    };
    let opaque = format!("{RESOURCE}/opaque");
    let token = idp_token(&idp, "caravan-app", "read research", &opaque).await;
    assert!(jsonwebtoken::decode_header(&token).is_err(), "not a JWT");
    let data = app.data_as(&token, VIEWER, json!({})).await;
    assert_eq!(data["viewer"]["partner"]["slug"], "caravan");
    assert_eq!(data["viewer"]["scopes"], json!(["read", "research"]));

    // Revoked at the provider: the cached answer may serve it for the bound, never longer.
    idp_revoke(&idp, "caravan-app", &token).await;
    let started = std::time::Instant::now();
    let (status, _, _) = app
        .graphql_raw(Some(&format!("Bearer {token}")), VIEWER, json!({}))
        .await;
    if started.elapsed() < Duration::from_millis(1500) {
        assert_eq!(status, 200, "served from the introspection cache");
    }
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(refusal(&app, &token).await.contains("revoked"));

    // Revoked before Passerelle ever saw it, and a token the provider never issued.
    let other = idp_token(&idp, "caravan-app", "read", &opaque).await;
    idp_revoke(&idp, "caravan-app", &other).await;
    refusal(&app, &other).await;
    refusal(&app, "an-opaque-token-nobody-issued").await;
}

per_backend!(
    jwts_of_oidc_provider_give_partner_and_scopes,
    opaque_tokens_of_oidc_provider_are_introspected_and_revocation_is_bounded,
);
