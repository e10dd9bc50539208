//! DPoP (RFC 9449) end to end: the token endpoint binds tokens to the key a
//! request proves, and the resource server admits a bound token only with a
//! fresh proof of that key for the call (docs/dpop-grpc.md). Each misuse is
//! performed and its exact refusal asserted.

use tollgate_client_app::claims::decode_unverified;
use tollgate_e2e::TestStack;
use tollgate_e2e::forge::DpopKey;
use tollgate_proto::resource::v1::profile_service_client::ProfileServiceClient;
use tollgate_proto::resource::v1::report_service_client::ReportServiceClient;
use tollgate_proto::resource::v1::{GetProfileRequest, GetUsageReportRequest};
use tollgate_service_kit::status::oauth_error_code;
use tonic::Code;

use crate::support::{TokenReply, metadata, obtain_code, post_form_with, redemption, register};

const REPORT: &str = "/tollgate.resource.v1.ReportService/GetUsageReport";
const PROFILE: &str = "/tollgate.resource.v1.ProfileService/GetProfile";

/// `POST /token` with `form`, HTTP Basic when `basic` is given, and one
/// `DPoP` header per proof.
async fn post_token(
    stack: &TestStack,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
    proofs: &[&str],
) -> TokenReply {
    let headers: Vec<_> = proofs.iter().map(|proof| ("DPoP", *proof)).collect();
    post_form_with(stack, "/token", basic, form, &headers).await
}

/// A client-credentials token for the reporter, with these proofs.
async fn reporter_token(stack: &TestStack, proofs: &[&str]) -> TokenReply {
    let secret = stack.secrets.reporter.clone();
    post_token(
        stack,
        Some(("tollgate-reporter", secret.expose())),
        &[("grant_type", "client_credentials")],
        proofs,
    )
    .await
}

/// The refusal a call got: gRPC code, RFC error code, message.
fn refusal<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> (Code, String, String) {
    let status = result.expect_err("refused");
    (status.code(), oauth_error_code(&status).unwrap_or("").to_owned(), status.message().to_owned())
}

/// `GetUsageReport` with `authorization` and these `dpop` entries.
async fn report(
    stack: &TestStack,
    authorization: &str,
    proofs: &[&str],
) -> Result<i64, tonic::Status> {
    let channel = tollgate_e2e::channel(stack.resource_url()).await.unwrap();
    let mut request = tonic::Request::new(GetUsageReportRequest {});
    request.metadata_mut().insert("authorization", authorization.parse().unwrap());
    for proof in proofs {
        request.metadata_mut().append("dpop", proof.parse().unwrap());
    }
    let reply = ReportServiceClient::new(channel).get_usage_report(request).await?;
    Ok(reply.into_inner().notes)
}

