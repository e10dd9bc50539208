//! Bad input, everywhere: every endpoint answers junk with a clear answer (a 4xx,
//! or the matching gRPC code), never a 5xx, a panic or a hang.

use tollgate_e2e::TestStack;
use tollgate_proto::auth::v1::token_service_client::TokenServiceClient;
use tollgate_proto::auth::v1::{IntrospectRequest, RevokeRequest, TokenRequest};
use tonic::Code;

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
