//! The platform with TLS on every listener and mutual TLS between the
//! services (docs/security.md, "Transport"): the flows work end to end, and
//! what the wire must refuse is refused at the handshake.

use rustls::pki_types::pem::PemObject as _;
use tollgate_client_app::claims::decode_unverified;
use tollgate_client_app::resource::bearer;
use tollgate_e2e::{Mutual, RESOURCE_SERVER_DNS, TestStack};
use tollgate_proto::auth::v1::token_request::Grant;
use tollgate_proto::auth::v1::token_service_client::TokenServiceClient;
use tollgate_proto::auth::v1::{
    ClientAuthentication, IntrospectRequest, TokenExchangeGrant, TokenRequest, TokenResponse,
};
use tollgate_proto::notes::v1::ListNotesRequest;
use tollgate_proto::notes::v1::note_store_client::NoteStoreClient;
use tollgate_service_kit::testing::{health_of, tls_refusal};
use tollgate_service_kit::tls::{ClientTls, GrpcTarget};
use tollgate_token::certificate_thumbprint;
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test]
async fn the_whole_flow_runs_over_tls_with_mutual_tls_between_the_services() {
    let stack = TestStack::builder().tls(Mutual::Internal).start().await.unwrap();
    assert!(stack.issuer.starts_with("https://"), "{}", stack.issuer);

    // The owner signs in through the pages and the client redeems the code,
    // all over HTTPS (the harness trusts only the stack's CA).
    let tokens =
        stack.sign_in(&stack.cli_client(), "alice", &["notes:read", "notes:write"]).await.unwrap();
    let token = tokens.access_token.expose();
    // A notes call crosses every internal hop: the resource server exchanges
    // the token at the authorization server's gRPC listener and calls the
    // notes store, both over mutual TLS with its own certificate; the notes
    // store fetched the keys and the denylist over TLS as well.
    let api = stack.resource().await.unwrap();
    api.create_note(token, "me", "over TLS", "every hop").await.unwrap();
    let notes = api.list_notes(token, "me").await.unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].title, "over TLS");

    // A refresh and a machine client's token, over HTTPS too.
    let client = stack.client(&stack.cli_client()).await.unwrap();
    client.refresh(&tokens).await.unwrap();
    let reporter = stack.client(&stack.reporter_client()).await.unwrap();
    let machine = reporter.client_credentials(&["reports:read".into()]).await.unwrap();
    assert_eq!(api.usage_report(machine.access_token.expose()).await.unwrap().notes, 1);

    // The device grant (RFC 8628): the oauth2 crate polls over HTTPS while
    // the person approves on the verification page, over HTTPS too.
    let login = client.start_device_login(&["notes:read".into()]).await.unwrap();
    assert_eq!(login.verification_uri(), format!("{}/device", stack.issuer));
    let mut person = stack.owner().unwrap();
    let complete = url::Url::parse(login.verification_uri_complete().unwrap()).unwrap();
    let page = person.get(&complete).await.unwrap();
    let password = tollgate_e2e::password_of("alice").unwrap();
    let form = [("username", "alice"), ("password", password), ("decision", "approve")];
    let done = person.submit(&page, "/device", &form).await.unwrap();
    assert!(done.body.contains("Device connected"), "{}", done.body);
    let device = client
        .finish_device_login(&login, |interval| {
            stack.advance(i64::try_from(interval.as_secs()).unwrap());
            async {}
        })
        .await
        .unwrap();
    assert_eq!(api.list_notes(device.access_token.expose(), "me").await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_internal_listener_refuses_a_connection_without_a_client_certificate() {
    let stack = TestStack::builder().tls(Mutual::Internal).start().await.unwrap();
    let tls = stack.tls.as_ref().unwrap();
    for (url, addr) in
        [(stack.auth_grpc_url(), stack.auth_grpc), (stack.notes_url(), stack.notes_grpc())]
    {
        // Trusting the CA is not enough: the handshake wants a certificate.
        assert!(health(&url, &tls.anonymous).await.is_err(), "{url}");
        assert_eq!(
            tls_refusal(addr, "localhost", &tls.anonymous).await.as_deref(),
            Some("received fatal alert: CertificateRequired"),
            "{url}"
        );
        // With one from the deployment's CA it is served.
        assert_eq!(health(&url, &tls.harness).await, Ok(ServingStatus::Serving), "{url}");
    }
    // The public API asks for none.
    assert_eq!(health(&stack.resource_url(), &tls.anonymous).await, Ok(ServingStatus::Serving));
}

/// The service's overall health over a new connection, or why there is none.
async fn health(url: &str, tls: &ClientTls) -> Result<ServingStatus, String> {
    health_of(GrpcTarget::new(url, tls).unwrap()).await
}

#[tokio::test]
async fn no_listener_of_a_tls_stack_answers_plaintext() {
    let stack = TestStack::builder().tls(Mutual::Internal).start().await.unwrap();
    let tls = stack.tls.as_ref().unwrap();
    for url in [stack.auth_grpc_url(), stack.notes_url(), stack.resource_url()] {
        let plain = url.replacen("https://", "http://", 1);
        let answer = health(&plain, &tls.harness).await;
        assert!(answer.is_err(), "{plain} answered plaintext: {answer:?}");
    }
    // The HTTP listener: a plaintext request gets no HTTP answer.
    let plain = stack.issuer.replacen("https://", "http://", 1);
    let answer = reqwest::get(format!("{plain}/.well-known/oauth-authorization-server")).await;
    assert!(answer.is_err(), "{plain} answered plaintext: {answer:?}");
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_deployments_ca_is_refused() {
    let stack = TestStack::builder().tls(Mutual::No).start().await.unwrap();
    let refused = health(&stack.resource_url(), &ClientTls::public_roots()).await.unwrap_err();
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    // Server-authenticated only: the internal listeners take a client without
    // a certificate.
    let anonymous = &stack.tls.as_ref().unwrap().anonymous;
    for url in [stack.auth_grpc_url(), stack.notes_url()] {
        assert_eq!(health(&url, anonymous).await, Ok(ServingStatus::Serving), "{url}");
    }
}

/// The resource server's certificate, as a client: what it presents on its
/// calls to the internal listeners.
fn resource_server(stack: &TestStack) -> ClientTls {
    stack.tls.as_ref().unwrap().client_of(RESOURCE_SERVER_DNS).unwrap()
}

/// Exchanges `subject` for a notes-store token over gRPC, authenticated only
/// by the connection's client certificate (RFC 8705 `tls_client_auth`).
async fn exchange_as(
    stack: &TestStack,
    tls: &ClientTls,
    subject: &str,
) -> Result<TokenResponse, tonic::Status> {
    let channel = GrpcTarget::new(&stack.auth_grpc_url(), tls)
        .unwrap()
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("{e:?}")))?;
    let request = TokenRequest {
        client: Some(ClientAuthentication {
            client_id: "tollgate-resource".into(),
            client_secret: None,
            client_assertion: None,
        }),
        grant: Some(Grant::TokenExchange(TokenExchangeGrant {
            subject_token: subject.into(),
            subject_token_type: "urn:ietf:params:oauth:token-type:access_token".into(),
            audience: Some("tollgate-notes-store".into()),
            resource: None,
            scope: Some("notes:read".into()),
            requested_token_type: None,
            request_context: None,
            request_details: None,
        })),
    };
    Ok(TokenServiceClient::new(channel).token(request).await?.into_inner())
}