#[tokio::test]
async fn a_dpop_bound_token_is_useless_without_a_fresh_proof_of_its_key() {
    let stack = TestStack::start().await.unwrap();
    let key = DpopKey::default();
    let proof = key.proof(&stack.token_htu(), None, stack.now());
    let reply = reporter_token(&stack, &[&proof]).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    // RFC 9449 §5: a DPoP token type, bound to the proof's key.
    assert_eq!(reply.body["token_type"], "DPoP");
    let token = reply.body["access_token"].as_str().unwrap().to_owned();
    let (_, claims) = decode_unverified(&token).unwrap();
    assert_eq!(claims["cnf"]["jkt"], key.jkt());

    // The holder of the key, with a proof for this call: served.
    let dpop = format!("DPoP {token}");
    let call = key.proof(&stack.resource_htu(REPORT), Some(&token), stack.now());
    assert_eq!(report(&stack, &dpop, &[&call]).await.unwrap(), 0);

    // Replayed, proof and all: refused.
    assert_eq!(
        refusal(report(&stack, &dpop, &[&call]).await),
        (Code::Unauthenticated, "invalid_dpop_proof".into(), "proof jti already used".into())
    );
    // Stolen without the key: as a bearer token...
    assert_eq!(
        refusal(report(&stack, &format!("Bearer {token}"), &[]).await),
        (
            Code::Unauthenticated,
            "invalid_token".into(),
            "token is bound to a DPoP key: present it with the DPoP scheme and a proof".into()
        )
    );
    // ...or with no proof...
    assert_eq!(
        refusal(report(&stack, &dpop, &[]).await),
        (Code::Unauthenticated, "invalid_dpop_proof".into(), "missing DPoP proof".into())
    );
    // ...or with a proof by the thief's own key.
    let thief = DpopKey::default();
    let forged = thief.proof(&stack.resource_htu(REPORT), Some(&token), stack.now());
    assert_eq!(
        refusal(report(&stack, &dpop, &[&forged]).await),
        (
            Code::Unauthenticated,
            "invalid_token".into(),
            "token is bound to another DPoP key".into()
        )
    );
    // A proof captured from a call to another method, or to another server
    // (here the listener's own address, which is not the origin clients use).
    let other_method = key.proof(&stack.resource_htu(PROFILE), Some(&token), stack.now());
    let other_server =
        key.proof(&format!("{}{REPORT}", stack.resource_url()), Some(&token), stack.now());
    for proof in [other_method, other_server] {
        assert_eq!(
            refusal(report(&stack, &dpop, &[&proof]).await),
            (
                Code::Unauthenticated,
                "invalid_dpop_proof".into(),
                "proof htu does not match the request URI".into()
            )
        );
    }
}

#[tokio::test]
async fn the_token_endpoint_refuses_replayed_misdirected_and_doubled_proofs() {
    let stack = TestStack::start().await.unwrap();
    let key = DpopKey::default();
    let proof = key.proof(&stack.token_htu(), None, stack.now());
    assert_eq!(reporter_token(&stack, &[&proof]).await.status, 200);
    // The same proof again.
    let replayed = reporter_token(&stack, &[&proof]).await;
    replayed.assert_error(400, "invalid_dpop_proof");
    assert_eq!(replayed.body["error_description"], "proof jti already used");
    // A proof made for another endpoint of the server.
    let elsewhere = key.proof(stack.url("/introspect").as_ref(), None, stack.now());
    let misdirected = reporter_token(&stack, &[&elsewhere]).await;
    misdirected.assert_error(400, "invalid_dpop_proof");
    assert_eq!(misdirected.body["error_description"], "proof htu does not match the request URI");
    // Two proofs in one request (RFC 9449 §4.3 step 1).
    let (a, b) = (
        key.proof(&stack.token_htu(), None, stack.now()),
        key.proof(&stack.token_htu(), None, stack.now()),
    );
    let doubled = reporter_token(&stack, &[&a, &b]).await;
    doubled.assert_error(400, "invalid_dpop_proof");
    assert_eq!(doubled.body["error_description"], "more than one DPoP header");
    // Too old: 60 s of age and 5 s of leeway.
    let old = key.proof(&stack.token_htu(), None, stack.now() - 66);
    let stale = reporter_token(&stack, &[&old]).await;
    stale.assert_error(400, "invalid_dpop_proof");
    assert_eq!(stale.body["error_description"], "proof iat outside the accepted window");
    // Without a proof the same client still gets a bearer token: DPoP is
    // its choice unless it is registered as requiring it.
    let bearer = reporter_token(&stack, &[]).await;
    assert_eq!(bearer.body["token_type"], "Bearer");
    let (_, claims) = decode_unverified(bearer.body["access_token"].as_str().unwrap()).unwrap();
    assert!(claims.get("cnf").is_none(), "{claims}");

    // RFC 9449 §5.1: the metadata says which algorithms a proof may use.
    let metadata = metadata(&stack).await;
    assert_eq!(
        metadata["dpop_signing_alg_values_supported"],
        serde_json::json!(["EdDSA", "ES256"])
    );
}

