//! After issuance: introspection (RFC 7662), revocation (RFC 7009), replay
//! detection for codes and refresh tokens, and the resource server refusing
//! revoked tokens once its denylist has synced. (That the sync happens within
//! one interval plus one fetch is proven by service-kit's `revocation` tests,
//! on tokio's paused clock; here the tests sync on cue, so nothing depends on
//! how fast this machine is.)

use tollgate_client_app::ClientError;
use tollgate_client_app::claims::decode_unverified;
use tollgate_e2e::TestStack;
use tollgate_proto::auth::v1::token_service_client::TokenServiceClient;
use tollgate_proto::auth::v1::{ClientAuthentication, IntrospectRequest, RevokeRequest};
use tollgate_service_kit::status::oauth_error_code;
use tonic::Code;

use crate::support::{assert_refused_as_revoked, obtain_code, post_form, redeem};

fn jti_of(token: &str) -> String {
    decode_unverified(token).unwrap().1["jti"].as_str().unwrap().to_owned()
}

async fn introspect_as(stack: &TestStack, client: (&str, &str), token: &str) -> serde_json::Value {
    let reply = post_form(stack, "/introspect", Some(client), &[("token", token)]).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.headers["cache-control"], "no-store");
    reply.body
}

#[tokio::test]
async fn introspection_tells_the_tokens_client_and_audience_and_nobody_else() {
    let stack = TestStack::start().await.unwrap();
    let tokens = stack.sign_in(&stack.web_client(), "alice", &["notes:read"]).await.unwrap();
    let rs_secret = stack.secrets.resource_server.clone();
    let resource_server = ("tollgate-resource", rs_secret.expose().as_str());

    // The resource server, whose id is the token's audience.
    let body = introspect_as(&stack, resource_server, tokens.access_token.expose()).await;
    assert_eq!(body["active"], true);
    assert_eq!(body["sub"], "alice");
    assert_eq!(body["client_id"], "tollgate-web");
    assert_eq!(body["scope"], "notes:read");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["iss"], stack.issuer.as_str());
    assert_eq!(body["aud"], serde_json::json!(["tollgate-resource"]));
    assert_eq!(body["jti"], jti_of(tokens.access_token.expose()).as_str());

    // The client that holds it: its refresh token too.
    let web_secret = stack.secrets.web.clone();
    let web = ("tollgate-web", web_secret.expose().as_str());
    let body = introspect_as(
        &stack,
        web,
        tokens.refresh_token.as_ref().map(|t| t.expose().as_str()).unwrap(),
    )
    .await;
    assert_eq!((body["active"].as_bool(), body["sub"].as_str()), (Some(true), Some("alice")));

    // Any other client learns nothing, not even that the token exists.
    let reporter_secret = stack.secrets.reporter.clone();
    let reporter = ("tollgate-reporter", reporter_secret.expose().as_str());
    for token in [
        tokens.access_token.expose().as_str(),
        tokens.refresh_token.as_ref().map(|t| t.expose().as_str()).unwrap(),
    ] {
        assert_eq!(
            introspect_as(&stack, reporter, token).await,
            serde_json::json!({"active": false})
        );
    }
    // Garbage is inactive, not an error.
    assert_eq!(introspect_as(&stack, web, "garbage").await, serde_json::json!({"active": false}));
}

