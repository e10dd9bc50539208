//! What "any standard OAuth client works" means, checked with libraries that know
//! nothing of Tollgate: the `oauth2` crate configured only from the RFC 8414
//! metadata document, and `jwt-compact` verifying the access tokens against the
//! published JWKS.

use std::collections::HashMap;

use jwt_compact::alg::{Ed25519, Es256};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{Algorithm, AlgorithmExt as _, UntrustedToken};
use oauth2::basic::BasicClient;
use oauth2::{AuthUrl, ClientId, ClientSecret, Scope, TokenResponse as _, TokenUrl};
use tollgate_e2e::TestStack;

type Claims = HashMap<String, serde_json::Value>;

async fn get_json(url: &str) -> serde_json::Value {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.unwrap()
}

/// Verifies `token` with jwt-compact against the key the JWKS names by `kid`.
fn verify_independently(token: &str, jwks: &serde_json::Value, now: i64) -> Claims {
    let untrusted = UntrustedToken::new(token).unwrap();
    assert_eq!(untrusted.header().token_type.as_deref(), Some("at+jwt"));
    let kid = untrusted.header().key_id.clone().expect("a kid");
    let jwk_json = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("the kid is published")
        .clone();
    assert_eq!(jwk_json["use"], "sig");
    assert_eq!(jwk_json["alg"], untrusted.algorithm());
    let jwk: JsonWebKey<'_> = serde_json::from_value(jwk_json).unwrap();
    let token = match untrusted.algorithm() {
        "EdDSA" => {
            let key = <Ed25519 as Algorithm>::VerifyingKey::try_from(&jwk).unwrap();
            Ed25519.validator::<Claims>(&key).validate(&untrusted).unwrap()
        }
        "ES256" => {
            let key = <Es256 as Algorithm>::VerifyingKey::try_from(&jwk).unwrap();
            Es256.validator::<Claims>(&key).validate(&untrusted).unwrap()
        }
        other => panic!("unexpected algorithm {other}"),
    };
    let claims = token.claims();
    let (iat, exp) =
        (claims.issued_at.unwrap().timestamp(), claims.expiration.unwrap().timestamp());
    assert!(iat <= now && now < exp, "iat {iat} <= now {now} < exp {exp}");
    token.claims().custom.clone()
}

#[tokio::test]
async fn metadata_describes_the_server_exactly() {
    let stack = TestStack::start().await.unwrap();
    let metadata =
        get_json(&format!("{}/.well-known/oauth-authorization-server", stack.issuer)).await;
    assert_eq!(metadata["issuer"], stack.issuer.as_str());
    assert_eq!(metadata["authorization_endpoint"], format!("{}/authorize", stack.issuer));
    assert_eq!(metadata["token_endpoint"], format!("{}/token", stack.issuer));
    assert_eq!(metadata["jwks_uri"], format!("{}/jwks.json", stack.issuer));
    assert_eq!(metadata["introspection_endpoint"], format!("{}/introspect", stack.issuer));
    assert_eq!(metadata["revocation_endpoint"], format!("{}/revoke", stack.issuer));
    // Introspection is for confidential clients only; revocation also for public ones.
    assert_eq!(
        metadata["introspection_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post", "private_key_jwt"])
    );
    assert_eq!(
        metadata["device_authorization_endpoint"],
        format!("{}/device_authorization", stack.issuer)
    );
    assert_eq!(
        metadata["token_endpoint_auth_signing_alg_values_supported"],
        serde_json::json!(["EdDSA", "ES256"])
    );
    assert_eq!(metadata["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(metadata["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(metadata["authorization_response_iss_parameter_supported"], true);
    let grants = metadata["grant_types_supported"].as_array().unwrap();
    for grant in [
        "authorization_code",
        "client_credentials",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "urn:ietf:params:oauth:grant-type:device_code",
    ] {
        assert!(grants.iter().any(|g| g == grant), "{grant}");
    }
    assert!(!grants.iter().any(|g| g == "password" || g == "implicit"));
    let methods = metadata["token_endpoint_auth_methods_supported"].as_array().unwrap();
    for method in ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"] {
        assert!(methods.iter().any(|m| m == method), "{method}");
    }
}