#[tokio::test]
async fn a_client_registered_as_requiring_dpop_never_gets_a_bearer_token() {
    let stack = TestStack::start().await.unwrap();
    register(
        &stack,
        r#"
        client_id = "dpop-only"
        secret = "dpop-only-secret-dpop-only-secret-dpop"
        grant_types = ["client_credentials"]
        scopes = ["reports:read"]
        dpop_bound_access_tokens = true
    "#,
    )
    .await;
    let basic = Some(("dpop-only", "dpop-only-secret-dpop-only-secret-dpop"));
    let form = [("grant_type", "client_credentials")];
    let refused = post_token(&stack, basic, &form, &[]).await;
    refused.assert_error(400, "invalid_dpop_proof");
    assert_eq!(
        refused.body["error_description"],
        "this client must send a DPoP proof with every token request"
    );
    let key = DpopKey::default();
    let proof = key.proof(&stack.token_htu(), None, stack.now());
    let issued = post_token(&stack, basic, &form, &[&proof]).await;
    assert_eq!((issued.status.as_u16(), &issued.body["token_type"]), (200, &"DPoP".into()));
}

#[tokio::test]
async fn a_public_clients_refresh_token_is_bound_to_its_key_and_only_its_key_refreshes_it() {
    let stack = TestStack::start().await.unwrap();
    let code = obtain_code(&stack, "tollgate-cli", "alice", "profile:read").await;
    let key = DpopKey::default();
    let proof = key.proof(&stack.token_htu(), None, stack.now());
    let redeemed = post_token(&stack, None, &redemption("tollgate-cli", &code), &[&proof]).await;
    assert_eq!((redeemed.status.as_u16(), &redeemed.body["token_type"]), (200, &"DPoP".into()));
    let refresh_token = redeemed.body["refresh_token"].as_str().unwrap().to_owned();
    let access_token = redeemed.body["access_token"].as_str().unwrap().to_owned();

    // The owner's own data, with a proof of the key.
    let channel = tollgate_e2e::channel(stack.resource_url()).await.unwrap();
    let mut request = tonic::Request::new(GetProfileRequest { owner: "me".into() });
    let call = key.proof(&stack.resource_htu(PROFILE), Some(&access_token), stack.now());
    request.metadata_mut().insert("authorization", format!("DPoP {access_token}").parse().unwrap());
    request.metadata_mut().insert("dpop", call.parse().unwrap());
    ProfileServiceClient::new(channel).get_profile(request).await.expect("served");

    let refresh = |proofs: Vec<String>| {
        let stack = &stack;
        let refresh_token = refresh_token.clone();
        async move {
            let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
            post_token(
                stack,
                None,
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", "tollgate-cli"),
                    ("refresh_token", &refresh_token),
                ],
                &proofs,
            )
            .await
        }
    };
    // Stolen, the refresh token is refused without the key and with another
    // key, and it is not spent by those attempts.
    let without = refresh(vec![]).await;
    without.assert_error(400, "invalid_dpop_proof");
    assert_eq!(
        without.body["error_description"],
        "the refresh token is bound to a DPoP key this request did not prove"
    );
    let thief = DpopKey::default();
    let other = refresh(vec![thief.proof(&stack.token_htu(), None, stack.now())]).await;
    other.assert_error(400, "invalid_dpop_proof");
    // The rightful client, with its key: rotated, and the new access token
    // bound to the same key.
    let rotated = refresh(vec![key.proof(&stack.token_htu(), None, stack.now())]).await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    assert_eq!(rotated.body["token_type"], "DPoP");
    let (_, claims) = decode_unverified(rotated.body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["cnf"]["jkt"], key.jkt());
}