#[tokio::test]
async fn introspection_requires_an_authenticated_confidential_client() {
    let stack = TestStack::start().await.unwrap();
    let tokens = stack.sign_in(&stack.cli_client(), "alice", &["notes:read"]).await.unwrap();
    let token = tokens.access_token.expose().as_str();
    post_form(&stack, "/introspect", None, &[("token", token)])
        .await
        .assert_error(401, "invalid_client");
    post_form(&stack, "/introspect", Some(("tollgate-web", "wrong")), &[("token", token)])
        .await
        .assert_error(401, "invalid_client");
    // A public client cannot authenticate, so it cannot introspect.
    post_form(&stack, "/introspect", None, &[("token", token), ("client_id", "tollgate-cli")])
        .await
        .assert_error(401, "invalid_client");
    let web_secret = stack.secrets.web.clone();
    post_form(&stack, "/introspect", Some(("tollgate-web", web_secret.expose())), &[])
        .await
        .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn expired_spent_and_revoked_tokens_are_inactive() {
    let stack = TestStack::start().await.unwrap();
    let web_secret = stack.secrets.web.clone();
    let web = ("tollgate-web", web_secret.expose().as_str());
    let client = stack.client(&stack.web_client()).await.unwrap();
    let first = stack.sign_in(&stack.web_client(), "bob", &["notes:read"]).await.unwrap();
    let second = client.refresh(&first).await.unwrap();
    // The rotated-away refresh token is spent.
    let body = introspect_as(
        &stack,
        web,
        first.refresh_token.as_ref().map(|t| t.expose().as_str()).unwrap(),
    )
    .await;
    assert_eq!(body, serde_json::json!({"active": false}));
    // An access token past its exp (no leeway at the issuer).
    stack.advance(300);
    assert_eq!(introspect_as(&stack, web, second.access_token.expose()).await["active"], false);
    // A revoked refresh token.
    let refresh = second.refresh_token.clone().unwrap();
    assert_eq!(introspect_as(&stack, web, refresh.expose()).await["active"], true);
    let reply = post_form(&stack, "/revoke", Some(web), &[("token", refresh.expose())]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(introspect_as(&stack, web, refresh.expose()).await["active"], false);
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_the_grant_and_its_access_tokens() {
    let stack = TestStack::start().await.unwrap();
    let client = stack.client(&stack.cli_client()).await.unwrap();
    let first = stack.sign_in(&stack.cli_client(), "alice", &["notes:read"]).await.unwrap();
    let second = client.refresh(&first).await.unwrap();
    let api = stack.resource().await.unwrap();
    assert!(api.list_notes(second.access_token.expose(), "me").await.is_ok());

    // A public client revokes with its client_id alone (RFC 7009 §2.1).
    let refresh = second.refresh_token.clone().unwrap();
    let reply = post_form(
        &stack,
        "/revoke",
        None,
        &[
            ("token", refresh.expose()),
            ("token_type_hint", "refresh_token"),
            ("client_id", "tollgate-cli"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);

    let refused = client.refresh(&second).await;
    assert!(
        matches!(refused, Err(ClientError::Refused { ref error, .. }) if error == "invalid_grant"),
        "{refused:?}"
    );
    // Both access tokens of the grant, the first one's and the refreshed one's.
    assert_refused_as_revoked(&stack, second.access_token.expose()).await;
    assert_refused_as_revoked(&stack, first.access_token.expose()).await;
}

#[tokio::test]
async fn revoking_an_access_token_stops_it_at_the_resource_servers_next_sync() {
    let stack = TestStack::start().await.unwrap();
    let reporter = stack.client(&stack.reporter_client()).await.unwrap();
    let tokens = reporter.client_credentials(&[]).await.unwrap();
    let api = stack.resource().await.unwrap();
    assert!(api.usage_report(tokens.access_token.expose()).await.is_ok());

    let secret = stack.secrets.reporter.clone();
    let reply = post_form(
        &stack,
        "/revoke",
        Some(("tollgate-reporter", secret.expose())),
        &[("token", tokens.access_token.expose()), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(reply.status, 200);
    stack.sync_denylists().await.unwrap();
    let status = api.usage_report(tokens.access_token.expose()).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "token has been revoked")
    );
    // Another token of the same client is unaffected.
    let fresh = reporter.client_credentials(&[]).await.unwrap();
    assert!(api.usage_report(fresh.access_token.expose()).await.is_ok());
}

#[tokio::test]
async fn a_client_cannot_revoke_another_clients_token() {
    let stack = TestStack::start().await.unwrap();
    let tokens = stack.sign_in(&stack.web_client(), "alice", &["notes:read"]).await.unwrap();
    let reporter_secret = stack.secrets.reporter.clone();
    for token in [
        tokens.refresh_token.as_ref().map(|t| t.expose().as_str()).unwrap(),
        tokens.access_token.expose().as_str(),
    ] {
        let reply = post_form(
            &stack,
            "/revoke",
            Some(("tollgate-reporter", reporter_secret.expose())),
            &[("token", token)],
        )
        .await;
        // Refused, not a silent 200 that leaves the token valid.
        reply.assert_error(400, "unauthorized_client");
    }
    // Both still work.
    let client = stack.client(&stack.web_client()).await.unwrap();
    let refreshed = client.refresh(&tokens).await.unwrap();
    let api = stack.resource().await.unwrap();
    assert!(api.list_notes(tokens.access_token.expose(), "me").await.is_ok());
    assert!(api.list_notes(refreshed.access_token.expose(), "me").await.is_ok());
}

#[tokio::test]
async fn revoking_an_unknown_token_succeeds_but_authentication_is_still_required() {
    let stack = TestStack::start().await.unwrap();
    let secret = stack.secrets.reporter.clone();
    let reply = post_form(
        &stack,
        "/revoke",
        Some(("tollgate-reporter", secret.expose())),
        &[("token", "no-such-token")],
    )
    .await;
    assert_eq!(reply.status, 200);
    post_form(&stack, "/revoke", Some(("tollgate-reporter", "wrong")), &[("token", "x")])
        .await
        .assert_error(401, "invalid_client");
}

#[tokio::test]
async fn a_replayed_code_is_refused_and_revokes_what_the_first_redemption_got() {
    let stack = TestStack::start().await.unwrap();
    let code = obtain_code(&stack, "tollgate-cli", "alice", "notes:read").await;
    let first = redeem(&stack, "tollgate-cli", &code).await;
    assert_eq!(first.status, 200);
    let access = first.body["access_token"].as_str().unwrap().to_owned();
    let refresh = first.body["refresh_token"].as_str().unwrap().to_owned();

    // The attacker (or a confused client) redeems the same code again.
    redeem(&stack, "tollgate-cli", &code).await.assert_error(400, "invalid_grant");

    // RFC 6749 §4.1.2: everything issued from the code is revoked.
    let reply = post_form(
        &stack,
        "/token",
        None,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "tollgate-cli"),
            ("refresh_token", &refresh),
        ],
    )
    .await;
    reply.assert_error(400, "invalid_grant");
    assert_refused_as_revoked(&stack, &access).await;
}

#[tokio::test]
async fn refresh_token_reuse_after_the_grace_window_revokes_the_whole_family() {
    let stack = TestStack::start().await.unwrap();
    let client = stack.client(&stack.cli_client()).await.unwrap();
    let first = stack.sign_in(&stack.cli_client(), "alice", &["notes:read"]).await.unwrap();
    let second = client.refresh(&first).await.unwrap();
    stack.advance(3); // past the 2 s grace window

    // The spent token is presented again: a stolen copy, or a replay.
    let refused = client.refresh(&first).await;
    assert!(
        matches!(refused, Err(ClientError::Refused { ref error, .. }) if error == "invalid_grant")
    );
    // The rightful holder's current token dies with the family...
    let refused = client.refresh(&second).await;
    assert!(
        matches!(refused, Err(ClientError::Refused { ref error, .. }) if error == "invalid_grant"),
        "{refused:?}"
    );
    // ...and so do its access tokens.
    assert_refused_as_revoked(&stack, second.access_token.expose()).await;
}

#[tokio::test]
async fn a_concurrent_refresh_within_the_grace_window_is_refused_without_revoking() {
    let stack = TestStack::start().await.unwrap();
    let client = stack.client(&stack.cli_client()).await.unwrap();
    let first = stack.sign_in(&stack.cli_client(), "alice", &["notes:read"]).await.unwrap();
    let second = client.refresh(&first).await.unwrap();
    stack.advance(1);
    // The same client's second, racing request with the old token.
    let refused = client.refresh(&first).await;
    assert!(
        matches!(refused, Err(ClientError::Refused { ref error, .. }) if error == "invalid_grant")
    );
    // The winner's tokens are intact.
    let third = client.refresh(&second).await.unwrap();
    assert!(
        stack.resource().await.unwrap().list_notes(third.access_token.expose(), "me").await.is_ok()
    );
}

#[tokio::test]
async fn introspection_and_revocation_over_grpc() {
    let stack = TestStack::start().await.unwrap();
    let tokens = stack.sign_in(&stack.web_client(), "bob", &["notes:read"]).await.unwrap();
    let channel = tollgate_e2e::channel(stack.auth_grpc_url()).await.unwrap();
    let mut grpc = TokenServiceClient::new(channel);
    let web = || {
        Some(ClientAuthentication {
            client_id: "tollgate-web".into(),
            client_secret: Some(stack.secrets.web.clone().into_exposed()),
            client_assertion: None,
        })
    };
    let reporter = || {
        Some(ClientAuthentication {
            client_id: "tollgate-reporter".into(),
            client_secret: Some(stack.secrets.reporter.clone().into_exposed()),
            client_assertion: None,
        })
    };

    let active = grpc
        .introspect(IntrospectRequest {
            client: web(),
            token: tokens.access_token.expose().clone(),
            token_type_hint: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(active.active);
    assert_eq!(active.sub.as_deref(), Some("bob"));

    let refused = grpc
        .revoke(RevokeRequest {
            client: reporter(),
            token: tokens.access_token.expose().clone(),
            token_type_hint: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(oauth_error_code(&refused), Some("unauthorized_client"));

    grpc.revoke(RevokeRequest {
        client: web(),
        token: tokens.access_token.expose().clone(),
        token_type_hint: None,
    })
    .await
    .unwrap();
    let inactive = grpc
        .introspect(IntrospectRequest {
            client: web(),
            token: tokens.access_token.expose().clone(),
            token_type_hint: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!inactive.active);
    assert_eq!(inactive.sub, None);
    assert_refused_as_revoked(&stack, tokens.access_token.expose()).await;
}
