//! The client-credentials grant (RFC 6749 §4.4) and client authentication at the
//! token endpoint (§2.3, §5.2), over HTTP and over gRPC.

use tollgate_auth_server::bootstrap::{ClientSpec, client_from_spec};
use tollgate_auth_server::domain::model::GrantType;
use tollgate_auth_server::storage::ClientStore as _;
use tollgate_client_app::ClientError;
use tollgate_client_app::claims::decode_unverified;
use tollgate_client_app::oauth::ClientAuthMethod;
use tollgate_e2e::TestStack;
use tollgate_proto::auth::v1::token_request::Grant;
use tollgate_proto::auth::v1::token_service_client::TokenServiceClient;
use tollgate_proto::auth::v1::{ClientAuthentication, ClientCredentialsGrant, TokenRequest};
use tollgate_service_kit::status::oauth_error_code;

use crate::support::post_token;

#[tokio::test]
async fn a_machine_client_gets_a_token_for_itself_and_reads_the_report() {
    let stack = TestStack::start().await.unwrap();
    for method in [ClientAuthMethod::ClientSecretBasic, ClientAuthMethod::ClientSecretPost] {
        let mut reporter = stack.reporter_client();
        reporter.auth_method = method;
        let client = stack.client(&reporter).await.unwrap();
        let tokens = client.client_credentials(&["reports:read".into()]).await.unwrap();
        // RFC 6749 §4.4.3: no refresh token for client credentials.
        assert!(tokens.refresh_token.is_none());
        let (_, claims) = decode_unverified(tokens.access_token.expose()).unwrap();
        // RFC 9068 §2.2: with no resource owner, `sub` is the client.
        assert_eq!(claims["sub"], "tollgate-reporter");
        assert_eq!(claims["client_id"], "tollgate-reporter");
        assert_eq!(claims["scope"], "reports:read");
        let report =
            stack.resource().await.unwrap().usage_report(tokens.access_token.expose()).await;
        assert_eq!(report.unwrap().notes, 0);
    }
}

#[tokio::test]
async fn a_token_response_is_json_and_never_cached() {
    let stack = TestStack::start().await.unwrap();
    let secret = stack.secrets.reporter.clone();
    let reply = post_token(
        &stack,
        Some(("tollgate-reporter", secret.expose())),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(reply.status, 200);
    // RFC 6749 §5.1: tokens must not be cached by the client's HTTP stack or proxies.
    assert_eq!(reply.headers["cache-control"], "no-store");
    assert_eq!(reply.headers["pragma"], "no-cache");
    assert!(reply.headers["content-type"].to_str().unwrap().starts_with("application/json"));
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 300);
    assert!(reply.body.get("refresh_token").is_none());
}

#[tokio::test]
async fn without_a_scope_parameter_the_client_gets_its_registered_scopes() {
    let stack = TestStack::start().await.unwrap();
    let client = stack.client(&stack.reporter_client()).await.unwrap();
    let tokens = client.client_credentials(&[]).await.unwrap();
    assert_eq!(tokens.scope, "reports:read");
}

