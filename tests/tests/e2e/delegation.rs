//! A call that travels client-app → resource server → notes store, carrying the
//! user's identity with a narrowed token at each hop (RFC 8693 token exchange).

use tokio::sync::broadcast;
use tollgate_client_app::claims::decode_unverified;
use tollgate_client_app::resource::bearer;
use tollgate_e2e::TestStack;
use tollgate_proto::notes::v1::ListNotesRequest;
use tollgate_proto::notes::v1::note_store_client::NoteStoreClient;
use tollgate_service_kit::auth::AuthContext;
use tollgate_service_kit::status::oauth_error_code;
use tonic::Code;

use crate::support::{assert_refused_as_revoked, post_form, register};

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const ALL: [&str; 4] = ["profile:read", "profile:write", "notes:read", "notes:write"];

/// The next context `log` saw.
async fn seen(log: &mut broadcast::Receiver<AuthContext>) -> AuthContext {
    tollgate_e2e::within("an admitted call", log.recv()).await.unwrap().unwrap()
}

async fn notes_store_as(stack: &TestStack, token: &str) -> Result<usize, tonic::Status> {
    let channel = tollgate_e2e::channel(stack.notes_url()).await.unwrap();
    let request = bearer(ListNotesRequest {}, token).unwrap();
    Ok(NoteStoreClient::new(channel).list_notes(request).await?.into_inner().notes.len())
}

