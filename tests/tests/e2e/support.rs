//! Raw protocol helpers for tests that need to step outside a well-behaved client:
//! replaying a code, sending a wrong verifier, posting a form by hand.

use oauth2::PkceCodeChallenge;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tollgate_auth_server::bootstrap::{ClientSpec, client_from_spec, register_client};
use tollgate_client_app::oauth::{ClientAuthMethod, ClientIdentity};
use tollgate_client_app::owner::{Page, ScriptedOwner};
use tollgate_e2e::{TestStack, approve, password_of};
use tollgate_service_kit::status::oauth_error_code;

/// A code obtained through the real pages, with what is needed to redeem it.
pub struct Code {
    pub code: String,
    pub verifier: String,
    pub redirect_uri: String,
    /// The query of the redirect back to the client.
    pub callback: url::Url,
}

pub const LOOPBACK_REDIRECT: &str = "http://127.0.0.1:43210/callback";

/// A well-formed S256 challenge (RFC 7636 Appendix B), for requests whose code
/// is never redeemed.
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// An authorization URL for `client_id`, built by hand.
pub fn authorization_url(
    stack: &TestStack,
    client_id: &str,
    redirect_uri: &str,
    scope: &str,
    challenge: Option<(&str, &str)>,
) -> url::Url {
    let mut url = stack.url("/authorize");
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", scope)
            .append_pair("state", "xyz-state");
        if let Some((challenge, method)) = challenge {
            query
                .append_pair("code_challenge", challenge)
                .append_pair("code_challenge_method", method);
        }
    }
    url
}

/// Has `username` approve `client_id` and returns the code from the redirect
/// (the redirect itself is not followed: nobody listens at the redirect URI).
pub async fn obtain_code(stack: &TestStack, client_id: &str, username: &str, scope: &str) -> Code {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let url = authorization_url(
        stack,
        client_id,
        LOOPBACK_REDIRECT,
        scope,
        Some((challenge.as_str(), "S256")),
    );
    let mut owner = ScriptedOwner::new().unwrap();
    let answer = approve(&mut owner, &url, username, password_of(username).unwrap()).await.unwrap();
    let callback = answer.location().unwrap();
    let code = query_param(&callback, "code").expect("a code in the redirect");
    Code {
        code,
        verifier: verifier.secret().clone(),
        redirect_uri: LOOPBACK_REDIRECT.into(),
        callback,
    }
}

pub fn query_param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// A token endpoint response.
#[derive(Debug)]
pub struct TokenReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
}

impl TokenReply {
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("<none>")
    }

    /// Asserts an RFC 6749 §5.2 error response with this code and status.
    pub fn assert_error(&self, status: u16, error: &str) {
        assert_eq!((self.status.as_u16(), self.error()), (status, error), "{:?}", self.body);
        assert_eq!(self.headers["cache-control"], "no-store");
        assert!(self.body.get("access_token").is_none());
    }
}

/// `POST /token` with `form`, authenticating with HTTP Basic when `basic` is given.
pub async fn post_token(
    stack: &TestStack,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> TokenReply {
    post_form(stack, "/token", basic, form).await
}

/// `POST path` with `form` (token, introspection, revocation endpoints).
pub async fn post_form(
    stack: &TestStack,
    path: &str,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> TokenReply {
    post_form_with(stack, path, basic, form, &[]).await
}

/// [`post_form`] with extra request `headers` (a `DPoP` proof, say; a name
/// given twice is sent twice).
pub async fn post_form_with(
    stack: &TestStack,
    path: &str,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> TokenReply {
    let mut request = reqwest::Client::new().post(stack.url(path)).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    TokenReply { status, headers, body }
}

/// Redeems a code as the public client `client_id`.
pub async fn redeem(stack: &TestStack, client_id: &str, code: &Code) -> TokenReply {
    post_token(stack, None, &redemption(client_id, code)).await
}

/// The form that redeems `code` for the public client `client_id`.
pub fn redemption<'a>(client_id: &'a str, code: &'a Code) -> [(&'static str, &'a str); 5] {
    [
        ("grant_type", "authorization_code"),
        ("client_id", client_id),
        ("code", &code.code),
        ("redirect_uri", &code.redirect_uri),
        ("code_verifier", &code.verifier),
    ]
}

/// The authorization server's metadata document (RFC 8414).
pub async fn metadata(stack: &TestStack) -> serde_json::Value {
    reqwest::get(stack.url("/.well-known/oauth-authorization-server"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Registers an extra client directly, as an operator would with the admin command.
pub async fn register(stack: &TestStack, spec: &str) -> ClientIdentity {
    let spec: ClientSpec = toml::from_str(spec).unwrap();
    let client = client_from_spec(&spec, "tollgate-resource").unwrap();
    let core = &stack.auth_core;
    register_client(core.store(), &client, core.now()).await.unwrap();
    ClientIdentity {
        client_id: spec.client_id.clone(),
        client_secret: spec.secret.clone(),
        auth_method: ClientAuthMethod::ClientSecretBasic,
    }
}

pub use tollgate_e2e::forge::{new_ed25519_key, sign_jwt};

/// After the next denylist sync, `access_token` is refused as revoked by the
/// resource server.
pub async fn assert_refused_as_revoked(stack: &TestStack, access_token: &str) {
    stack.sync_denylists().await.unwrap();
    let status = stack.resource().await.unwrap().list_notes(access_token, "me").await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::Unauthenticated, "token has been revoked")
    );
    assert_eq!(oauth_error_code(&status), Some("invalid_token"));
}

/// `username` signs in on `/account`: the page listing their approvals, each
/// with its withdraw form.
pub async fn account_page(stack: &TestStack, owner: &mut ScriptedOwner, username: &str) -> Page {
    let account = owner.get(&stack.url("/account")).await.unwrap();
    assert_eq!(account.header("x-frame-options"), Some("DENY"));
    let password = password_of(username).unwrap();
    let signed_in = owner
        .submit(&account, "/account/login", &[("username", username), ("password", password)])
        .await
        .unwrap();
    owner.follow(&signed_in).await.unwrap()
}

/// Posts the account page's withdraw form for `client_id`.
pub async fn withdraw(
    stack: &TestStack,
    owner: &mut ScriptedOwner,
    page: &Page,
    client_id: &str,
) -> Page {
    let form = [
        ("csrf_token".to_owned(), page.field("csrf_token").unwrap()),
        ("client_id".to_owned(), client_id.to_owned()),
    ];
    owner.post(&stack.url("/account/withdraw"), &form).await.unwrap()
}
