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
