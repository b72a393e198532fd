//! External identity provider mode: a second Passerelle in `auth_mode = "external"` accepts the
//! JWTs of a real provider over loopback HTTP, verified against the provider's JWKS. The
//! provider here is a Passerelle in local mode (a real OAuth2 server with a real JWKS endpoint);
//! tokens are obtained from it with the `oauth2` crate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestApp;
use passerelle::config::AuthMode;
use serde_json::json;

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
        .store
        .run(passerelle::auth::keys::rotate)
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
