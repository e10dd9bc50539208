//! Bad input, everywhere: every endpoint answers junk with a clear answer (a 4xx,
//! or the matching gRPC code), never a 5xx, a panic or a hang.

use tollgate_client_app::owner::ScriptedOwner;
use tollgate_e2e::TestStack;
use tollgate_proto::auth::v1::token_service_client::TokenServiceClient;
use tollgate_proto::auth::v1::{IntrospectRequest, RevokeRequest, TokenRequest};
use tonic::Code;

use crate::support::{CHALLENGE, LOOPBACK_REDIRECT, authorization_url, post_token, query_param};

#[tokio::test]
async fn http_endpoints_answer_junk_with_client_errors() {
    let stack = TestStack::start().await.unwrap();
    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let huge = "A".repeat(64 * 1024);
    let bodies: Vec<(&str, String)> = vec![
        ("application/x-www-form-urlencoded", String::new()),
        ("application/x-www-form-urlencoded", "%%%&&&==".into()),
        ("application/x-www-form-urlencoded", "grant_type=authorization_code&code=&code_verifier=".into()),
        ("application/x-www-form-urlencoded", format!("grant_type=refresh_token&client_id=tollgate-cli&refresh_token={huge}")),
        ("application/x-www-form-urlencoded", "client_id=tollgate-cli&client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer&client_assertion=a.b.c".into()),
        ("application/json", "{\"grant_type\":\"client_credentials\"}".into()),
        ("text/plain", "\u{0}\u{1}binary".into()),
    ];
    for path in [
        "/token",
        "/introspect",
        "/revoke",
        "/device_authorization",
        "/device",
        "/authorize/login",
        "/authorize/consent",
        "/account/login",
        "/account/withdraw",
    ] {
        for (content_type, body) in &bodies {
            let response = http
                .post(stack.url(path))
                .header("content-type", *content_type)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = response.status();
            // Some junk is a valid request somewhere (a public client may start
            // a device authorization with stray parameters); none is a 5xx.
            let shown = &body[..body.len().min(60)];
            assert!(!status.is_server_error(), "{path} with {content_type} {shown:?}: {status}");
        }
    }
    for query in [
        "",
        "client_id=%ff%fe",
        "response_type=code&client_id=tollgate-cli&redirect_uri=::::",
        &format!("state={}", "A".repeat(4096)),
    ] {
        let mut url = stack.url("/authorize");
        url.set_query(Some(query));
        let status = http.get(url).send().await.unwrap().status();
        let shown = &query[..query.len().min(60)];
        assert!(status.is_client_error(), "/authorize?{shown}: {status}");
    }
    let status = http.get(stack.url("/device?user_code=%00%00")).send().await.unwrap().status();
    assert!(status.is_client_error(), "{status}");
}

#[tokio::test]
async fn grpc_token_service_answers_empty_requests_with_rfc_errors() {
    let stack = TestStack::start().await.unwrap();
    let channel = tollgate_e2e::channel(stack.auth_grpc_url()).await.unwrap();
    let mut grpc = TokenServiceClient::new(channel);
    let no_client = grpc.token(TokenRequest::default()).await.unwrap_err();
    assert_eq!(no_client.code(), Code::Unauthenticated);
    let status = grpc.introspect(IntrospectRequest::default()).await.unwrap_err();
    assert!(matches!(status.code(), Code::Unauthenticated | Code::InvalidArgument), "{status:?}");
    let status = grpc.revoke(RevokeRequest::default()).await.unwrap_err();
    assert!(matches!(status.code(), Code::Unauthenticated | Code::InvalidArgument), "{status:?}");
}

/// RFC 6749 §4.1.2.1, §5.2: `error_description` is `%x20-21 / %x23-5B / %x5D-7E`.
fn assert_rfc_6749_charset(description: &str) {
    assert!(
        description.bytes().all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)),
        "{description:?}"
    );
}

#[tokio::test]
async fn error_descriptions_never_carry_request_text() {
    let stack = TestStack::start().await.unwrap();
    let markup = "\"><img src=x onerror=alert(1)>";

    // Onto the client's redirect: a repeated parameter named with markup.
    let mut url = authorization_url(
        &stack,
        "tollgate-web",
        LOOPBACK_REDIRECT,
        "notes:read",
        Some((CHALLENGE, "S256")),
    );
    url.query_pairs_mut().append_pair(markup, "1").append_pair(markup, "2");
    let answer = ScriptedOwner::new().unwrap().get(&url).await.unwrap();
    assert_eq!(answer.status, 303);
    let back = answer.location().unwrap();
    assert!(back.as_str().starts_with(LOOPBACK_REDIRECT));
    assert_eq!(query_param(&back, "error").as_deref(), Some("invalid_request"));
    assert_eq!(
        query_param(&back, "error_description").as_deref(),
        Some("a parameter was sent more than once")
    );
    // A requested scope and resource the client may not have: not repeated back.
    for (name, value, error, description) in [
        (
            "scope",
            "notes:read admin\"><b>",
            "invalid_scope",
            "scope has a token with characters RFC 6749 section 3.3 does not allow",
        ),
        (
            "scope",
            "notes:read <b>evil</b>",
            "invalid_scope",
            "scope is not allowed for this client",
        ),
        (
            "resource",
            "https://evil.example/<b>",
            "invalid_target",
            "this client may not obtain tokens for this resource",
        ),
    ] {
        let mut url = authorization_url(
            &stack,
            "tollgate-web",
            LOOPBACK_REDIRECT,
            "",
            Some((CHALLENGE, "S256")),
        );
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "scope")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs).append_pair(name, value);
        let back = ScriptedOwner::new().unwrap().get(&url).await.unwrap().location().unwrap();
        assert_eq!(query_param(&back, "error").as_deref(), Some(error), "{back}");
        let got = query_param(&back, "error_description").unwrap();
        assert_eq!(got, description, "{name}={value}");
        assert_rfc_6749_charset(&got);
    }

    // The token endpoint's JSON errors.
    let web = ("tollgate-web", stack.secrets.web.expose().as_str());
    for (form, error, description) in [
        (vec![("grant_type", markup)], "unsupported_grant_type", "grant_type is not supported"),
        (
            vec![("grant_type", "client_credentials"), (markup, "1"), (markup, "2")],
            "invalid_request",
            "a parameter was sent more than once",
        ),
    ] {
        let reply = post_token(&stack, Some(web), &form).await;
        reply.assert_error(400, error);
        let got = reply.body["error_description"].as_str().unwrap();
        assert_eq!(got, description);
        assert_rfc_6749_charset(got);
    }
    let reporter = ("tollgate-reporter", stack.secrets.reporter.expose().as_str());
    let form = [("grant_type", "client_credentials"), ("scope", "reports:read a\\\"b")];
    let reply = post_token(&stack, Some(reporter), &form).await;
    reply.assert_error(400, "invalid_scope");
    assert_eq!(
        reply.body["error_description"],
        "scope has a token with characters RFC 6749 section 3.3 does not allow"
    );
}
