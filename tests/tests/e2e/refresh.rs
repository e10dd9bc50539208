//! Refresh tokens (RFC 6749 §6) with rotation (RFC 9700 §4.14.2).

use tollgate_client_app::ClientError;
use tollgate_client_app::claims::decode_unverified;
use tollgate_e2e::TestStack;

use crate::support::post_token;

const ALL: [&str; 4] = ["profile:read", "profile:write", "notes:read", "notes:write"];

fn refused_with(result: Result<impl std::fmt::Debug, ClientError>, code: &str) {
    match result {
        Err(ClientError::Refused { error, .. }) if error == code => {}
        other => panic!("expected {code}, got {other:?}"),
    }
}

#[tokio::test]
async fn refresh_rotates_and_the_old_refresh_token_is_refused() {
    let stack = TestStack::start().await.unwrap();
    let client = stack.client(&stack.cli_client()).await.unwrap();
    let first = stack.sign_in(&stack.cli_client(), "alice", &ALL).await.unwrap();

    stack.advance(120);
    let second = client.refresh(&first).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token, "the refresh token must rotate");
    assert_ne!(second.access_token, first.access_token);
    let (_, claims) = decode_unverified(second.access_token.expose()).unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["iat"].as_i64().unwrap(), stack.now());
    assert_eq!(second.scope, first.scope);

    // The spent refresh token is refused...
    refused_with(client.refresh(&first).await, "invalid_grant");
    // ...and the new one works, once.
    let third = client.refresh(&second).await.unwrap();
    refused_with(client.refresh(&second).await, "invalid_grant");
    let notes = stack.resource().await.unwrap().list_notes(third.access_token.expose(), "me").await;
    assert!(notes.is_ok(), "{notes:?}");
}

#[tokio::test]
async fn refresh_may_narrow_the_scope_but_never_widen_it() {
    let stack = TestStack::start().await.unwrap();
    let tokens =
        stack.sign_in(&stack.cli_client(), "alice", &["notes:read", "profile:read"]).await.unwrap();
    let refresh = tokens.refresh_token.clone().unwrap();
    let widened = post_token(
        &stack,
        None,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "tollgate-cli"),
            ("refresh_token", refresh.expose()),
            ("scope", "notes:read notes:write"),
        ],
    )
    .await;
    widened.assert_error(400, "invalid_scope");

    let narrowed = post_token(
        &stack,
        None,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "tollgate-cli"),
            ("refresh_token", refresh.expose()),
            ("scope", "notes:read"),
        ],
    )
    .await;
    assert_eq!(narrowed.status, 200, "{:?}", narrowed.body);
    assert_eq!(narrowed.body["scope"], "notes:read");
    let (_, claims) = decode_unverified(narrowed.body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["scope"], "notes:read");
}

#[tokio::test]
async fn a_refresh_token_is_bound_to_its_client() {
    let stack = TestStack::start().await.unwrap();
    let tokens = stack.sign_in(&stack.web_client(), "bob", &["notes:read"]).await.unwrap();
    // The public client presents the confidential client's refresh token.
    let reply = post_token(
        &stack,
        None,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "tollgate-cli"),
            ("refresh_token", tokens.refresh_token.as_ref().map(|t| t.expose().as_str()).unwrap()),
        ],
    )
    .await;
    reply.assert_error(400, "invalid_grant");
    // The rightful client can still use it: the attempt did not spend it.
    let client = stack.client(&stack.web_client()).await.unwrap();
    assert!(client.refresh(&tokens).await.is_ok());
}

#[tokio::test]
async fn a_refresh_token_expires() {
    let stack =
        TestStack::builder().tweak(|c| c.auth.refresh_token_ttl_secs = 3600).start().await.unwrap();
    let client = stack.client(&stack.cli_client()).await.unwrap();
    let tokens = stack.sign_in(&stack.cli_client(), "alice", &["notes:read"]).await.unwrap();
    stack.advance(3601);
    refused_with(client.refresh(&tokens).await, "invalid_grant");
}

#[tokio::test]
async fn an_expired_access_token_is_renewed_automatically() {
    let stack = TestStack::start().await.unwrap();
    let client = stack.client(&stack.cli_client()).await.unwrap();
    let tokens = stack.sign_in(&stack.cli_client(), "alice", &["notes:read"]).await.unwrap();
    let (same, renewed) = client.ensure_fresh(tokens.clone(), 30).await.unwrap();
    assert!(!renewed);
    assert_eq!(same.access_token, tokens.access_token);
    stack.advance(290);
    let (fresh, renewed) = client.ensure_fresh(tokens.clone(), 30).await.unwrap();
    assert!(renewed);
    assert!(fresh.expires_at > stack.now() + 200);
}

#[tokio::test]
async fn a_grant_ends_at_its_absolute_lifetime_however_often_it_is_refreshed() {
    let stack = TestStack::builder()
        .tweak(|c| {
            c.auth.refresh_token_ttl_secs = 3600;
            c.auth.grant_max_lifetime_secs = 3 * 3600;
        })
        .start()
        .await
        .unwrap();
    let client = stack.client(&stack.cli_client()).await.unwrap();
    let mut tokens = stack.sign_in(&stack.cli_client(), "alice", &["notes:read"]).await.unwrap();
    // Refreshed every 50 minutes, it never sits idle for its hour...
    for _ in 0..3 {
        stack.advance(3000);
        tokens = client.refresh(&tokens).await.unwrap();
    }
    // ...but three hours after alice approved, the grant is over.
    stack.advance(3000);
    match client.refresh(&tokens).await {
        Err(ClientError::Refused { error, description }) => assert_eq!(
            (error.as_str(), description.as_str()),
            (
                "invalid_grant",
                "the grant has reached its maximum lifetime; the owner must sign in again"
            )
        ),
        other => panic!("the grant outlived its lifetime: {other:?}"),
    }
}
