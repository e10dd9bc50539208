//! Every throttle crossed over the real transports: the exact refusal (HTTP 429
//! with `Retry-After` and the RFC 6749 error shape; gRPC `RESOURCE_EXHAUSTED`
//! with the error code and `retry-after` metadata), then recovery once the
//! stack's clock has moved, never by sleeping. Each test sets a small rate for
//! the throttle it crosses (docs/security.md, "Limits", lists the defaults).

use tollgate_client_app::owner::ScriptedOwner;
use tollgate_e2e::{StackConfig, TestStack};
use tollgate_proto::auth::v1::token_service_client::TokenServiceClient;
use tollgate_proto::auth::v1::{
    ClientAuthentication, ClientCredentialsGrant, TokenRequest, token_request,
};
use tollgate_service_kit::status::{RETRY_AFTER_METADATA, oauth_error_code};

use crate::support::{CHALLENGE, LOOPBACK_REDIRECT, TokenReply, authorization_url, post_form};

async fn stack_with(limit: impl FnOnce(&mut StackConfig) + Send + 'static) -> TestStack {
    TestStack::builder().tweak(limit).start().await.unwrap()
}

#[track_caller]
fn assert_throttled(reply: &TokenReply, retry_after: &str) {
    reply.assert_error(429, "temporarily_unavailable");
    assert_eq!(reply.headers["retry-after"], retry_after);
    assert_eq!(reply.body["error_description"], "too many requests; try again later");
}

async fn client_credentials(stack: &TestStack) -> TokenReply {
    let secret = stack.secrets.reporter.clone();
    post_form(
        stack,
        "/token",
        Some(("tollgate-reporter", secret.expose())),
        &[("grant_type", "client_credentials")],
    )
    .await
}

#[tokio::test]
async fn a_client_past_its_rate_is_told_to_wait_over_http_and_grpc_then_served_again() {
    // 3 at once, one back every 20 s.
    let stack = stack_with(|c| c.auth.limits.rate_client = "3/1m".parse().unwrap()).await;
    for _ in 0..3 {
        assert_eq!(client_credentials(&stack).await.status, 200);
    }
    assert_throttled(&client_credentials(&stack).await, "20");

    // The same allowance over gRPC: RESOURCE_EXHAUSTED, with the RFC code.
    let channel = tollgate_e2e::channel(stack.auth_grpc_url()).await.unwrap();
    let mut grpc = TokenServiceClient::new(channel);
    let request = || TokenRequest {
        client: Some(ClientAuthentication {
            client_id: "tollgate-reporter".into(),
            client_secret: Some(stack.secrets.reporter.expose().clone()),
            client_assertion: None,
        }),
        grant: Some(token_request::Grant::ClientCredentials(ClientCredentialsGrant::default())),
    };
    let refused = grpc.token(request()).await.unwrap_err();
    assert_eq!(
        (refused.code(), oauth_error_code(&refused), refused.message()),
        (
            tonic::Code::ResourceExhausted,
            Some("temporarily_unavailable"),
            "too many requests; try again later"
        )
    );
    assert_eq!(refused.metadata().get(RETRY_AFTER_METADATA).unwrap(), "20");

    stack.advance(20);
    grpc.token(request()).await.expect("one request's allowance is back");
    assert_throttled(&client_credentials(&stack).await, "20");
    stack.advance(20);
    assert_eq!(client_credentials(&stack).await.status, 200);
}

#[tokio::test]
async fn revocations_have_their_own_smaller_allowance() {
    let stack = stack_with(|c| c.auth.limits.rate_revoke = "2/1m".parse().unwrap()).await;
    let secret = stack.secrets.reporter.clone();
    let revoke = || {
        post_form(
            &stack,
            "/revoke",
            Some(("tollgate-reporter", secret.expose())),
            &[("token", "not-a-token-of-ours")],
        )
    };
    assert_eq!(revoke().await.status, 200);
    assert_eq!(revoke().await.status, 200);
    assert_throttled(&revoke().await, "30");
    // The client's other calls are not held back.
    assert_eq!(client_credentials(&stack).await.status, 200);
    stack.advance(30);
    assert_eq!(revoke().await.status, 200);
}