#[tokio::test]
async fn the_oauth2_crate_configured_from_metadata_gets_tokens_that_verify_against_the_jwks() {
    let stack = TestStack::start().await.unwrap();
    let metadata =
        get_json(&format!("{}/.well-known/oauth-authorization-server", stack.issuer)).await;
    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let client = BasicClient::new(ClientId::new("tollgate-reporter".into()))
        .set_client_secret(ClientSecret::new(stack.secrets.reporter.clone().into_exposed()))
        .set_auth_uri(
            AuthUrl::new(metadata["authorization_endpoint"].as_str().unwrap().into()).unwrap(),
        )
        .set_token_uri(TokenUrl::new(metadata["token_endpoint"].as_str().unwrap().into()).unwrap());
    let response = client
        .exchange_client_credentials()
        .add_scope(Scope::new("reports:read".into()))
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(response.expires_in().unwrap().as_secs(), 300);

    let jwks = get_json(metadata["jwks_uri"].as_str().unwrap()).await;
    let claims = verify_independently(response.access_token().secret(), &jwks, stack.now());
    assert_eq!(claims["iss"], stack.issuer.as_str());
    assert_eq!(claims["sub"], "tollgate-reporter");
    assert_eq!(claims["aud"], "tollgate-resource");
    assert_eq!(claims["scope"], "reports:read");

    // A resource owner's token from the authorization-code flow verifies the same way.
    let tokens = stack.sign_in(&stack.cli_client(), "alice", &["notes:read"]).await.unwrap();
    let claims = verify_independently(tokens.access_token.expose(), &jwks, stack.now());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["client_id"], "tollgate-cli");
}

#[tokio::test]
async fn es256_is_selectable_and_verifies_independently_and_at_the_resource_server() {
    let stack = TestStack::builder()
        .tweak(|c| c.auth.signing_alg = tollgate_auth_server::config::SigningAlg::Es256)
        .start()
        .await
        .unwrap();
    let jwks = get_json(&format!("{}/jwks.json", stack.issuer)).await;
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    assert_eq!(jwks["keys"][0]["crv"], "P-256");
    assert!(jwks["keys"][0].get("d").is_none(), "the JWKS must not hold private parts");
    let tokens = stack.sign_in(&stack.cli_client(), "bob", &["notes:read"]).await.unwrap();
    let claims = verify_independently(tokens.access_token.expose(), &jwks, stack.now());
    assert_eq!(claims["sub"], "bob");
    let notes =
        stack.resource().await.unwrap().list_notes(tokens.access_token.expose(), "me").await;
    assert!(notes.is_ok(), "{notes:?}");
}

#[tokio::test]
async fn the_jwks_publishes_public_keys_only() {
    let stack = TestStack::start().await.unwrap();
    let jwks = get_json(&format!("{}/jwks.json", stack.issuer)).await;
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str()),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );
    assert!(key.get("d").is_none(), "the JWKS must not hold private parts");
    // RFC 7638 thumbprint as kid: recomputable by anyone from the public key.
    let jwk: JsonWebKey<'_> = serde_json::from_value(key.clone()).unwrap();
    let thumbprint = jwk.thumbprint::<sha2::Sha256>();
    use base64::Engine as _;
    assert_eq!(key["kid"], base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(thumbprint));
}

#[tokio::test]
async fn the_oauth2_crate_introspects_with_the_advertised_endpoint() {
    use oauth2::{AccessToken, IntrospectionUrl, TokenIntrospectionResponse as _};
    let stack = TestStack::start().await.unwrap();
    let metadata =
        get_json(&format!("{}/.well-known/oauth-authorization-server", stack.issuer)).await;
    let tokens = stack.sign_in(&stack.cli_client(), "alice", &["notes:read"]).await.unwrap();
    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    // The resource server introspects a token meant for it.
    let client = BasicClient::new(ClientId::new("tollgate-resource".into()))
        .set_client_secret(ClientSecret::new(stack.secrets.resource_server.clone().into_exposed()))
        .set_introspection_url(
            IntrospectionUrl::new(metadata["introspection_endpoint"].as_str().unwrap().into())
                .unwrap(),
        );
    let token = AccessToken::new(tokens.access_token.expose().clone());
    let answer = client.introspect(&token).request_async(&http).await.unwrap();
    assert!(answer.active());
    assert_eq!(answer.sub(), Some("alice"));
    assert_eq!(answer.client_id().map(|c| c.as_str()), Some("tollgate-cli"));
    let garbage = AccessToken::new("garbage".into());
    assert!(!client.introspect(&garbage).request_async(&http).await.unwrap().active());
}
