//! The resource owner's pages as an attacker meets them: framing, caching,
//! CSRF, cookie attributes, credential guessing.

use reqwest::header::HeaderMap;
use tollgate_client_app::owner::{Page, ScriptedOwner};
use tollgate_e2e::{TestStack, sign_in_to_consent};

use crate::support::{CHALLENGE, LOOPBACK_REDIRECT, authorization_url, post_form};

/// The headers docs/security.md lists for the resource owner's pages
/// (auth-server `http/mod.rs` `router`): never framed (RFC 6749 §10.13, RFC
/// 9700 §4.16, for old and new browsers), never cached, never leaking the
/// authorization request through `Referer` (RFC 9700 §4.2), never sniffed.
const PAGE_HEADERS: [(&str, &str); 5] = [
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("cache-control", "no-store"),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
];

#[track_caller]
fn assert_headers(what: &str, headers: &HeaderMap, expected: &[(&str, &str)]) {
    for (name, value) in expected {
        let got = headers.get(*name).map(|v| v.to_str().unwrap());
        assert_eq!(got, Some(*value), "{what}: {name}");
    }
}

#[track_caller]
fn assert_page_headers(what: &str, page: &Page, status: u16) {
    assert_eq!(page.status, status, "{what}: {}", page.body);
    assert_headers(what, &page.headers, &PAGE_HEADERS);
}

fn authz(stack: &TestStack) -> url::Url {
    authorization_url(
        stack,
        "tollgate-cli",
        LOOPBACK_REDIRECT,
        "notes:read",
        Some((CHALLENGE, "S256")),
    )
}

#[tokio::test]
async fn pages_cannot_be_framed_cached_or_leak_the_request() {
    let stack = TestStack::start().await.unwrap();
    let password = [("username", "alice"), ("password", "alice-demo-password")];

    // The authorization pages, every answer of each: the sign-in page, a
    // refused sign-in, the redirect to consent, the consent page, the redirect
    // back to the client, and the error page of a request that cannot redirect.
    let mut owner = ScriptedOwner::new().unwrap();
    let login = owner.get(&authz(&stack)).await.unwrap();
    assert_page_headers("sign-in page", &login, 200);
    let wrong = owner
        .submit(&login, "/authorize/login", &[("username", "alice"), ("password", "wrong")])
        .await
        .unwrap();
    assert_page_headers("refused sign-in", &wrong, 401);
    let signed_in = owner.submit(&wrong, "/authorize/login", &password).await.unwrap();
    assert_page_headers("signed in", &signed_in, 303);
    let consent = owner.follow(&signed_in).await.unwrap();
    assert_page_headers("consent page", &consent, 200);
    assert!(consent.body.contains("notes:read"), "the consent page lists the scopes");
    let decided =
        owner.submit(&consent, "/authorize/consent", &[("decision", "approve")]).await.unwrap();
    assert_page_headers("approved", &decided, 303);
    let unknown = owner.get(&stack.url("/authorize?client_id=nobody")).await.unwrap();
    assert_page_headers("error page", &unknown, 400);

    // The device verification page and its answer.
    let device = post_form(
        &stack,
        "/device_authorization",
        None,
        &[("client_id", "tollgate-cli"), ("scope", "notes:read")],
    )
    .await;
    let verify = url::Url::parse(device.body["verification_uri_complete"].as_str().unwrap());
    let mut owner = ScriptedOwner::new().unwrap();
    let page = owner.get(&verify.unwrap()).await.unwrap();
    assert_page_headers("verification page", &page, 200);
    let mut fields = password.to_vec();
    fields.push(("decision", "deny"));
    let denied = owner.submit(&page, "/device", &fields).await.unwrap();
    assert_page_headers("verification answer", &denied, 200);

    // The account pages: sign-in, the approvals, a refused withdrawal.
    let mut owner = ScriptedOwner::new().unwrap();
    let account = owner.get(&stack.url("/account")).await.unwrap();
    assert_page_headers("account sign-in", &account, 200);
    let signed_in = owner.submit(&account, "/account/login", &password).await.unwrap();
    assert_page_headers("account signed in", &signed_in, 303);
    let approvals = owner.follow(&signed_in).await.unwrap();
    assert_page_headers("approvals page", &approvals, 200);
    let forged = owner
        .post(&stack.url("/account/withdraw"), &[("client_id".into(), "tollgate-cli".into())])
        .await
        .unwrap();
    assert_page_headers("forged withdrawal", &forged, 403);
}