#[tokio::test]
async fn the_grpc_token_service_binds_tokens_to_the_key_its_dpop_metadata_proves() {
    use tollgate_proto::auth::v1::token_request::Grant;
    use tollgate_proto::auth::v1::token_service_client::TokenServiceClient;
    use tollgate_proto::auth::v1::{ClientAuthentication, ClientCredentialsGrant, TokenRequest};

    let stack = TestStack::start().await.unwrap();
    let secret = stack.secrets.reporter.clone();
    let channel = tollgate_e2e::channel(stack.auth_grpc_url()).await.unwrap();
    let mut grpc = TokenServiceClient::new(channel);
    let token = |proofs: &[&str]| {
        let mut request = tonic::Request::new(TokenRequest {
            client: Some(ClientAuthentication {
                client_id: "tollgate-reporter".into(),
                client_secret: Some(secret.expose().to_owned()),
                client_assertion: None,
            }),
            grant: Some(Grant::ClientCredentials(ClientCredentialsGrant {
                scope: None,
                resource: None,
            })),
        });
        for proof in proofs {
            request.metadata_mut().append("dpop", proof.parse().unwrap());
        }
        request
    };
    // The call's URI: the listener's origin and the method's path.
    let htu = format!("{}/tollgate.auth.v1.TokenService/Token", stack.auth_grpc_url());
    let key = DpopKey::default();
    let proof = key.proof(&htu, None, stack.now());
    let issued = grpc.token(token(&[&proof])).await.expect("issued").into_inner();
    assert_eq!(issued.token_type, "DPoP");
    let (_, claims) = decode_unverified(&issued.access_token).unwrap();
    assert_eq!(claims["cnf"]["jkt"], key.jkt());

    assert_eq!(
        refusal(grpc.token(token(&[&proof])).await),
        (Code::Unauthenticated, "invalid_dpop_proof".into(), "proof jti already used".into())
    );
    // A proof made for the HTTP token endpoint is not one for this call.
    let for_http = key.proof(&stack.token_htu(), None, stack.now());
    assert_eq!(
        refusal(grpc.token(token(&[&for_http])).await),
        (
            Code::Unauthenticated,
            "invalid_dpop_proof".into(),
            "proof htu does not match the request URI".into()
        )
    );
    let (a, b) = (key.proof(&htu, None, stack.now()), key.proof(&htu, None, stack.now()));
    assert_eq!(
        refusal(grpc.token(token(&[&a, &b])).await),
        (Code::Unauthenticated, "invalid_dpop_proof".into(), "more than one DPoP proof".into())
    );
    // Without a proof: a bearer token, as before.
    let bearer = grpc.token(token(&[])).await.expect("issued").into_inner();
    assert_eq!(bearer.token_type, "Bearer");
}