/// Exchanges `subject` at the token endpoint as the resource server.
async fn exchange(
    stack: &TestStack,
    subject: &str,
    extra: &[(&str, &str)],
) -> crate::support::TokenReply {
    let secret = stack.secrets.resource_server.clone();
    let mut form = vec![
        ("grant_type", EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", ACCESS_TOKEN),
    ];
    form.extend_from_slice(extra);
    post_form(stack, "/token", Some(("tollgate-resource", secret.expose())), &form).await
}

#[tokio::test]
async fn each_hop_sees_the_user_and_a_narrower_token() {
    let stack = TestStack::start().await.unwrap();
    let mut at_resource = stack.resource_access();
    let mut at_notes = stack.notes_access();
    let tokens = stack.sign_in(&stack.cli_client(), "alice", &ALL).await.unwrap();
    let api = stack.resource().await.unwrap();

    let note = api
        .create_note(tokens.access_token.expose(), "me", "Delegated", "via two hops")
        .await
        .unwrap();
    // Hop 1, the resource server: alice, through the CLI, with everything she granted.
    let first = seen(&mut at_resource).await;
    assert_eq!(
        (first.subject.as_str(), first.client_id.as_str(), first.actor.as_deref()),
        ("alice", "tollgate-cli", None)
    );
    assert_eq!(first.scopes, ["notes:read", "notes:write", "profile:read", "profile:write"]);
    // Hop 2, the notes store: still alice, now with the resource server acting,
    // and only the scope this call needs.
    let second = seen(&mut at_notes).await;
    assert_eq!(
        (second.subject.as_str(), second.client_id.as_str()),
        ("alice", "tollgate-resource")
    );
    assert_eq!(second.actor.as_deref(), Some("tollgate-resource"));
    assert_eq!(second.scopes, ["notes:write"]);
    assert_ne!(second.token_id, first.token_id, "a different token at each hop");
    assert!(second.expires_at <= first.expires_at, "never outlives the user's token");
    assert_eq!((note.owner.as_str(), note.written_by.as_str()), ("alice", "tollgate-resource"));

    let notes = api.list_notes(tokens.access_token.expose(), "me").await.unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(seen(&mut at_notes).await.scopes, ["notes:read"]);
}

#[tokio::test]
async fn a_users_own_token_is_refused_by_the_notes_store() {
    let stack = TestStack::start().await.unwrap();
    let tokens = stack.sign_in(&stack.cli_client(), "alice", &["notes:read"]).await.unwrap();
    // The same token the resource server accepts, sent straight to the service behind it.
    let status = notes_store_as(&stack, tokens.access_token.expose()).await.unwrap_err();
    assert_eq!(
        (status.code(), oauth_error_code(&status), status.message()),
        (Code::Unauthenticated, Some("invalid_token"), "token is not meant for this resource")
    );
}

#[tokio::test]
async fn an_exchanged_token_names_the_actor_and_narrows_the_scope() {
    let stack = TestStack::start().await.unwrap();
    let tokens = stack.sign_in(&stack.cli_client(), "bob", &ALL).await.unwrap();
    let reply = exchange(
        &stack,
        tokens.access_token.expose(),
        &[("audience", "tollgate-notes-store"), ("scope", "notes:read")],
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["issued_token_type"], ACCESS_TOKEN);
    assert_eq!(reply.body["token_type"], "Bearer");
    assert!(reply.body.get("refresh_token").is_none());
    let (_, claims) = decode_unverified(reply.body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["aud"], "tollgate-notes-store");
    assert_eq!(claims["scope"], "notes:read");
    assert_eq!(claims["client_id"], "tollgate-resource");
    // RFC 8693 §4.1: the acting party.
    assert_eq!(claims["act"], serde_json::json!({"sub": "tollgate-resource"}));
    // And the notes store accepts it.
    assert_eq!(
        notes_store_as(&stack, reply.body["access_token"].as_str().unwrap()).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn exchange_policy_refuses_what_the_client_may_not_do() {
    let stack = TestStack::start().await.unwrap();
    let tokens = stack.sign_in(&stack.cli_client(), "alice", &["notes:read"]).await.unwrap();
    let subject = tokens.access_token.expose().as_str();
    // An audience the resource server is not registered to exchange for.
    exchange(&stack, subject, &[("audience", "other-api")])
        .await
        .assert_error(400, "invalid_target");
    // More scope than the user granted.
    exchange(&stack, subject, &[("audience", "tollgate-notes-store"), ("scope", "notes:write")])
        .await
        .assert_error(400, "invalid_scope");
    // Actor tokens (delegation chains built by the caller) are not accepted.
    exchange(&stack, subject, &[("audience", "tollgate-notes-store"), ("actor_token", subject)])
        .await
        .assert_error(400, "invalid_request");
    // A token that was not presented to the resource server.
    let other = stack.client(&stack.other_api_client()).await.unwrap();
    let foreign = other.client_credentials(&["notes:read".into()]).await.unwrap();
    let reply =
        exchange(&stack, foreign.access_token.expose(), &[("audience", "tollgate-notes-store")])
            .await;
    reply.assert_error(400, "invalid_request");
    assert_eq!(reply.body["error_description"], "subject_token was not issued for this client");
    // A client that is not registered for token exchange at all.
    let secret = stack.secrets.reporter.clone();
    post_form(
        &stack,
        "/token",
        Some(("tollgate-reporter", secret.expose())),
        &[
            ("grant_type", EXCHANGE),
            ("subject_token", subject),
            ("subject_token_type", ACCESS_TOKEN),
            ("audience", "tollgate-notes-store"),
        ],
    )
    .await
    .assert_error(400, "unauthorized_client");
}

#[tokio::test]
async fn revoking_the_users_grant_revokes_the_exchanged_tokens_too() {
    let stack = TestStack::start().await.unwrap();
    let tokens = stack.sign_in(&stack.cli_client(), "alice", &["notes:read"]).await.unwrap();
    let reply =
        exchange(&stack, tokens.access_token.expose(), &[("audience", "tollgate-notes-store")])
            .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let exchanged = reply.body["access_token"].as_str().unwrap().to_owned();
    // Before: the exchanged token works at the notes store.
    assert_eq!(notes_store_as(&stack, &exchanged).await.unwrap(), 0);

    // Alice's client revokes her grant (its refresh token, RFC 7009 §2.1).
    let reply = post_form(
        &stack,
        "/revoke",
        None,
        &[
            ("token", tokens.refresh_token.as_ref().map(|t| t.expose().as_str()).unwrap()),
            ("client_id", "tollgate-cli"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200);
    stack.sync_denylists().await.unwrap();

    // After: the notes store refuses the token derived from the grant, as the
    // resource server refuses the one it was derived from.
    let status = notes_store_as(&stack, &exchanged).await.unwrap_err();
    assert_eq!(
        (status.code(), oauth_error_code(&status), status.message()),
        (Code::Unauthenticated, Some("invalid_token"), "token has been revoked")
    );
    assert_refused_as_revoked(&stack, tokens.access_token.expose()).await;
    // The authorization server says so too.
    let secret = stack.secrets.resource_server.clone();
    let body = post_form(
        &stack,
        "/introspect",
        Some(("tollgate-resource", secret.expose())),
        &[("token", &exchanged)],
    )
    .await
    .body;
    assert_eq!(body, serde_json::json!({"active": false}));
    // And a revoked subject token cannot be exchanged again.
    exchange(&stack, tokens.access_token.expose(), &[("audience", "tollgate-notes-store")])
        .await
        .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn the_notes_store_serves_users_only_through_a_trusted_actor() {
    let stack = TestStack::start().await.unwrap();
    // A service that talks to the notes store in its own name, acting for nobody.
    let direct = register(
        &stack,
        r#"
        client_id = "direct-service"
        secret = "direct-service-secret-direct-service-secret"
        grant_types = ["client_credentials"]
        scopes = ["notes:read"]
        audience = "tollgate-notes-store"
    "#,
    )
    .await;
    let token =
        stack.client(&direct).await.unwrap().client_credentials(&[]).await.unwrap().access_token;
    let status = notes_store_as(&stack, token.expose()).await.unwrap_err();
    assert_eq!(
        (status.code(), oauth_error_code(&status), status.message()),
        (
            Code::PermissionDenied,
            Some("access_denied"),
            "calls must come through a trusted service acting for the owner"
        )
    );

    // A service allowed to exchange for the notes store, but not one it trusts.
    let rogue = register(
        &stack,
        r#"
        client_id = "rogue-service"
        secret = "rogue-service-secret-rogue-service-secret"
        grant_types = ["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"]
        scopes = ["notes:read"]
        audience = "rogue-service"
        token_exchange_audiences = ["tollgate-notes-store"]
    "#,
    )
    .await;
    let own =
        stack.client(&rogue).await.unwrap().client_credentials(&[]).await.unwrap().access_token;
    let secret = rogue.client_secret.clone().unwrap();
    let reply = post_form(
        &stack,
        "/token",
        Some(("rogue-service", secret.expose())),
        &[
            ("grant_type", EXCHANGE),
            ("subject_token", own.expose()),
            ("subject_token_type", ACCESS_TOKEN),
            ("audience", "tollgate-notes-store"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let status =
        notes_store_as(&stack, reply.body["access_token"].as_str().unwrap()).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::PermissionDenied, "this service does not trust the acting party")
    );
}

/// A resource server that exchanges a user's broad token gets no scope it is
/// not registered for itself: alice's token carries `profile:write`, which the
/// resource server may not hold, so asking for it at the notes store is
/// refused, and an exchange without `scope` leaves it out.
#[tokio::test]
async fn an_exchange_cannot_carry_a_scope_the_exchanging_client_is_not_registered_for() {
    let stack = TestStack::start().await.unwrap();
    let tokens = stack.sign_in(&stack.cli_client(), "alice", &ALL).await.unwrap();
    let user = tokens.access_token.expose();
    let notes = ("audience", "tollgate-notes-store");
    let refused = exchange(&stack, user, &[notes, ("scope", "notes:read profile:write")]).await;
    refused.assert_error(400, "invalid_scope");
    assert_eq!(
        refused.body["error_description"],
        "scope exceeds what this client is registered for"
    );
    let narrowed = exchange(&stack, user, &[notes]).await;
    assert_eq!(narrowed.status, 200, "{:?}", narrowed.body);
    assert_eq!(narrowed.body["scope"], "notes:read notes:write");
}
