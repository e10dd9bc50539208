//! Resource indicators (RFC 8707): the client names the API a token is for, the
//! token's `aud` says so, and a resource it is not registered for is refused.

use oauth2::PkceCodeChallenge;
use tollgate_client_app::claims::decode_unverified;
use tollgate_client_app::owner::ScriptedOwner;
use tollgate_e2e::{TestStack, approve, password_of};

use crate::support::{
    CHALLENGE, LOOPBACK_REDIRECT, TokenReply, authorization_url, post_form, query_param, register,
};

const REPORTS_API: &str = "https://reports.tollgate.test/api";

fn aud_of(reply: &TokenReply) -> String {
    let (_, claims) = decode_unverified(reply.body["access_token"].as_str().unwrap()).unwrap();
    claims["aud"].as_str().unwrap().to_owned()
}

async fn register_multi_api_client(stack: &TestStack) -> String {
    let secret = "multi-api-secret-multi-api-secret-multi".to_owned();
    register(
        stack,
        &format!(
            r#"
            client_id = "multi-api"
            secret = "{secret}"
            redirect_uris = ["http://127.0.0.1/callback"]
            grant_types = ["authorization_code", "refresh_token", "client_credentials"]
            scopes = ["notes:read", "reports:read"]
            resources = ["{REPORTS_API}"]
        "#
        ),
    )
    .await;
    secret
}

#[tokio::test]
async fn client_credentials_tokens_are_for_the_named_resource() {
    let stack = TestStack::start().await.unwrap();
    let secret = register_multi_api_client(&stack).await;
    let basic = Some(("multi-api", secret.as_str()));
    let reply = post_form(
        &stack,
        "/token",
        basic,
        &[("grant_type", "client_credentials"), ("resource", REPORTS_API)],
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(aud_of(&reply), REPORTS_API);
    // Without `resource`: the client's default audience.
    let reply = post_form(&stack, "/token", basic, &[("grant_type", "client_credentials")]).await;
    assert_eq!(aud_of(&reply), "tollgate-resource");
    // The resource server refuses a token for the reports API.
    let reports_token = post_form(
        &stack,
        "/token",
        basic,
        &[("grant_type", "client_credentials"), ("resource", REPORTS_API)],
    )
    .await;
    let status = stack
        .resource()
        .await
        .unwrap()
        .list_notes(reports_token.body["access_token"].as_str().unwrap(), "me")
        .await
        .unwrap_err();
    assert_eq!(status.message(), "token is not meant for this resource");
}

#[tokio::test]
async fn an_unregistered_or_malformed_resource_is_invalid_target() {
    let stack = TestStack::start().await.unwrap();
    let secret = register_multi_api_client(&stack).await;
    let basic = Some(("multi-api", secret.as_str()));
    for resource in
        ["https://other.example/api", "not a uri", "https://reports.tollgate.test/api#frag"]
    {
        post_form(
            &stack,
            "/token",
            basic,
            &[("grant_type", "client_credentials"), ("resource", resource)],
        )
        .await
        .assert_error(400, "invalid_target");
    }
}

#[tokio::test]
async fn an_authorization_code_is_for_the_resource_it_was_requested_for() {
    let stack = TestStack::start().await.unwrap();
    let secret = register_multi_api_client(&stack).await;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut url = authorization_url(
        &stack,
        "multi-api",
        LOOPBACK_REDIRECT,
        "reports:read",
        Some((challenge.as_str(), "S256")),
    );
    url.query_pairs_mut().append_pair("resource", REPORTS_API);
    let mut owner = ScriptedOwner::new().unwrap();
    let answer = approve(&mut owner, &url, "alice", password_of("alice").unwrap()).await.unwrap();
    let code = query_param(&answer.location().unwrap(), "code").unwrap();
    let basic = Some(("multi-api", secret.as_str()));
    let redeem = |resource: &'static str| {
        let (code, verifier) = (code.clone(), verifier.secret().clone());
        let stack = &stack;
        async move {
            let mut form = vec![
                ("grant_type", "authorization_code".to_owned()),
                ("code", code),
                ("redirect_uri", LOOPBACK_REDIRECT.to_owned()),
                ("code_verifier", verifier),
            ];
            if !resource.is_empty() {
                form.push(("resource", resource.to_owned()));
            }
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post_form(stack, "/token", basic, &form).await
        }
    };
    // Asking for another resource at the token endpoint is refused (and spends the code).
    redeem("https://other.example/api").await.assert_error(400, "invalid_target");

    let (challenge, verifier2) = PkceCodeChallenge::new_random_sha256();
    let mut url = authorization_url(
        &stack,
        "multi-api",
        LOOPBACK_REDIRECT,
        "reports:read",
        Some((challenge.as_str(), "S256")),
    );
    url.query_pairs_mut().append_pair("resource", REPORTS_API);
    let answer =
        approve(&mut ScriptedOwner::new().unwrap(), &url, "alice", password_of("alice").unwrap())
            .await
            .unwrap();
    let code = query_param(&answer.location().unwrap(), "code").unwrap();
    let reply = post_form(
        &stack,
        "/token",
        basic,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", LOOPBACK_REDIRECT),
            ("code_verifier", verifier2.secret()),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(aud_of(&reply), REPORTS_API);
    // Refreshing keeps the audience; naming another resource is refused without
    // spending the refresh token.
    let refresh = reply.body["refresh_token"].as_str().unwrap().to_owned();
    post_form(
        &stack,
        "/token",
        basic,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("resource", "https://other.example/api"),
        ],
    )
    .await
    .assert_error(400, "invalid_target");
    let refreshed = post_form(
        &stack,
        "/token",
        basic,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(refreshed.status, 200, "{:?}", refreshed.body);
    assert_eq!(aud_of(&refreshed), REPORTS_API);
}

#[tokio::test]
async fn the_authorization_endpoint_refuses_an_unregistered_resource() {
    let stack = TestStack::start().await.unwrap();
    register_multi_api_client(&stack).await;
    let mut url = authorization_url(
        &stack,
        "multi-api",
        LOOPBACK_REDIRECT,
        "notes:read",
        Some((CHALLENGE, "S256")),
    );
    url.query_pairs_mut().append_pair("resource", "https://other.example/api");
    let page = ScriptedOwner::new().unwrap().get(&url).await.unwrap();
    assert_eq!(page.status, 303);
    assert_eq!(query_param(&page.location().unwrap(), "error").as_deref(), Some("invalid_target"));
}