#[tokio::test]
async fn with_server_nonces_a_proof_needs_the_current_one_and_they_rotate() {
    let stack =
        TestStack::builder().tweak(|config| config.auth.dpop_nonce = true).start().await.unwrap();
    let key = DpopKey::default();
    let nonce_of = |reply: &TokenReply| {
        reply.headers.get("dpop-nonce").expect("a DPoP-Nonce header").to_str().unwrap().to_owned()
    };
    // RFC 9449 §8.1: no nonce yet, so the server names one.
    let first = reporter_token(&stack, &[&key.proof(&stack.token_htu(), None, stack.now())]).await;
    first.assert_error(400, "use_dpop_nonce");
    assert_eq!(
        first.body["error_description"],
        "the authorization server requires a DPoP nonce; use the one in DPoP-Nonce"
    );
    let nonce = nonce_of(&first);
    let with_nonce =
        |nonce: &str| key.proof_with_nonce(&stack.token_htu(), None, stack.now(), Some(nonce));
    let issued = reporter_token(&stack, &[&with_nonce(&nonce)]).await;
    assert_eq!((issued.status.as_u16(), &issued.body["token_type"]), (200, &"DPoP".into()));
    assert_eq!(nonce_of(&issued), nonce, "the same nonce within its minute");
    // A made-up nonce is no nonce.
    let made_up = reporter_token(&stack, &[&with_nonce("bm90LWEtbm9uY2U")]).await;
    made_up.assert_error(400, "use_dpop_nonce");

    // A minute on, the nonce is the previous one: still taken, and the
    // answer names the new one.
    stack.advance(60);
    let later = reporter_token(&stack, &[&with_nonce(&nonce)]).await;
    assert_eq!(later.status, 200, "{:?}", later.body);
    let next = nonce_of(&later);
    assert_ne!(next, nonce, "rotated");
    // Another minute on, the first nonce is refused; the one it names works.
    stack.advance(60);
    let stale = reporter_token(&stack, &[&with_nonce(&nonce)]).await;
    stale.assert_error(400, "use_dpop_nonce");
    let current = nonce_of(&stale);
    assert_eq!(reporter_token(&stack, &[&with_nonce(&current)]).await.status, 200);

    // Over gRPC the nonce travels in `dpop-nonce` metadata, refusals included.
    use tollgate_proto::auth::v1::token_request::Grant;
    use tollgate_proto::auth::v1::token_service_client::TokenServiceClient;
    use tollgate_proto::auth::v1::{ClientAuthentication, ClientCredentialsGrant, TokenRequest};
    let channel = tollgate_e2e::channel(stack.auth_grpc_url()).await.unwrap();
    let mut request = tonic::Request::new(TokenRequest {
        client: Some(ClientAuthentication {
            client_id: "tollgate-reporter".into(),
            client_secret: Some(stack.secrets.reporter.expose().to_owned()),
            client_assertion: None,
        }),
        grant: Some(Grant::ClientCredentials(ClientCredentialsGrant {
            scope: None,
            resource: None,
        })),
    });
    let htu = format!("{}/tollgate.auth.v1.TokenService/Token", stack.auth_grpc_url());
    request.metadata_mut().insert("dpop", key.proof(&htu, None, stack.now()).parse().unwrap());
    let status = TokenServiceClient::new(channel).token(request).await.expect_err("refused");
    assert_eq!(
        (status.code(), oauth_error_code(&status)),
        (Code::Unauthenticated, Some("use_dpop_nonce"))
    );
    assert_eq!(status.metadata().get("dpop-nonce").unwrap().to_str().unwrap(), current);
}

#[tokio::test]
async fn introspection_tells_a_resource_server_the_token_is_dpop_bound() {
    let stack = TestStack::start().await.unwrap();
    let key = DpopKey::default();
    let issued = reporter_token(&stack, &[&key.proof(&stack.token_htu(), None, stack.now())]).await;
    let token = issued.body["access_token"].as_str().unwrap();
    let secret = stack.secrets.reporter.clone();
    // RFC 9449 §6.2: a resource server that introspects learns the binding,
    // and so does not take the token for a bearer one.
    let answer = crate::support::post_form(
        &stack,
        "/introspect",
        Some(("tollgate-reporter", secret.expose())),
        &[("token", token)],
    )
    .await;
    assert_eq!(answer.body["active"], true, "{:?}", answer.body);
    assert_eq!(answer.body["token_type"], "DPoP");
    assert_eq!(answer.body["cnf"]["jkt"], key.jkt());
}

#[tokio::test]
async fn a_public_clients_grant_is_bound_by_the_first_refresh_that_proves_a_key() {
    let stack = TestStack::start().await.unwrap();
    let code = obtain_code(&stack, "tollgate-cli", "alice", "profile:read").await;
    // Redeemed without DPoP: a bearer token and an unbound refresh token.
    let redeemed = post_token(&stack, None, &redemption("tollgate-cli", &code), &[]).await;
    assert_eq!(redeemed.body["token_type"], "Bearer");
    let refresh = |refresh_token: String, proofs: Vec<String>| {
        let stack = &stack;
        async move {
            let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
            let form = [
                ("grant_type", "refresh_token"),
                ("client_id", "tollgate-cli"),
                ("refresh_token", refresh_token.as_str()),
            ];
            post_token(stack, None, &form, &proofs).await
        }
    };
    let key = DpopKey::default();
    let proof = key.proof(&stack.token_htu(), None, stack.now());
    let first =
        refresh(redeemed.body["refresh_token"].as_str().unwrap().to_owned(), vec![proof.clone()])
            .await;
    assert_eq!((first.status.as_u16(), &first.body["token_type"]), (200, &"DPoP".into()));
    // A public client's proof is remembered once its grant succeeded: the
    // same proof again is a replay.
    let next = first.body["refresh_token"].as_str().unwrap().to_owned();
    let replayed = refresh(next.clone(), vec![proof]).await;
    replayed.assert_error(400, "invalid_dpop_proof");
    assert_eq!(replayed.body["error_description"], "proof jti already used");
    // From then on the grant is the key's (RFC 9449 §5): its next refresh
    // token is useless without it.
    let without = refresh(next.clone(), vec![]).await;
    without.assert_error(400, "invalid_dpop_proof");
    let with = refresh(next, vec![key.proof(&stack.token_htu(), None, stack.now())]).await;
    assert_eq!(with.status, 200, "{:?}", with.body);
}

