//! The authorization-code grant with PKCE (RFC 6749 §4.1, RFC 7636, RFC 9700 §2.1.1).

use tollgate_client_app::claims::decode_unverified;
use tollgate_client_app::oauth::ClientAuthMethod;
use tollgate_client_app::owner::ScriptedOwner;
use tollgate_e2e::{TestStack, sign_in_to_consent};

use crate::support::{
    CHALLENGE, LOOPBACK_REDIRECT, authorization_url, obtain_code, post_token, query_param, redeem,
    register,
};

const NOTES: &str = "notes:read notes:write";

#[tokio::test]
async fn public_client_signs_in_alice_and_uses_her_notes() {
    let stack = TestStack::start().await.unwrap();
    let tokens = stack
        .sign_in(
            &stack.cli_client(),
            "alice",
            &["profile:read", "profile:write", "notes:read", "notes:write"],
        )
        .await
        .unwrap();
    assert!(tokens.refresh_token.is_some());
    assert_eq!(tokens.scope, "notes:read notes:write profile:read profile:write");

    // RFC 9068 §2.2: the claims a resource server relies on.
    let (header, claims) = decode_unverified(tokens.access_token.expose()).unwrap();
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "EdDSA");
    assert!(header["kid"].is_string());
    assert_eq!(claims["iss"], stack.issuer.as_str());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "tollgate-resource");
    assert_eq!(claims["client_id"], "tollgate-cli");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 300);
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));

    let api = stack.resource().await.unwrap();
    let token = tokens.access_token.expose().as_str();
    let profile = api.update_profile(token, "me", "Alice", "alice@example.com").await.unwrap();
    assert_eq!(profile.owner, "alice");
    assert_eq!(api.get_profile(token, "alice").await.unwrap().display_name, "Alice");
    let note = api.create_note(token, "me", "Groceries", "milk").await.unwrap();
    assert_eq!(note.owner, "alice");
    let notes = api.list_notes(token, "me").await.unwrap();
    assert_eq!(notes.iter().map(|n| n.title.as_str()).collect::<Vec<_>>(), ["Groceries"]);
    api.delete_note(token, "me", &note.id).await.unwrap();
    assert!(api.list_notes(token, "me").await.unwrap().is_empty());
}

#[tokio::test]
async fn confidential_client_authenticates_with_basic_and_with_post() {
    let stack = TestStack::start().await.unwrap();
    for method in [ClientAuthMethod::ClientSecretBasic, ClientAuthMethod::ClientSecretPost] {
        let mut web = stack.web_client();
        web.auth_method = method;
        let tokens = stack.sign_in(&web, "bob", &["notes:read"]).await.unwrap();
        let (_, claims) = decode_unverified(tokens.access_token.expose()).unwrap();
        assert_eq!(
            (claims["sub"].as_str(), claims["client_id"].as_str()),
            (Some("bob"), Some("tollgate-web"))
        );
    }
}

#[tokio::test]
async fn the_redirect_carries_state_and_iss() {
    let stack = TestStack::start().await.unwrap();
    let code = obtain_code(&stack, "tollgate-cli", "alice", NOTES).await;
    assert_eq!(query_param(&code.callback, "state").as_deref(), Some("xyz-state"));
    // RFC 9207 §2: the issuer identifies who answered, against mix-up attacks.
    assert_eq!(query_param(&code.callback, "iss").as_deref(), Some(stack.issuer.as_str()));
    assert!(code.callback.as_str().starts_with(LOOPBACK_REDIRECT));
}

