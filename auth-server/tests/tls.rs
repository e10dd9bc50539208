//! The HTTP endpoints over TLS, driven by the `oauth2` crate, which insists on
//! https for revocation (RFC 7009 §2: "Clients MUST verify that the URL is an
//! HTTPS URL").

// In tests a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use oauth2::basic::BasicClient;
use oauth2::{
    AccessToken, ClientId, ClientSecret, IntrospectionUrl, RevocationUrl, StandardRevocableToken,
    TokenIntrospectionResponse as _, TokenResponse as _, TokenUrl,
};
use tollgate_auth_server::{Application, Config};
use tollgate_token::ManualClock;

const SECRET: &str = "batch-secret-batch-secret-batch-secret";

#[tokio::test]
async fn the_oauth2_crate_issues_introspects_and_revokes_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    // A self-signed certificate for the loopback address, trusted by this client only.
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let bootstrap = dir.path().join("bootstrap.toml");
    std::fs::write(
        &bootstrap,
        format!(
            r#"
            [[clients]]
            client_id = "batch"
            secret = "{SECRET}"
            grant_types = ["client_credentials"]
            scopes = ["reports:read"]
            audience = "batch"
            "#
        ),
    )
    .unwrap();

    let mut config = Config::local(dir.path().join("data"));
    config.tls.cert = Some(cert);
    config.tls.key = Some(key);
    config.bootstrap = Some(bootstrap);
    let app = Application::build(config, Arc::new(ManualClock::starting_now())).await.unwrap();
    let issuer = app.issuer().to_owned();
    assert!(issuer.starts_with("https://127.0.0.1:"), "{issuer}");
    tokio::spawn(app.run_until_stopped(std::future::pending()));

    let http = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let metadata: serde_json::Value = http
        .get(format!("{issuer}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = |key: &str| metadata[key].as_str().unwrap().to_owned();
    let client = BasicClient::new(ClientId::new("batch".into()))
        .set_client_secret(ClientSecret::new(SECRET.into()))
        .set_token_uri(TokenUrl::new(url("token_endpoint")).unwrap())
        .set_introspection_url(IntrospectionUrl::new(url("introspection_endpoint")).unwrap())
        .set_revocation_url(RevocationUrl::new(url("revocation_endpoint")).unwrap());

    let token = client.exchange_client_credentials().request_async(&http).await.unwrap();
    let access = AccessToken::new(token.access_token().secret().clone());
    assert!(client.introspect(&access).request_async(&http).await.unwrap().active());

    client
        .revoke_token(StandardRevocableToken::AccessToken(access.clone()))
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    assert!(!client.introspect(&access).request_async(&http).await.unwrap().active());

    // A client that does not trust the certificate gets no answer at all.
    let untrusting = reqwest::Client::new();
    assert!(untrusting.get(format!("{issuer}/jwks.json")).send().await.is_err());
}

/// RFC 6797: every answer over TLS carries `Strict-Transport-Security`,
/// whatever produced it (a page, an error, a 404, a listener limit); an answer
/// over plain HTTP never does (§7.2).
#[tokio::test]
async fn every_https_response_carries_strict_transport_security_and_no_http_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let mut config = Config::local(dir.path().join("tls"));
    config.tls.cert = Some(cert);
    config.tls.key = Some(key);
    config.limits.http_body_limit = 1024;
    let tls = Application::build(config, Arc::new(ManualClock::starting_now())).await.unwrap();
    let https = tls.issuer().to_owned();
    tokio::spawn(tls.run_until_stopped(std::future::pending()));
    let mut config = Config::local(dir.path().join("plain"));
    config.limits.http_body_limit = 1024;
    let plain = Application::build(config, Arc::new(ManualClock::starting_now())).await.unwrap();
    let http_origin = plain.issuer().to_owned();
    tokio::spawn(plain.run_until_stopped(std::future::pending()));

    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let hsts = |response: &reqwest::Response| {
        response.headers().get("strict-transport-security").map(|v| v.to_str().unwrap().to_owned())
    };
    for origin in [&https, &http_origin] {
        let expected = (origin == &https).then(|| "max-age=31536000".to_owned());
        let answers = [
            client.get(format!("{origin}/jwks.json")).send().await.unwrap(),
            client.get(format!("{origin}/authorize")).send().await.unwrap(),
            client
                .post(format!("{origin}/token"))
                .form(&[("grant_type", "x")])
                .send()
                .await
                .unwrap(),
            client.get(format!("{origin}/no-such-page")).send().await.unwrap(),
            client.post(format!("{origin}/token")).body("x".repeat(4096)).send().await.unwrap(),
        ];
        let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
        assert_eq!(statuses, [200, 400, 401, 404, 413], "{origin}");
        for answer in &answers {
            assert_eq!(hsts(answer), expected, "{origin} {}", answer.url());
        }
    }
}