/// The client application's own DPoP (client-app `dpop`, `OAuthClient::with_dpop`,
/// `ResourceClient::with_dpop`): signs in, calls through to the notes store,
/// refreshes with the key it keeps with its tokens.
#[tokio::test]
async fn the_client_app_signs_in_calls_and_refreshes_with_its_dpop_key() {
    use tollgate_client_app::dpop::DpopKey as ClientKey;
    use tollgate_client_app::loopback::LoopbackRedirect;
    use tollgate_e2e::{RESOURCE_DPOP_ORIGIN, approve, password_of};

    let stack = TestStack::start().await.unwrap();
    let client =
        stack.client(&stack.cli_client()).await.unwrap().with_dpop(ClientKey::generate().unwrap());
    let loopback = LoopbackRedirect::bind().await.unwrap();
    let scopes = vec!["profile:read".to_owned(), "notes:read".to_owned()];
    let pending = client.authorization_url(&scopes, &loopback.redirect_uri()).unwrap();
    let waiting = tokio::spawn(loopback.wait());
    let mut owner = stack.owner().unwrap();
    let back =
        approve(&mut owner, &pending.url, "alice", password_of("alice").unwrap()).await.unwrap();
    owner.get(&back.location().unwrap()).await.unwrap();
    let callback = waiting.await.unwrap().unwrap();
    let tokens = client.finish_authorization(pending, &callback).await.unwrap();
    assert_eq!(tokens.token_type, "DPoP");
    let key = tokens.dpop_key().unwrap().expect("the key kept with the tokens");
    let (_, claims) = decode_unverified(tokens.access_token.expose()).unwrap();
    assert_eq!(claims["cnf"]["jkt"], key.jkt());

    // Through the resource server, and behind it to the notes store.
    let api = stack.resource().await.unwrap().with_dpop(key, RESOURCE_DPOP_ORIGIN, stack.clock());
    api.get_profile(tokens.access_token.expose(), "me").await.expect("profile");
    assert!(api.list_notes(tokens.access_token.expose(), "me").await.expect("notes").is_empty());

    // A refresh by the same client (the key is its own): still DPoP, same key.
    let refreshed = client.refresh(&tokens).await.unwrap();
    assert_eq!(refreshed.token_type, "DPoP");
    let again = refreshed.dpop_key().unwrap().unwrap();
    assert_eq!(again.jkt(), tokens.dpop_key().unwrap().unwrap().jkt());
}

#[tokio::test]
async fn the_client_app_answers_a_servers_nonce_by_itself() {
    use tollgate_client_app::dpop::DpopKey as ClientKey;
    let stack =
        TestStack::builder().tweak(|config| config.auth.dpop_nonce = true).start().await.unwrap();
    let client = stack
        .client(&stack.reporter_client())
        .await
        .unwrap()
        .with_dpop(ClientKey::generate().unwrap());
    // The first request gets use_dpop_nonce; the client retries with the
    // nonce the server named, once, and gets its token.
    let tokens = client.client_credentials(&[]).await.unwrap();
    assert_eq!(tokens.token_type, "DPoP");
    // Later requests carry the nonce it kept.
    assert_eq!(client.client_credentials(&[]).await.unwrap().token_type, "DPoP");
}