#[tokio::test]
async fn a_code_is_single_use() {
    let stack = TestStack::start().await.unwrap();
    let code = obtain_code(&stack, "tollgate-cli", "alice", NOTES).await;
    let first = redeem(&stack, "tollgate-cli", &code).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    redeem(&stack, "tollgate-cli", &code).await.assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn a_code_expires_after_sixty_seconds() {
    let stack = TestStack::start().await.unwrap();
    let code = obtain_code(&stack, "tollgate-cli", "alice", NOTES).await;
    stack.advance(61);
    redeem(&stack, "tollgate-cli", &code).await.assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn a_code_still_works_just_before_it_expires() {
    let stack = TestStack::start().await.unwrap();
    let code = obtain_code(&stack, "tollgate-cli", "alice", NOTES).await;
    stack.advance(59);
    assert_eq!(redeem(&stack, "tollgate-cli", &code).await.status, 200);
}

#[tokio::test]
async fn a_wrong_pkce_verifier_is_refused_and_the_code_is_spent() {
    let stack = TestStack::start().await.unwrap();
    let mut code = obtain_code(&stack, "tollgate-cli", "alice", NOTES).await;
    let genuine = std::mem::replace(&mut code.verifier, "x".repeat(43));
    redeem(&stack, "tollgate-cli", &code).await.assert_error(400, "invalid_grant");
    // Whoever stole the code burnt it: the genuine client cannot redeem it now.
    code.verifier = genuine;
    redeem(&stack, "tollgate-cli", &code).await.assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn a_missing_pkce_verifier_is_refused() {
    let stack = TestStack::start().await.unwrap();
    let code = obtain_code(&stack, "tollgate-cli", "alice", NOTES).await;
    let reply = post_token(
        &stack,
        None,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "tollgate-cli"),
            ("code", &code.code),
            ("redirect_uri", &code.redirect_uri),
        ],
    )
    .await;
    reply.assert_error(400, "invalid_grant");
    assert_eq!(reply.body["error_description"], "code_verifier is required (PKCE)");
}

#[tokio::test]
async fn a_code_is_bound_to_its_client() {
    let stack = TestStack::start().await.unwrap();
    let code = obtain_code(&stack, "tollgate-cli", "alice", "notes:read").await;
    let web_secret = stack.secrets.web.clone();
    let reply = post_token(
        &stack,
        Some(("tollgate-web", web_secret.expose())),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code.code),
            ("redirect_uri", &code.redirect_uri),
            ("code_verifier", &code.verifier),
        ],
    )
    .await;
    reply.assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn a_code_is_bound_to_its_redirect_uri() {
    let stack = TestStack::start().await.unwrap();
    let mut code = obtain_code(&stack, "tollgate-cli", "alice", NOTES).await;
    code.redirect_uri = "http://127.0.0.1:43211/callback".into();
    redeem(&stack, "tollgate-cli", &code).await.assert_error(400, "invalid_grant");
}

/// Sends the resource owner's browser to `url` and returns the response.
async fn open(url: &url::Url) -> tollgate_client_app::owner::Page {
    ScriptedOwner::new().unwrap().get(url).await.unwrap()
}

#[tokio::test]
async fn pkce_is_mandatory_and_s256_only() {
    let stack = TestStack::start().await.unwrap();
    for challenge in [None, Some((CHALLENGE, "plain"))] {
        let url = authorization_url(&stack, "tollgate-cli", LOOPBACK_REDIRECT, NOTES, challenge);
        let page = open(&url).await;
        // The client and redirect URI are valid, so the error goes back to it.
        assert_eq!(page.status, 303, "{challenge:?}");
        let back = page.location().unwrap();
        assert_eq!(query_param(&back, "error").as_deref(), Some("invalid_request"));
        assert_eq!(query_param(&back, "state").as_deref(), Some("xyz-state"));
        assert_eq!(query_param(&back, "iss").as_deref(), Some(stack.issuer.as_str()));
    }
}

#[tokio::test]
async fn an_unregistered_redirect_uri_is_never_redirected_to() {
    let stack = TestStack::start().await.unwrap();
    for redirect in [
        "https://attacker.example/callback",
        "http://127.0.0.1/callback/../evil",
        "http://127.0.0.1:43210/callbackx",
        "https://web.example/callback?x=1",
    ] {
        let url = authorization_url(
            &stack,
            "tollgate-web",
            redirect,
            "notes:read",
            Some((CHALLENGE, "S256")),
        );
        let page = open(&url).await;
        // RFC 6749 §4.1.2.1: tell the owner, never redirect to an unverified URI.
        assert_eq!(page.status, 400, "{redirect}");
        assert!(page.location().is_none());
        assert!(page.body.contains("invalid_request"), "{redirect}: {}", page.body);
    }
}

#[tokio::test]
async fn an_unknown_client_gets_an_error_page_not_a_redirect() {
    let stack = TestStack::start().await.unwrap();
    let url = authorization_url(
        &stack,
        "no-such-client",
        LOOPBACK_REDIRECT,
        "notes:read",
        Some((CHALLENGE, "S256")),
    );
    let page = open(&url).await;
    assert_eq!(page.status, 400);
    assert!(page.location().is_none());
}