#[tokio::test]
async fn password_guessing_from_one_address_is_throttled_on_the_sign_in_page() {
    let stack = stack_with(|c| c.auth.limits.rate_sign_in_ip = "3/1m".parse().unwrap()).await;
    let authz = authorization_url(
        &stack,
        "tollgate-cli",
        LOOPBACK_REDIRECT,
        "notes:read",
        Some((CHALLENGE, "S256")),
    );
    let mut guesser = ScriptedOwner::new().unwrap();
    let login = guesser.get(&authz).await.unwrap();
    let guess = |password: &'static str| [("username", "alice"), ("password", password)];
    for _ in 0..3 {
        let page = guesser.submit(&login, "/authorize/login", &guess("wrong")).await.unwrap();
        assert_eq!(page.status, 401, "{}", page.body);
    }
    // Even the right password is refused now, before it is checked.
    let page =
        guesser.submit(&login, "/authorize/login", &guess("alice-demo-password")).await.unwrap();
    assert_eq!(page.status, 429, "{}", page.body);
    assert_eq!(page.header("retry-after"), Some("20"));
    assert!(page.body.contains("temporarily_unavailable"), "{}", page.body);
    stack.advance(20);
    let password = tollgate_e2e::password_of("alice").unwrap();
    let page = guesser
        .submit(&login, "/authorize/login", &[("username", "alice"), ("password", password)])
        .await
        .unwrap();
    assert_eq!(page.status, 303, "signed in once the address has an attempt back");
}

#[tokio::test]
async fn device_authorizations_and_user_code_guesses_are_throttled_per_address() {
    let stack = stack_with(|c| c.auth.limits.rate_device_ip = "3/1m".parse().unwrap()).await;
    let start = || {
        post_form(
            &stack,
            "/device_authorization",
            None,
            &[("client_id", "tollgate-cli"), ("scope", "notes:read")],
        )
    };
    assert_eq!(start().await.status, 200);
    assert_eq!(start().await.status, 200);
    // User-code entry at the verification page spends the same allowance.
    let mut person = ScriptedOwner::new().unwrap();
    let guess = stack.url("/device?user_code=BCDF-GHJK");
    assert_eq!(person.get(&guess).await.unwrap().status, 404);
    let refused = person.get(&guess).await.unwrap();
    assert_eq!((refused.status.as_u16(), refused.header("retry-after")), (429, Some("20")));
    assert_throttled(&start().await, "20");
    stack.advance(20);
    assert_eq!(start().await.status, 200);
}

#[tokio::test]
async fn the_pages_are_throttled_per_address() {
    let stack = stack_with(|c| c.auth.limits.rate_pages_ip = "2/1m".parse().unwrap()).await;
    let mut owner = ScriptedOwner::new().unwrap();
    let account = stack.url("/account");
    assert_eq!(owner.get(&account).await.unwrap().status, 200);
    assert_eq!(owner.get(&account).await.unwrap().status, 200);
    let refused = owner.get(&account).await.unwrap();
    assert_eq!((refused.status.as_u16(), refused.header("retry-after")), (429, Some("30")));
    // The JSON endpoints are not pages: a client is unaffected.
    assert_eq!(client_credentials(&stack).await.status, 200);
    stack.advance(30);
    assert_eq!(owner.get(&account).await.unwrap().status, 200);
}

#[tokio::test]
async fn a_client_with_too_many_pending_device_authorizations_is_told_to_wait() {
    let stack = stack_with(|c| c.auth.limits.max_pending_device_codes = 2).await;
    let start =
        || post_form(&stack, "/device_authorization", None, &[("client_id", "tollgate-cli")]);
    assert_eq!(start().await.status, 200);
    stack.advance(100);
    assert_eq!(start().await.status, 200);
    // Told to come back when the first one expires (RFC 8628 default 600 s).
    assert_throttled(&start().await, "500");
    stack.advance(500);
    assert_eq!(start().await.status, 200);
}
