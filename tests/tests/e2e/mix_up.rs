//! The client's defences against a mix-up (RFC 9700 §4.4), played against an
//! attacker's authorization server on its own port: metadata naming another
//! issuer than the one it was fetched for (RFC 8414 §3.3), and an authorization
//! response from another issuer (RFC 9207 §2.4). The client refuses both,
//! before it uses anything the attacker sent.

use std::collections::HashMap;

use axum::extract::Query;
use axum::response::Redirect;
use tollgate_client_app::discovery::{MAX_METADATA_BYTES, discover};
use tollgate_client_app::loopback::LoopbackRedirect;
use tollgate_client_app::owner::ScriptedOwner;
use tollgate_e2e::TestStack;

/// The attacker's authorization server. Its metadata document is a copy of the
/// honest server's (so it names the honest issuer); its authorization endpoint
/// sends the browser straight back to the client's redirect URI with a code of
/// its own, the client's `state`, and its own issuer as `iss`.
struct Attacker {
    issuer: String,
}

impl Attacker {
    async fn start(stack: &TestStack) -> Self {
        let honest = crate::support::metadata(stack).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let iss = issuer.clone();
        let app = axum::Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                axum::routing::get(move || async move { axum::Json(honest) }),
            )
            .route(
                "/authorize",
                axum::routing::get(move |Query(request): Query<HashMap<String, String>>| {
                    let iss = iss.clone();
                    async move {
                        let mut back = url::Url::parse(&request["redirect_uri"]).unwrap();
                        back.query_pairs_mut()
                            .append_pair("code", "the-attackers-code")
                            .append_pair("state", &request["state"])
                            .append_pair("iss", &iss);
                        Redirect::to(back.as_str())
                    }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { issuer }
    }
}

#[tokio::test]
async fn the_client_refuses_metadata_that_names_another_issuer() {
    let stack = TestStack::start().await.unwrap();
    let attacker = Attacker::start(&stack).await;
    let http = reqwest::Client::new();
    // Control: the honest server's own document is accepted.
    assert_eq!(discover(&http, &stack.issuer).await.unwrap().issuer, stack.issuer);
    // RFC 8414 §3.3: the document must name the issuer it was fetched for.
    let refused = discover(&http, &attacker.issuer).await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        format!(
            "discovery failed: metadata names issuer {:?}, expected {:?}",
            stack.issuer, attacker.issuer
        )
    );
}

#[tokio::test]
async fn the_client_refuses_an_authorization_response_from_another_issuer() {
    let stack = TestStack::start().await.unwrap();
    let attacker = Attacker::start(&stack).await;
    let client = stack.client(&stack.cli_client()).await.unwrap();
    let loopback = LoopbackRedirect::bind().await.unwrap();
    let pending =
        client.authorization_url(&["notes:read".into()], &loopback.redirect_uri()).unwrap();
    let waiting = tokio::spawn(loopback.wait());

    // The mix-up: the request meant for the honest server reaches the
    // attacker's, whose answer lands at the client's redirect URI, state and all.
    let misdirected =
        url::Url::parse(&format!("{}/authorize?{}", attacker.issuer, pending.url.query().unwrap()))
            .unwrap();
    let mut owner = ScriptedOwner::new().unwrap();
    let bounced = owner.get(&misdirected).await.unwrap();
    assert_eq!(bounced.status, 303);
    owner.follow(&bounced).await.unwrap();
    let callback = tollgate_e2e::within("the redirect", waiting).await.unwrap().unwrap().unwrap();
    assert_eq!(callback["iss"], attacker.issuer);

    // RFC 9207 §2.4: refused for its issuer, before the code goes anywhere (the
    // honest token endpoint would have answered invalid_grant).
    let refused = client.finish_authorization(pending, &callback).await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        "the iss in the redirect is not our authorization server (RFC 9207)"
    );
}

#[tokio::test]
async fn the_client_reads_a_metadata_document_up_to_its_size_limit_and_no_further() {
    let stack = TestStack::start().await.unwrap();
    let honest = crate::support::metadata(&stack).await;
    // A server whose issuer `<base>/<len>` serves the honest document, naming
    // that issuer, padded with JSON whitespace to `len` bytes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let named = base.clone();
    let app = axum::Router::new().route(
        "/.well-known/oauth-authorization-server/{len}",
        axum::routing::get(move |axum::extract::Path(len): axum::extract::Path<usize>| {
            let (mut document, named) = (honest.clone(), named.clone());
            async move {
                document["issuer"] = format!("{named}/{len}").into();
                let mut body = serde_json::to_vec(&document).unwrap();
                body.resize(len, b' ');
                body
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();

    let at_limit = format!("{base}/{MAX_METADATA_BYTES}");
    assert_eq!(discover(&http, &at_limit).await.unwrap().issuer, at_limit);
    let over = format!("{base}/{}", MAX_METADATA_BYTES + 1);
    let err = discover(&http, &over).await.unwrap_err().to_string();
    assert!(err.ends_with(&format!("sent more than {MAX_METADATA_BYTES} bytes")), "{err}");
}
