//! The resource owner's pages as an attacker meets them: framing, caching,
//! CSRF, cookie attributes, credential guessing.

use tollgate_client_app::owner::ScriptedOwner;
use tollgate_e2e::{TestStack, sign_in_to_consent};

use crate::support::{CHALLENGE, LOOPBACK_REDIRECT, authorization_url};

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
    let mut owner = ScriptedOwner::new().unwrap();
    let (login, consent) =
        sign_in_to_consent(&mut owner, &authz(&stack), "alice", "alice-demo-password")
            .await
            .unwrap();
    assert!(consent.body.contains("notes:read"), "the consent page lists the scopes");
    for page in [&login, &consent] {
        // RFC 6749 §10.13 (clickjacking): neither old nor new browsers may frame it.
        assert_eq!(page.header("x-frame-options"), Some("DENY"));
        let csp = page.header("content-security-policy").unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(page.header("cache-control"), Some("no-store"));
        assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
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