#[tokio::test]
async fn a_wrong_secret_is_invalid_client_with_a_basic_challenge() {
    let stack = TestStack::start().await.unwrap();
    let reply = post_token(
        &stack,
        Some(("tollgate-reporter", "not-the-secret-not-the-secret-not-the")),
        &[("grant_type", "client_credentials")],
    )
    .await;
    // RFC 6749 §5.2: 401 and WWW-Authenticate when the client used HTTP Basic.
    reply.assert_error(401, "invalid_client");
    assert!(reply.headers["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    // The same through the oauth2 crate.
    let mut reporter = stack.reporter_client();
    reporter.client_secret = Some("wrong".into());
    let refused = stack.client(&reporter).await.unwrap().client_credentials(&[]).await;
    assert!(
        matches!(refused, Err(ClientError::Refused { ref error, .. }) if error == "invalid_client"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn an_unknown_client_is_invalid_client() {
    let stack = TestStack::start().await.unwrap();
    post_token(
        &stack,
        Some(("nobody", "whatever-whatever-whatever-whatever")),
        &[("grant_type", "client_credentials")],
    )
    .await
    .assert_error(401, "invalid_client");
}

/// A public client that lists the client-credentials grant. Registration
/// refuses one, so it is written straight to the store (as a hand-edited
/// database, or a registration path that forgot the rule, would leave it).
async fn store_public_client_with_client_credentials(stack: &TestStack) {
    let spec = |grants: &str| -> ClientSpec {
        toml::from_str(&format!(
            r#"
            client_id = "public-machine"
            public = true
            redirect_uris = ["http://127.0.0.1/callback"]
            grant_types = [{grants}]
            scopes = ["reports:read"]
        "#
        ))
        .unwrap()
    };
    let refused =
        client_from_spec(&spec(r#""client_credentials""#), "tollgate-resource").unwrap_err();
    assert_eq!(
        refused.to_string(),
        "client public-machine: a public client cannot use client_credentials"
    );
    let mut client =
        client_from_spec(&spec(r#""authorization_code""#), "tollgate-resource").unwrap();
    client.grant_types.push(GrantType::ClientCredentials);
    let core = &stack.auth_core;
    core.store().upsert_client(&client, core.now()).await.unwrap();
}

#[tokio::test]
async fn a_public_client_cannot_use_client_credentials() {
    let stack = TestStack::start().await.unwrap();
    store_public_client_with_client_credentials(&stack).await;
    let reply = post_token(
        &stack,
        None,
        &[("grant_type", "client_credentials"), ("client_id", "public-machine")],
    )
    .await;
    // RFC 6749 §4.4: only confidential clients. The client may use the grant by
    // its registration, so this is the refusal of a public client as such.
    reply.assert_error(400, "unauthorized_client");
    assert_eq!(reply.body["error_description"], "a public client cannot use client_credentials");
}

#[tokio::test]
async fn a_client_may_only_use_its_registered_grants() {
    let stack = TestStack::start().await.unwrap();
    let web = stack.secrets.web.clone();
    let reply = post_token(
        &stack,
        Some(("tollgate-web", web.expose())),
        &[("grant_type", "client_credentials")],
    )
    .await;
    reply.assert_error(400, "unauthorized_client");
    assert_eq!(reply.body["error_description"], "client may not use the client_credentials grant");
}

#[tokio::test]
async fn a_scope_beyond_the_registration_is_invalid_scope() {
    let stack = TestStack::start().await.unwrap();
    let secret = stack.secrets.reporter.clone();
    post_token(
        &stack,
        Some(("tollgate-reporter", secret.expose())),
        &[("grant_type", "client_credentials"), ("scope", "reports:read notes:read")],
    )
    .await
    .assert_error(400, "invalid_scope");
}

#[tokio::test]
async fn malformed_token_requests_get_rfc_errors() {
    let stack = TestStack::start().await.unwrap();
    let secret = stack.secrets.reporter.clone();
    let basic = Some(("tollgate-reporter", secret.expose().as_str()));
    post_token(
        &stack,
        basic,
        &[("grant_type", "password"), ("username", "alice"), ("password", "x")],
    )
    .await
    .assert_error(400, "unsupported_grant_type");
    post_token(&stack, basic, &[]).await.assert_error(400, "invalid_request");
    post_token(
        &stack,
        basic,
        &[("grant_type", "client_credentials"), ("grant_type", "client_credentials")],
    )
    .await
    .assert_error(400, "invalid_request");
    // Two authentication methods at once (RFC 6749 §2.3).
    post_token(
        &stack,
        basic,
        &[("grant_type", "client_credentials"), ("client_secret", secret.expose())],
    )
    .await
    .assert_error(400, "invalid_request");
    // Not form-encoded (RFC 6749 §3.2).
    let response = reqwest::Client::new()
        .post(stack.url("/token"))
        .basic_auth("tollgate-reporter", Some(secret.expose()))
        .json(&serde_json::json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}

fn grpc_request(client_id: &str, secret: Option<&str>, scope: Option<&str>) -> TokenRequest {
    TokenRequest {
        client: Some(ClientAuthentication {
            client_id: client_id.into(),
            client_secret: secret.map(str::to_owned),
            client_assertion: None,
        }),
        grant: Some(Grant::ClientCredentials(ClientCredentialsGrant {
            scope: scope.map(str::to_owned),
            resource: None,
        })),
    }
}

#[tokio::test]
async fn the_token_service_over_grpc_issues_and_refuses_like_http() {
    let stack = TestStack::start().await.unwrap();
    let channel = tollgate_e2e::channel(stack.auth_grpc_url()).await.unwrap();
    let mut grpc = TokenServiceClient::new(channel);
    let secret = stack.secrets.reporter.clone();
    let issued = grpc
        .token(grpc_request("tollgate-reporter", Some(secret.expose()), Some("reports:read")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((issued.token_type.as_str(), issued.scope.as_str()), ("Bearer", "reports:read"));
    let report = stack.resource().await.unwrap().usage_report(&issued.access_token).await;
    assert!(report.is_ok(), "{report:?}");

    let refused =
        grpc.token(grpc_request("tollgate-reporter", Some("wrong"), None)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert_eq!(oauth_error_code(&refused), Some("invalid_client"));

    let refused = grpc
        .token(grpc_request("tollgate-reporter", Some(secret.expose()), Some("notes:write")))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(oauth_error_code(&refused), Some("invalid_scope"));

    let no_grant = TokenRequest {
        grant: None,
        ..grpc_request("tollgate-reporter", Some(secret.expose()), None)
    };
    let refused = grpc.token(no_grant).await.unwrap_err();
    assert_eq!(oauth_error_code(&refused), Some("invalid_request"));
}

#[tokio::test]
async fn the_usage_report_counts_the_owners_with_a_profile() {
    let stack = TestStack::start().await.unwrap();
    let api = stack.resource().await.unwrap();
    for user in ["alice", "bob"] {
        let tokens = stack.sign_in(&stack.cli_client(), user, &["profile:write"]).await.unwrap();
        let email = format!("{user}@example.com");
        api.update_profile(tokens.access_token.expose(), "me", user, &email).await.unwrap();
    }
    let reporter = stack.client(&stack.reporter_client()).await.unwrap();
    let tokens = reporter.client_credentials(&["reports:read".into()]).await.unwrap();
    let report = api.usage_report(tokens.access_token.expose()).await.unwrap();
    assert_eq!((report.owners, report.notes), (2, 0));
}
