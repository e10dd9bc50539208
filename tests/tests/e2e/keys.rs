//! Signing-key rotation without a flag day: the resource server keeps accepting
//! tokens signed with the old key and the new one across the change.

use tollgate_client_app::claims::decode_unverified;
use tollgate_e2e::TestStack;

fn kid_of(token: &str) -> String {
    decode_unverified(token).unwrap().0["kid"].as_str().unwrap().to_owned()
}

async fn published_kids(stack: &TestStack) -> Vec<String> {
    let jwks: serde_json::Value =
        reqwest::get(stack.url("/jwks.json")).await.unwrap().json().await.unwrap();
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn rotation_keeps_old_and_new_tokens_valid_at_the_resource_server() {
    let stack = TestStack::builder()
        .tweak(|c| c.auth.key_propagation_secs = 150) // tokens live 300 s
        .start()
        .await
        .unwrap();
    let api = stack.resource().await.unwrap();
    let old_token = stack.sign_in(&stack.cli_client(), "alice", &["notes:read"]).await.unwrap();
    let old_kid = kid_of(old_token.access_token.expose());

    // The operator rotates: the new key is published at once, signs later.
    let new_kid = stack.rotate_keys().await.unwrap();
    assert_ne!(new_kid, old_kid);
    assert_eq!(published_kids(&stack).await, [old_kid.clone(), new_kid.clone()]);
    let still_old = stack.sign_in(&stack.cli_client(), "bob", &["notes:read"]).await.unwrap();
    assert_eq!(kid_of(still_old.access_token.expose()), old_kid, "not signing with it yet");

    // Resource servers learn the new key during the propagation delay.
    stack.wait_until_resource_server_knows(&new_kid).await.unwrap();
    stack.advance(160);
    let new_token = stack.sign_in(&stack.cli_client(), "alice", &["notes:read"]).await.unwrap();
    assert_eq!(kid_of(new_token.access_token.expose()), new_kid);

    // Both are accepted side by side: no flag day.
    assert!(api.list_notes(old_token.access_token.expose(), "me").await.is_ok());
    assert!(api.list_notes(new_token.access_token.expose(), "me").await.is_ok());

    // Once every old-key token has expired, the old key is withdrawn.
    stack.advance(300 + 300);
    assert_eq!(published_kids(&stack).await, std::slice::from_ref(&new_kid));
    let later = stack.sign_in(&stack.cli_client(), "bob", &["notes:read"]).await.unwrap();
    assert!(api.list_notes(later.access_token.expose(), "me").await.is_ok());
}

#[tokio::test]
async fn a_token_made_with_a_retired_key_does_not_introspect_as_active() {
    // The server's own checks (introspection, revocation, exchange) trust only
    // the keys it publishes: a retired key's private half, leaked from an old
    // backup, cannot mint tokens the server vouches for.
    let stack =
        TestStack::builder().tweak(|c| c.auth.key_propagation_secs = 10).start().await.unwrap();
    let store = stack.auth_core.store();
    let old = tollgate_auth_server::storage::KeyStore::signing_keys(store).await.unwrap().remove(0);
    let leaked = ring::signature::Ed25519KeyPair::from_pkcs8(old.private_pkcs8.expose()).unwrap();
    let forge = |now: i64| {
        let header = serde_json::json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": old.kid });
        let claims = serde_json::json!({
            "iss": stack.issuer, "sub": "alice", "aud": "tollgate-resource",
            "exp": now + 300, "iat": now, "jti": format!("forged-{now}"),
            "client_id": "tollgate-cli", "scope": "notes:read notes:write",
        });
        tollgate_e2e::forge::sign_jwt(&header, &claims, &leaked)
    };
    let introspect = |token: String| {
        let stack = &stack;
        async move {
            let secret = stack.secrets.resource_server.clone();
            let reply = reqwest::Client::new()
                .post(stack.url("/introspect"))
                .basic_auth("tollgate-resource", Some(secret.expose()))
                .form(&[("token", token)])
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status(), 200);
            reply.json::<serde_json::Value>().await.unwrap()
        }
    };

    stack.rotate_keys().await.unwrap();
    stack.advance(11);
    // Superseded but still published (its tokens may be unexpired): trusted.
    assert_eq!(introspect(forge(stack.now())).await["active"], true);

    // Past its publication window: gone from the JWKS, and from the server's
    // own trust with it.
    stack.advance(300 + 300);
    assert!(!published_kids(&stack).await.contains(&old.kid));
    assert_eq!(introspect(forge(stack.now())).await, serde_json::json!({ "active": false }));
}