/// Lists notes at the notes store with `token`, over a connection with `tls`.
async fn notes_store_as(stack: &TestStack, tls: &ClientTls, token: &str) -> Result<usize, String> {
    let channel = GrpcTarget::new(&stack.notes_url(), tls)
        .unwrap()
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let request = bearer(ListNotesRequest {}, token).unwrap();
    let reply = NoteStoreClient::new(channel).list_notes(request).await;
    // The service's answer as code and message; a transport failure (a
    // handshake refused) with its cause.
    let answer = reply.map_err(|status| match status.code() {
        tonic::Code::Unknown => format!("{status:?}"),
        code => format!("{code:?}: {}", status.message()),
    });
    Ok(answer?.into_inner().notes.len())
}

#[tokio::test]
async fn a_certificate_bound_token_is_refused_over_a_connection_with_another_certificate() {
    let stack = TestStack::builder().tls(Mutual::Internal).start().await.unwrap();
    let user = stack.sign_in(&stack.cli_client(), "alice", &["notes:read"]).await.unwrap();
    let service = resource_server(&stack);

    // The resource server exchanges the user's token, proving itself with its
    // certificate alone; the token it gets is bound to that certificate.
    let bound = exchange_as(&stack, &service, user.access_token.expose()).await.unwrap();
    let (_, claims) = decode_unverified(&bound.access_token).unwrap();
    let certificate =
        std::fs::read(stack.tls.as_ref().unwrap().dir().join("resource-server.pem")).unwrap();
    let der = rustls::pki_types::CertificateDer::from_pem_slice(&certificate).unwrap();
    assert_eq!(claims["cnf"]["x5t#S256"], certificate_thumbprint(&der));
    assert_eq!(notes_store_as(&stack, &service, &bound.access_token).await, Ok(0));

    // Stolen, by someone holding another certificate of the same CA: refused.
    let thief = &stack.tls.as_ref().unwrap().harness;
    assert_eq!(
        notes_store_as(&stack, thief, &bound.access_token).await,
        Err("Unauthenticated: token is bound to a client certificate this connection did not \
             present"
            .into())
    );
    // With no certificate at all the notes store does not even take the
    // connection (mutual TLS).
    let anonymous = &stack.tls.as_ref().unwrap().anonymous;
    assert!(notes_store_as(&stack, anonymous, &bound.access_token).await.is_err());
    assert_eq!(
        tls_refusal(stack.notes_grpc(), "localhost", anonymous).await.as_deref(),
        Some("received fatal alert: CertificateRequired")
    );
}

