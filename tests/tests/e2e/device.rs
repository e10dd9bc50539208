//! The device authorization grant (RFC 8628): a device shows a code, the person
//! approves on the verification page elsewhere, the device polls.

use tokio::sync::watch;
use tollgate_client_app::claims::decode_unverified;
use tollgate_client_app::owner::{Page, ScriptedOwner};
use tollgate_e2e::{TestStack, password_of};

use crate::support::{
    TokenReply, account_page, assert_refused_as_revoked, post_form, register, withdraw,
};

const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The person, at the verification page: signs in and decides in one form.
async fn decide(verification_uri_complete: &str, username: &str, decision: &str) -> Page {
    let mut owner = ScriptedOwner::new().unwrap();
    let page = owner.get(&url::Url::parse(verification_uri_complete).unwrap()).await.unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("notes:read"), "the page lists what is asked");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    owner
        .submit(
            &page,
            "/device",
            &[
                ("username", username),
                ("password", password_of(username).unwrap()),
                ("decision", decision),
            ],
        )
        .await
        .unwrap()
}

async fn start(stack: &TestStack) -> serde_json::Value {
    let reply = post_form(
        stack,
        "/device_authorization",
        None,
        &[("client_id", "tollgate-cli"), ("scope", "notes:read")],
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body
}

async fn poll(stack: &TestStack, device_code: &str) -> TokenReply {
    post_form(
        stack,
        "/token",
        None,
        &[("grant_type", DEVICE_CODE), ("client_id", "tollgate-cli"), ("device_code", device_code)],
    )
    .await
}

#[tokio::test]
async fn the_oauth2_crate_completes_the_device_flow() {
    let stack = TestStack::start().await.unwrap();
    let client = stack.client(&stack.cli_client()).await.unwrap();
    let login = client.start_device_login(&["notes:read".into()]).await.unwrap();
    assert_eq!(login.verification_uri(), format!("{}/device", stack.issuer));
    assert_eq!(login.user_code().len(), 9, "XXXX-XXXX");

    // The person approves on another device while the client polls.
    let (approved_tx, approved) = watch::channel(false);
    let complete = login.verification_uri_complete().unwrap().to_owned();
    tokio::spawn(async move {
        let done = decide(&complete, "alice", "approve").await;
        assert!(done.body.contains("Device connected"), "{}", done.body);
        approved_tx.send(true).unwrap();
    });
    // Between polls, time moves by the interval the server asked for, and the
    // next poll waits for the person (no real sleeping).
    let tokens = client
        .finish_device_login(&login, |interval| {
            stack.advance(i64::try_from(interval.as_secs()).unwrap());
            let mut approved = approved.clone();
            async move {
                let _ = approved.wait_for(|done| *done).await;
            }
        })
        .await
        .unwrap();
    let (_, claims) = decode_unverified(tokens.access_token.expose()).unwrap();
    assert_eq!(
        (claims["sub"].as_str(), claims["client_id"].as_str()),
        (Some("alice"), Some("tollgate-cli"))
    );
    assert!(tokens.refresh_token.is_some());
    assert!(
        stack
            .resource()
            .await
            .unwrap()
            .list_notes(tokens.access_token.expose(), "me")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn polling_follows_pending_slow_down_and_hands_out_tokens_once() {
    let stack = TestStack::start().await.unwrap();
    let started = start(&stack).await;
    assert_eq!(started["interval"], 5);
    assert_eq!(started["expires_in"], 600);
    let device_code = started["device_code"].as_str().unwrap();

    poll(&stack, device_code).await.assert_error(400, "authorization_pending");
    // Again at once: too fast.
    poll(&stack, device_code).await.assert_error(400, "slow_down");
    // The interval is now 10 s: 5 s later is still too fast, and it grows again.
    stack.advance(5);
    poll(&stack, device_code).await.assert_error(400, "slow_down");
    stack.advance(15);
    poll(&stack, device_code).await.assert_error(400, "authorization_pending");

    let done =
        decide(started["verification_uri_complete"].as_str().unwrap(), "bob", "approve").await;
    assert_eq!(done.status, 200);
    stack.advance(15);
    let issued = poll(&stack, device_code).await;
    assert_eq!(issued.status, 200, "{:?}", issued.body);
    let (_, claims) = decode_unverified(issued.body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["sub"], "bob");
    stack.advance(15);
    poll(&stack, device_code).await.assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn a_denied_or_expired_device_code_ends_the_flow() {
    let stack = TestStack::start().await.unwrap();
    let denied = start(&stack).await;
    let done = decide(denied["verification_uri_complete"].as_str().unwrap(), "alice", "deny").await;
    assert!(done.body.contains("Request denied"));
    poll(&stack, denied["device_code"].as_str().unwrap()).await.assert_error(400, "access_denied");

    let expired = start(&stack).await;
    stack.advance(600);
    poll(&stack, expired["device_code"].as_str().unwrap()).await.assert_error(400, "expired_token");
    // The page no longer accepts its code either.
    let page = ScriptedOwner::new()
        .unwrap()
        .get(&url::Url::parse(expired["verification_uri_complete"].as_str().unwrap()).unwrap())
        .await
        .unwrap();
    assert_eq!(page.status, 404);
}

#[tokio::test]
async fn a_device_code_belongs_to_its_client_and_the_grant_to_registered_clients() {
    let stack = TestStack::start().await.unwrap();
    // Another device app, registered for the device grant like the CLI.
    register(
        &stack,
        &format!(
            r#"
            client_id = "tollgate-tv"
            public = true
            grant_types = ["{DEVICE_CODE}"]
            scopes = ["notes:read"]
        "#
        ),
    )
    .await;
    let started = start(&stack).await;
    let device_code = started["device_code"].as_str().unwrap();
    let done =
        decide(started["verification_uri_complete"].as_str().unwrap(), "alice", "approve").await;
    assert_eq!(done.status, 200);

    // The approved code, redeemed by the other app: refused by the cross-client
    // rule (RFC 8628 §3.4: a device code is bound to the client it was issued to).
    let stolen = post_form(
        &stack,
        "/token",
        None,
        &[("grant_type", DEVICE_CODE), ("client_id", "tollgate-tv"), ("device_code", device_code)],
    )
    .await;
    stolen.assert_error(400, "invalid_grant");
    assert_eq!(
        stolen.body["error_description"],
        "device code is invalid, another client's, or already used"
    );
    // The attempt spent nothing: the rightful client still gets its tokens.
    let issued = poll(&stack, device_code).await;
    assert_eq!(issued.status, 200, "{:?}", issued.body);
    let (_, claims) = decode_unverified(issued.body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(
        (claims["sub"].as_str(), claims["client_id"].as_str()),
        (Some("alice"), Some("tollgate-cli"))
    );

    // A client not registered for the grant is refused for that, at both endpoints.
    let web = stack.secrets.web.clone();
    let refused = post_form(
        &stack,
        "/token",
        Some(("tollgate-web", web.expose())),
        &[("grant_type", DEVICE_CODE), ("device_code", device_code)],
    )
    .await;
    refused.assert_error(400, "unauthorized_client");
    assert_eq!(
        refused.body["error_description"],
        format!("client may not use the {DEVICE_CODE} grant")
    );
    let reporter = stack.secrets.reporter.clone();
    post_form(&stack, "/device_authorization", Some(("tollgate-reporter", reporter.expose())), &[])
        .await
        .assert_error(400, "unauthorized_client");
    // A wrong device code is just invalid.
    poll(&stack, "not-a-device-code").await.assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn the_verification_page_requires_the_sessions_csrf_token_and_a_real_sign_in() {
    let stack = TestStack::start().await.unwrap();
    let started = start(&stack).await;
    let user_code = started["user_code"].as_str().unwrap();
    let mut owner = ScriptedOwner::new().unwrap();
    let page = owner
        .get(&url::Url::parse(started["verification_uri_complete"].as_str().unwrap()).unwrap())
        .await
        .unwrap();
    let action = stack.url("/device");
    // A forged form without the session's token.
    let forged = vec![
        ("user_code".to_owned(), user_code.to_owned()),
        ("csrf_token".to_owned(), "forged".to_owned()),
        ("username".to_owned(), "alice".to_owned()),
        ("password".to_owned(), "alice-demo-password".to_owned()),
        ("decision".to_owned(), "approve".to_owned()),
    ];
    assert_eq!(owner.post(&action, &forged).await.unwrap().status, 403);
    // A wrong password decides nothing.
    let wrong = owner
        .submit(
            &page,
            "/device",
            &[("username", "alice"), ("password", "nope"), ("decision", "approve")],
        )
        .await
        .unwrap();
    assert_eq!(wrong.status, 401);
    poll(&stack, started["device_code"].as_str().unwrap())
        .await
        .assert_error(400, "authorization_pending");
    // A mistyped code is not found (and says nothing more).
    let unknown = owner.get(&stack.url("/device?user_code=BBBB-BBBB")).await.unwrap();
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn a_device_approval_is_listed_on_the_account_page_and_withdrawing_it_revokes_the_tokens() {
    let stack = TestStack::start().await.unwrap();
    let client = stack.client(&stack.cli_client()).await.unwrap();
    let started = start(&stack).await;
    let done =
        decide(started["verification_uri_complete"].as_str().unwrap(), "alice", "approve").await;
    assert!(done.body.contains("Device connected"), "{}", done.body);
    let reply = poll(&stack, started["device_code"].as_str().unwrap()).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let tokens = tollgate_client_app::tokens::TokenSet {
        access_token: tollgate_token::Secret::new(reply.body["access_token"].as_str().unwrap()),
        refresh_token: Some(tollgate_token::Secret::new(
            reply.body["refresh_token"].as_str().unwrap(),
        )),
        expires_at: stack.now() + 300,
        scope: "notes:read".into(),
        obtained: tollgate_client_app::tokens::Obtained::AuthorizationCode,
        client_id: "tollgate-cli".into(),
        token_type: "Bearer".into(),
        dpop_key: None,
    };

    // Alice sees the device's approval among her approvals.
    let mut owner = ScriptedOwner::new().unwrap();
    let page = account_page(&stack, &mut owner, "alice").await;
    assert!(
        page.body.contains("Tollgate CLI") && page.body.contains("notes:read"),
        "the device approval is listed: {}",
        page.body
    );

    // She withdraws it: the device's grant ends with it.
    let withdrawn = withdraw(&stack, &mut owner, &page, "tollgate-cli").await;
    assert_eq!(withdrawn.status, 303, "{}", withdrawn.body);
    match client.refresh(&tokens).await {
        Err(tollgate_client_app::ClientError::Refused { error, .. }) => {
            assert_eq!(error, "invalid_grant");
        }
        other => panic!("the device's refresh token still works: {other:?}"),
    }
    assert_refused_as_revoked(&stack, tokens.access_token.expose()).await;
}

#[tokio::test]
async fn withdrawing_an_approval_also_ends_a_device_authorization_not_yet_collected() {
    let stack = TestStack::start().await.unwrap();
    let started = start(&stack).await;
    decide(started["verification_uri_complete"].as_str().unwrap(), "alice", "approve").await;
    // Withdrawn before the device's next poll.
    assert!(stack.auth_core.withdraw_consent("alice", "tollgate-cli").await.unwrap());
    let reply = poll(&stack, started["device_code"].as_str().unwrap()).await;
    reply.assert_error(400, "access_denied");
}
