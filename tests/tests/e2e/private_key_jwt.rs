//! `private_key_jwt` client authentication (RFC 7523 §2.2): the client proves
//! itself with a short-lived JWT signed by its registered key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use tollgate_e2e::TestStack;

use crate::support::{TokenReply, new_ed25519_key, post_form, register, sign_jwt};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

struct KeyClient {
    key: Ed25519KeyPair,
}

async fn key_client(stack: &TestStack) -> KeyClient {
    let key = new_ed25519_key();
    let x = B64.encode(key.public_key().as_ref());
    register(
        stack,
        &format!(
            r#"
            client_id = "signing-service"
            grant_types = ["client_credentials"]
            scopes = ["reports:read"]
            [[jwks]]
            kty = "OKP"
            crv = "Ed25519"
            x = "{x}"
            kid = "k1"
            alg = "EdDSA"
            use = "sig"
        "#
        ),
    )
    .await;
    KeyClient { key }
}

impl KeyClient {
    fn assertion(&self, stack: &TestStack, edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let now = stack.now();
        let mut claims = serde_json::json!({
            "iss": "signing-service",
            "sub": "signing-service",
            "aud": stack.issuer.clone(),
            "iat": now,
            "exp": now + 60,
            "jti": B64.encode(now.to_be_bytes()) + &B64.encode(rand_bytes()),
        });
        edit(&mut claims);
        sign_jwt(
            &serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": "k1"}),
            &claims,
            &self.key,
        )
    }
}

fn rand_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).unwrap();
    bytes
}

async fn token_with(stack: &TestStack, assertion: &str) -> TokenReply {
    post_form(
        stack,
        "/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ],
    )
    .await
}

fn assert_refused(reply: &TokenReply, description: &str) {
    reply.assert_error(401, "invalid_client");
    assert_eq!(reply.body["error_description"], description);
}

#[tokio::test]
async fn a_signed_assertion_authenticates_the_client() {
    let stack = TestStack::start().await.unwrap();
    let client = key_client(&stack).await;
    let reply = token_with(&stack, &client.assertion(&stack, |_| {})).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    // And at the introspection endpoint.
    let token = reply.body["access_token"].as_str().unwrap().to_owned();
    let assertion = client.assertion(&stack, |_| {});
    let reply = post_form(
        &stack,
        "/introspect",
        None,
        &[
            ("token", &token),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion),
        ],
    )
    .await;
    assert_eq!(reply.body["active"], true);
}

#[tokio::test]
async fn a_replayed_assertion_is_refused() {
    let stack = TestStack::start().await.unwrap();
    let client = key_client(&stack).await;
    let assertion = client.assertion(&stack, |_| {});
    assert_eq!(token_with(&stack, &assertion).await.status, 200);
    assert_refused(&token_with(&stack, &assertion).await, "client assertion was already used");
}

#[tokio::test]
async fn assertion_lifetimes_are_bounded() {
    let stack = TestStack::start().await.unwrap();
    let client = key_client(&stack).await;
    let now = stack.now();
    assert_refused(
        &token_with(&stack, &client.assertion(&stack, |c| c["exp"] = now.into())).await,
        "client assertion has expired",
    );
    assert_refused(
        &token_with(&stack, &client.assertion(&stack, |c| c["exp"] = (now + 3600).into())).await,
        "client assertion lives too long",
    );
    assert_refused(
        &token_with(&stack, &client.assertion(&stack, |c| c["iat"] = (now + 120).into())).await,
        "client assertion was issued in the future",
    );
}

#[tokio::test]
async fn a_wrong_key_audience_or_issuer_is_refused() {
    let stack = TestStack::start().await.unwrap();
    let client = key_client(&stack).await;
    let impostor = KeyClient { key: new_ed25519_key() };
    assert_refused(
        &token_with(&stack, &impostor.assertion(&stack, |_| {})).await,
        "client assertion is invalid",
    );
    assert_refused(
        &token_with(
            &stack,
            &client.assertion(&stack, |c| c["aud"] = "https://elsewhere.example/token".into()),
        )
        .await,
        "client assertion audience must be the issuer identifier alone",
    );
    assert_refused(
        &token_with(&stack, &client.assertion(&stack, |c| c["iss"] = "someone-else".into())).await,
        "client assertion is invalid",
    );
}

/// The audience-injection class the RFC 7523 update closes: an assertion whose
/// `aud` is this server's token endpoint URL (as some other server's client
/// would have been asked to make), or an array that includes the issuer among
/// others, is refused. Only the issuer identifier, as one string, is accepted.
#[tokio::test]
async fn an_assertion_for_the_token_endpoint_or_several_audiences_is_refused() {
    let stack = TestStack::start().await.unwrap();
    let client = key_client(&stack).await;
    let issuer = stack.issuer.clone();
    let refusal = "client assertion audience must be the issuer identifier alone";
    let token_endpoint = format!("{issuer}/token");
    for aud in [
        serde_json::json!(token_endpoint),
        serde_json::json!([issuer.clone()]),
        serde_json::json!([issuer.clone(), "https://elsewhere.example"]),
        serde_json::json!([token_endpoint]),
    ] {
        let assertion = client.assertion(&stack, |c| c["aud"] = aud.clone());
        assert_refused(&token_with(&stack, &assertion).await, refusal);
    }
    // The issuer alone is accepted.
    let reply = token_with(&stack, &client.assertion(&stack, |c| c["aud"] = issuer.into())).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
}

#[tokio::test]
async fn a_key_client_cannot_fall_back_to_a_secret() {
    let stack = TestStack::start().await.unwrap();
    key_client(&stack).await;
    let reply = post_form(
        &stack,
        "/token",
        Some(("signing-service", "guessed-secret-guessed-secret-guessed")),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_refused(&reply, "client must authenticate with private_key_jwt");
    // Nor be treated as public.
    let reply = post_form(
        &stack,
        "/token",
        None,
        &[("grant_type", "client_credentials"), ("client_id", "signing-service")],
    )
    .await;
    assert_refused(&reply, "client must authenticate with private_key_jwt");
}
