//! Remembered consent, and the owner's page to see and withdraw approvals.

use tollgate_client_app::owner::ScriptedOwner;
use tollgate_e2e::{TestStack, approve, sign_in, sign_in_to_consent};

use crate::support::{
    CHALLENGE, LOOPBACK_REDIRECT, account_page, assert_refused_as_revoked, authorization_url,
    query_param, withdraw,
};

fn authz(stack: &TestStack, scope: &str) -> url::Url {
    authorization_url(stack, "tollgate-cli", LOOPBACK_REDIRECT, scope, Some((CHALLENGE, "S256")))
}

/// The confidential web client at its registered https redirect URI: only such
/// approvals are remembered.
const WEB_REDIRECT: &str = "https://web.example/callback";

fn web_authz(stack: &TestStack, scope: &str) -> url::Url {
    authorization_url(stack, "tollgate-web", WEB_REDIRECT, scope, Some((CHALLENGE, "S256")))
}

#[tokio::test]
async fn a_public_clients_authorization_always_shows_the_consent_page() {
    // RFC 8252 §8.6, RFC 6749 §10.2: anyone can use the public CLI client's id,
    // and its loopback redirect takes any port. Alice approved the CLI once; a
    // local process then opens an authorization URL of its own in her browser,
    // with its own port. Were the approval remembered, the code would go
    // straight to that process.
    let stack = TestStack::start().await.unwrap();
    let mut owner = ScriptedOwner::new().unwrap();
    let answer = approve(&mut owner, &authz(&stack, "notes:read"), "alice", "alice-demo-password")
        .await
        .unwrap();
    assert!(query_param(&answer.location().unwrap(), "code").is_some());

    let attacker = "http://127.0.0.1:45999/callback";
    let url = authorization_url(
        &stack,
        "tollgate-cli",
        attacker,
        "notes:read",
        Some((CHALLENGE, "S256")),
    );
    let page = owner.get(&url).await.unwrap();
    assert_eq!(page.status, 200, "no redirect: the owner is asked");
    assert!(page.location().is_none());
    assert!(page.body.contains("approve") && page.body.contains("notes:read"), "{}", page.body);
    // A new browser session, after signing in: asked as well.
    let (_, next) =
        sign_in(&mut ScriptedOwner::new().unwrap(), &url, "alice", "alice-demo-password")
            .await
            .unwrap();
    assert_eq!(next.status, 200);
    assert!(next.location().is_none());
}

#[tokio::test]
async fn an_approval_is_not_asked_for_again_unless_more_is_asked() {
    let stack = TestStack::start().await.unwrap();
    let mut owner = ScriptedOwner::new().unwrap();
    let authz = web_authz;
    // First time: the consent page.
    let answer = approve(&mut owner, &authz(&stack, "notes:read"), "alice", "alice-demo-password")
        .await
        .unwrap();
    assert!(query_param(&answer.location().unwrap(), "code").is_some());
    // Same browser, same scopes: straight back to the client with a code.
    let again = owner.get(&authz(&stack, "notes:read")).await.unwrap();
    assert_eq!(again.status, 303);
    let back = again.location().unwrap();
    assert!(back.as_str().starts_with(WEB_REDIRECT));
    assert!(query_param(&back, "code").is_some());
    assert_eq!(query_param(&back, "state").as_deref(), Some("xyz-state"));
    // The same client at its port-less loopback URI, on a port of someone's
    // choosing: asked, since that port may be anyone's.
    let loopback = authorization_url(
        &stack,
        "tollgate-web",
        LOOPBACK_REDIRECT,
        "notes:read",
        Some((CHALLENGE, "S256")),
    );
    let asked = owner.get(&loopback).await.unwrap();
    assert_eq!(asked.status, 200);
    assert!(asked.location().is_none());
    // A new browser session, after signing in: still not asked.
    let (_, next) = sign_in(
        &mut ScriptedOwner::new().unwrap(),
        &authz(&stack, "notes:read"),
        "alice",
        "alice-demo-password",
    )
    .await
    .unwrap();
    assert_eq!(next.status, 303);
    // More than was approved: asked again, listing what is asked.
    let more = owner.get(&authz(&stack, "notes:read profile:read")).await.unwrap();
    assert_eq!(more.status, 200);
    assert!(more.body.contains("profile:read"));
    // Another user is asked for their own consent.
    let (_, bob) = sign_in_to_consent(
        &mut ScriptedOwner::new().unwrap(),
        &authz(&stack, "notes:read"),
        "bob",
        "bob-demo-password",
    )
    .await
    .unwrap();
    assert_eq!(bob.status, 200);
}

#[tokio::test]
async fn withdrawing_an_approval_forgets_it_and_revokes_the_clients_tokens() {
    let stack = TestStack::start().await.unwrap();
    let tokens = stack.sign_in(&stack.cli_client(), "alice", &["notes:read"]).await.unwrap();
    let client = stack.client(&stack.cli_client()).await.unwrap();

    let mut owner = ScriptedOwner::new().unwrap();
    let page = account_page(&stack, &mut owner, "alice").await;
    assert!(
        page.body.contains("Tollgate CLI") && page.body.contains("notes:read"),
        "{}",
        page.body
    );

    // A forged withdrawal (no CSRF token) does nothing.
    let forged = owner
        .post(&stack.url("/account/withdraw"), &[("client_id".into(), "tollgate-cli".into())])
        .await
        .unwrap();
    assert_eq!(forged.status, 403);
    assert!(client.refresh(&tokens).await.is_ok_and(|t| !t.access_token.expose().is_empty()));

    let tokens = stack.sign_in(&stack.cli_client(), "alice", &["notes:read"]).await.unwrap();
    // The page's withdraw form for this client (each approval has its own form).
    let withdrawn = withdraw(&stack, &mut owner, &page, "tollgate-cli").await;
    assert_eq!(withdrawn.status, 303, "{}", withdrawn.body);
    let after = owner.follow(&withdrawn).await.unwrap();
    assert!(after.body.contains("You have not approved any application."), "{}", after.body);

    // The client's tokens for alice are revoked...
    assert!(client.refresh(&tokens).await.is_err());
    assert_refused_as_revoked(&stack, tokens.access_token.expose()).await;
    // ...and the next authorization asks again.
    let asked = owner.get(&authz(&stack, "notes:read")).await.unwrap();
    assert_eq!(asked.status, 200);
    assert!(asked.body.contains("approve"));
}