#[tokio::test]
async fn a_service_proves_itself_with_its_certificate_and_only_its_own() {
    let stack = TestStack::builder().tls(Mutual::Internal).start().await.unwrap();
    let user = stack.sign_in(&stack.cli_client(), "alice", &["notes:read"]).await.unwrap();
    let subject = user.access_token.expose();

    // Another service's certificate claiming the resource server's client id.
    let impostor = &stack.tls.as_ref().unwrap().harness;
    let refused = exchange_as(&stack, impostor, subject).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert_eq!(
        refused.message(),
        "the TLS client certificate is not the one registered for this client"
    );

    // No certificate (the public HTTP listener asks for one, requires none):
    // the resource server's id alone proves nothing.
    let reply = stack
        .http()
        .build()
        .unwrap()
        .post(stack.url("/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", "tollgate-resource")])
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 401);
    let body: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(
        body["error_description"],
        "client must authenticate with its TLS client certificate"
    );

    // With its certificate, at the HTTP token endpoint too: a bound token,
    // and introspection says what it is bound to (RFC 8705 §3.2).
    let service = resource_server(&stack).reqwest().build().unwrap();
    let form = [("grant_type", "client_credentials"), ("client_id", "tollgate-resource")];
    let reply = post_json(&service, stack.url("/token"), &form).await;
    let token = reply["access_token"].as_str().unwrap();
    let (_, claims) = decode_unverified(token).unwrap();
    let form = [("token", token), ("client_id", "tollgate-resource")];
    let introspected = post_json(&service, stack.url("/introspect"), &form).await;
    assert_eq!(introspected["active"], true);
    assert_eq!(introspected["cnf"], claims["cnf"]);
    assert!(claims["cnf"]["x5t#S256"].is_string());
    // The same over gRPC.
    let channel = GrpcTarget::new(&stack.auth_grpc_url(), &resource_server(&stack))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let introspected = TokenServiceClient::new(channel)
        .introspect(IntrospectRequest {
            client: Some(ClientAuthentication {
                client_id: "tollgate-resource".into(),
                client_secret: None,
                client_assertion: None,
            }),
            token: token.into(),
            token_type_hint: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(introspected.active);
    assert_eq!(introspected.cnf_x5t_s256.as_deref(), claims["cnf"]["x5t#S256"].as_str());

    // The metadata says what is supported (RFC 8705 §3.3, §2.1).
    let metadata = stack.http().build().unwrap();
    let metadata = metadata.get(stack.url("/.well-known/oauth-authorization-server")).send();
    let metadata: serde_json::Value = metadata.await.unwrap().json().await.unwrap();
    assert_eq!(metadata["tls_client_certificate_bound_access_tokens"], true);
    let methods = metadata["token_endpoint_auth_methods_supported"].as_array().unwrap();
    assert!(methods.contains(&"tls_client_auth".into()), "{methods:?}");
}

#[tokio::test]
async fn the_resource_server_renews_its_certificate_without_breaking_its_bound_tokens() {
    let stack = TestStack::builder()
        .tls(Mutual::Internal)
        .tweak(|config| config.resource.service.tls.reload_interval_secs = 1)
        .start()
        .await
        .unwrap();
    let user = stack.sign_in(&stack.cli_client(), "alice", &["notes:read"]).await.unwrap();
    let api = stack.resource().await.unwrap();
    let mut seen = stack.notes_access();
    let token_at_notes_store = async |seen: &mut tokio::sync::broadcast::Receiver<_>| {
        api.list_notes(user.access_token.expose(), "me").await.unwrap();
        let context: tollgate_service_kit::auth::AuthContext =
            tollgate_e2e::within("the notes call", seen.recv()).await.unwrap().unwrap();
        context.token_id
    };
    let before = token_at_notes_store(&mut seen).await;
    assert_eq!(token_at_notes_store(&mut seen).await, before, "the exchanged token is cached");

    // The resource server's certificate is renewed in place, as a
    // certificate manager does.
    let tls = stack.tls.as_ref().unwrap();
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    let renewed = tls
        .ca
        .issue(RESOURCE_SERVER_DNS, &[RESOURCE_SERVER_DNS, "localhost"], &[loopback])
        .unwrap();
    let dev_ca = tollgate_service_kit::dev_ca::write_private;
    dev_ca(&tls.dir().join("resource-server.key"), renewed.key_pem.as_bytes()).unwrap();
    dev_ca(&tls.dir().join("resource-server.pem"), renewed.cert_pem.as_bytes()).unwrap();

    // Once it has loaded the new pair, its next notes call is made with a
    // token bound to the new certificate, over a connection that presents
    // it; every call in between succeeds.
    tollgate_e2e::within("a token bound to the renewed certificate", async {
        while token_at_notes_store(&mut seen).await == before {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(api.list_notes(user.access_token.expose(), "me").await.unwrap().len(), 0);
}

/// A form posted with `http`, its JSON answer.
async fn post_json(
    http: &reqwest::Client,
    url: url::Url,
    form: &[(&str, &str)],
) -> serde_json::Value {
    http.post(url).form(form).send().await.unwrap().json().await.unwrap()
}