#[tokio::test]
async fn a_scope_the_client_may_not_have_is_refused() {
    let stack = TestStack::start().await.unwrap();
    // tollgate-web may ask for profile:read and notes:read only.
    let url = authorization_url(
        &stack,
        "tollgate-web",
        LOOPBACK_REDIRECT,
        "notes:read notes:write",
        Some((CHALLENGE, "S256")),
    );
    let page = open(&url).await;
    assert_eq!(page.status, 303);
    assert_eq!(query_param(&page.location().unwrap(), "error").as_deref(), Some("invalid_scope"));
}

#[tokio::test]
async fn denying_consent_sends_access_denied_back() {
    let stack = TestStack::start().await.unwrap();
    let url = authorization_url(
        &stack,
        "tollgate-cli",
        LOOPBACK_REDIRECT,
        NOTES,
        Some((CHALLENGE, "S256")),
    );
    let mut owner = ScriptedOwner::new().unwrap();
    let (_, consent) =
        sign_in_to_consent(&mut owner, &url, "alice", "alice-demo-password").await.unwrap();
    let denied =
        owner.submit(&consent, "/authorize/consent", &[("decision", "deny")]).await.unwrap();
    assert_eq!(denied.status, 303);
    let back = denied.location().unwrap();
    assert_eq!(query_param(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(&back, "code"), None);
    assert_eq!(query_param(&back, "state").as_deref(), Some("xyz-state"));
}

#[tokio::test]
async fn an_ambiguous_or_missing_client_or_redirect_uri_gets_an_error_page() {
    let stack = TestStack::start().await.unwrap();
    let good = authorization_url(
        &stack,
        "tollgate-cli",
        LOOPBACK_REDIRECT,
        "notes:read",
        Some((CHALLENGE, "S256")),
    );
    let query = good.query().unwrap().to_owned();
    for variant in [
        // Two client ids: which client is asking must be unambiguous (RFC 6749 §3.1).
        format!("{query}&client_id=tollgate-web"),
        // Two redirect URIs, both registered.
        format!("{query}&redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2Fcallback"),
        // No redirect URI at all.
        query.replace("&redirect_uri=http%3A%2F%2F127.0.0.1%3A43210%2Fcallback", ""),
    ] {
        let mut url = stack.url("/authorize");
        url.set_query(Some(&variant));
        let page = open(&url).await;
        assert_eq!(page.status, 400, "{variant}");
        assert!(page.location().is_none(), "{variant}");
    }
    // Any other parameter sent twice goes back to the (verified) client.
    let mut url = stack.url("/authorize");
    url.set_query(Some(&format!("{query}&scope=notes:write")));
    let page = open(&url).await;
    assert_eq!(page.status, 303);
    assert_eq!(query_param(&page.location().unwrap(), "error").as_deref(), Some("invalid_request"));
}

#[tokio::test]
async fn a_loopback_redirect_registered_with_a_port_matches_only_that_port() {
    // RFC 8252 §7.3's any-port rule is for native apps, which register no port.
    // A web client on this machine registered with its port keeps it: another
    // local process listening elsewhere does not receive its codes.
    let stack = TestStack::start().await.unwrap();
    register(
        &stack,
        r#"
        client_id = "local-web"
        secret = "a-local-web-secret-of-at-least-32-characters"
        redirect_uris = ["http://127.0.0.1:8080/cb"]
        grant_types = ["authorization_code"]
        scopes = ["notes:read"]
        "#,
    )
    .await;
    let asked = |redirect_uri: &str| {
        authorization_url(
            &stack,
            "local-web",
            redirect_uri,
            "notes:read",
            Some((CHALLENGE, "S256")),
        )
    };
    let page = ScriptedOwner::new().unwrap().get(&asked("http://127.0.0.1:9090/cb")).await.unwrap();
    assert_eq!(page.status, 400, "shown on a page, never redirected");
    assert!(page.location().is_none());
    assert!(page.body.contains("redirect_uri is not registered for this client"), "{}", page.body);

    // Its own port: the sign-in page.
    let page = ScriptedOwner::new().unwrap().get(&asked("http://127.0.0.1:8080/cb")).await.unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("password"));
}