#[tokio::test]
async fn token_and_other_json_answers_are_never_cached_or_sniffed() {
    let stack = TestStack::start().await.unwrap();
    let reporter = stack.secrets.reporter.clone();
    let basic = Some(("tollgate-reporter", reporter.expose().as_str()));
    // RFC 6749 §5.1, §5.2: the token endpoint, issuing and refusing.
    let issued = post_form(&stack, "/token", basic, &[("grant_type", "client_credentials")]).await;
    let refused = post_form(
        &stack,
        "/token",
        Some(("tollgate-reporter", "wrong")),
        &[("grant_type", "client_credentials")],
    )
    .await;
    for (what, reply, status) in [("token issued", &issued, 200), ("token refused", &refused, 401)]
    {
        assert_eq!(reply.status, status, "{what}: {:?}", reply.body);
        assert_headers(
            what,
            &reply.headers,
            &[
                ("cache-control", "no-store"),
                ("pragma", "no-cache"),
                ("x-content-type-options", "nosniff"),
            ],
        );
    }
    // Introspection, revocation and device authorization: not cached either.
    let token = issued.body["access_token"].as_str().unwrap();
    for (path, client, form) in [
        ("/introspect", basic, vec![("token", token)]),
        ("/revoke", basic, vec![("token", token)]),
        ("/device_authorization", None, vec![("client_id", "tollgate-cli")]),
    ] {
        let reply = post_form(&stack, path, client, &form).await;
        assert_eq!(reply.status, 200, "{path}: {:?}", reply.body);
        assert_headers(
            path,
            &reply.headers,
            &[("cache-control", "no-store"), ("x-content-type-options", "nosniff")],
        );
    }
    // The metadata and the keys are meant to be cached, but never sniffed.
    for path in ["/.well-known/oauth-authorization-server", "/jwks.json"] {
        let response = reqwest::get(stack.url(path)).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_headers(path, response.headers(), &[("x-content-type-options", "nosniff")]);
    }
}

#[tokio::test]
async fn the_session_cookie_is_host_only_secure_httponly_and_samesite() {
    let stack = TestStack::start().await.unwrap();
    let page = ScriptedOwner::new().unwrap().get(&authz(&stack)).await.unwrap();
    let cookie = page.header("set-cookie").unwrap();
    assert!(cookie.starts_with("__Host-tollgate-session="), "{cookie}");
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(cookie.split("; ").any(|a| a == attribute), "{attribute} missing: {cookie}");
    }
    assert!(!cookie.contains("Domain="), "a __Host- cookie has no Domain");
}

#[tokio::test]
async fn a_login_post_without_the_sessions_csrf_token_is_forbidden() {
    let stack = TestStack::start().await.unwrap();
    let mut victim = ScriptedOwner::new().unwrap();
    let login = victim.get(&authz(&stack)).await.unwrap();
    let authz_field = login.field("authz").unwrap();
    let credentials = |csrf: Option<String>| {
        let mut fields = vec![
            ("authz".to_owned(), authz_field.clone()),
            ("username".to_owned(), "alice".to_owned()),
            ("password".to_owned(), "alice-demo-password".to_owned()),
        ];
        if let Some(csrf) = csrf {
            fields.push(("csrf_token".to_owned(), csrf));
        }
        fields
    };
    let action = stack.url("/authorize/login");
    // No token at all.
    let page = victim.post(&action, &credentials(None)).await.unwrap();
    assert_eq!(page.status, 403);
    // The attacker's own session's token (what a cross-site form could carry).
    let mut attacker = ScriptedOwner::new().unwrap();
    let attackers_token = attacker.get(&authz(&stack)).await.unwrap().field("csrf_token").unwrap();
    let page = victim.post(&action, &credentials(Some(attackers_token))).await.unwrap();
    assert_eq!(page.status, 403);
    // The right token but no session cookie (a cross-site post without cookies).
    let mut cookieless = ScriptedOwner::new().unwrap();
    let page = cookieless.post(&action, &credentials(login.field("csrf_token"))).await.unwrap();
    assert_eq!(page.status, 403);
    // The victim's own form works.
    let page = victim.post(&action, &credentials(login.field("csrf_token"))).await.unwrap();
    assert_eq!(page.status, 303);
}

#[tokio::test]
async fn a_consent_post_with_a_foreign_csrf_token_issues_no_code() {
    let stack = TestStack::start().await.unwrap();
    let mut victim = ScriptedOwner::new().unwrap();
    let (login, consent) =
        sign_in_to_consent(&mut victim, &authz(&stack), "alice", "alice-demo-password")
            .await
            .unwrap();
    // The CSRF token changes at sign-in: the pre-login one no longer works.
    assert_ne!(consent.field("csrf_token"), login.field("csrf_token"));
    let forged = vec![
        ("authz".to_owned(), consent.field("authz").unwrap()),
        ("csrf_token".to_owned(), login.field("csrf_token").unwrap()),
        ("decision".to_owned(), "approve".to_owned()),
    ];
    let page = victim.post(&stack.url("/authorize/consent"), &forged).await.unwrap();
    assert_eq!(page.status, 403);
    assert!(page.location().is_none(), "no redirect, so no code");
}

#[tokio::test]
async fn a_wrong_password_or_unknown_user_gets_the_same_answer() {
    let stack = TestStack::start().await.unwrap();
    let mut answers = Vec::new();
    for (username, password) in [("alice", "wrong-password"), ("mallory", "alice-demo-password")] {
        let mut owner = ScriptedOwner::new().unwrap();
        let login = owner.get(&authz(&stack)).await.unwrap();
        let page = owner
            .submit(&login, "/authorize/login", &[("username", username), ("password", password)])
            .await
            .unwrap();
        assert_eq!(page.status, 401);
        assert!(page.location().is_none());
        assert!(page.body.contains("Invalid username or password."));
        // Still a working form: a fresh attempt with the right password succeeds.
        answers.push(page.body.replace(&page.field("csrf_token").unwrap(), "<csrf>"));
        if username == "alice" {
            let retry = owner
                .submit(
                    &page,
                    "/authorize/login",
                    &[("username", "alice"), ("password", "alice-demo-password")],
                )
                .await
                .unwrap();
            assert_eq!(retry.status, 303);
        }
    }
    // No user enumeration: the pages differ in nothing but the CSRF token.
    assert_eq!(answers[0], answers[1]);
}
