//! The authorization endpoint (RFC 6749 §3.1, §4.1.1–4.1.2) and the resource
//! owner's pages: sign-in, then consent, then the redirect back with `code`,
//! `state` and `iss` (RFC 9207).
//!
//! The authorization request travels through the pages as its original query
//! string (`authz`) and is validated again at every step, so nothing the browser
//! sends is trusted because an earlier page accepted it.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_extra::extract::PrivateCookieJar;
use tollgate_token::OAuthError;

use super::session::{self, Session};
use super::{HttpState, Peer, parse_pairs, paths, unique_params};
use crate::domain::authorize::redirect_with;
use crate::domain::{AuthorizationRequest, AuthorizeError};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    client_name: &'a str,
    authz: &'a str,
    csrf_token: &'a str,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    client_name: &'a str,
    client_id: &'a str,
    username: &'a str,
    scopes: Vec<(String, String)>,
    redirect_host: String,
    authz: &'a str,
    csrf_token: &'a str,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    code: &'a str,
    description: &'a str,
}

pub(super) fn render(status: StatusCode, page: impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "template failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// An error shown to the resource owner, never redirected.
pub(super) fn error_page(err: &OAuthError) -> Response {
    let status = match err {
        OAuthError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        OAuthError::TemporarilyUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        OAuthError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut page = render(status, ErrorPage { code: err.code(), description: err.description() });
    if let Some(secs) = err.retry_after_secs() {
        // RFC 9110 §10.2.3: when a retry makes sense (as the JSON endpoints say).
        page.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
    }
    page
}

/// Sends the answer back to the client's verified redirect URI, with `state` and
/// `iss` (RFC 9207 §2: so the client can tell which server answered).
fn redirect_back(
    state: &HttpState,
    redirect_uri: &str,
    client_state: Option<&str>,
    params: &[(&str, &str)],
) -> Response {
    let issuer = state.core.settings().issuer.as_str();
    let mut all: Vec<(&str, &str)> = params.to_vec();
    if let Some(s) = client_state {
        all.push(("state", s));
    }
    all.push(("iss", issuer));
    match redirect_with(redirect_uri, &all) {
        Some(url) => Redirect::to(&url).into_response(),
        None => error_page(&OAuthError::ServerError),
    }
}

/// Issues the code and sends the browser back to the client with it.
async fn code_redirect(
    state: &HttpState,
    request: &AuthorizationRequest,
    subject: &str,
) -> Response {
    match state.core.issue_code(request, subject).await {
        Ok(code) => redirect_back(
            state,
            &request.redirect_uri,
            request.state.as_deref(),
            &[("code", code.expose())],
        ),
        Err(err) => error_page(&err),
    }
}

fn refusal(state: &HttpState, err: AuthorizeError) -> Response {
    match err {
        AuthorizeError::Page(err) => error_page(&err),
        AuthorizeError::Redirect { redirect_uri, state: client_state, error } => redirect_back(
            state,
            &redirect_uri,
            client_state.as_deref(),
            &[("error", error.code()), ("error_description", error.description())],
        ),
    }
}

pub(super) fn describe_scope(scope: &str) -> String {
    match scope.split_once(':') {
        Some((what, "read")) => format!("read your {what}"),
        Some((what, "write")) => format!("change your {what}"),
        _ => "access this part of your account".to_owned(),
    }
}

fn consent_page(
    request: &AuthorizationRequest,
    username: &str,
    authz: &str,
    csrf: &str,
) -> Response {
    let redirect_host = url::Url::parse(&request.redirect_uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    render(
        StatusCode::OK,
        ConsentPage {
            client_name: &request.client.name,
            client_id: &request.client.client_id,
            username,
            scopes: request.scope.iter().map(|s| (s.to_owned(), describe_scope(s))).collect(),
            redirect_host,
            authz,
            csrf_token: csrf,
        },
    )
}

/// `GET /authorize`: validates the request, then shows sign-in or consent.
#[tracing::instrument(
    name = "oauth.authorize",
    skip_all,
    fields(client_id, scope, subject, decision, reason)
)]
pub async fn show(
    State(state): State<HttpState>,
    jar: PrivateCookieJar,
    RawQuery(query): RawQuery,
) -> Response {
    let authz = query.unwrap_or_default();
    let request = match state.core.validate_authorization(&parse_pairs(authz.as_bytes())).await {
        Ok(request) => request,
        Err(err) => {
            let code = match &err {
                AuthorizeError::Page(e) | AuthorizeError::Redirect { error: e, .. } => e.code(),
            };
            tracing::Span::current().record("decision", "refused").record("reason", code);
            return refusal(&state, err);
        }
    };
    let span = tracing::Span::current();
    span.record("client_id", request.client.client_id.as_str());
    span.record("scope", request.scope.to_string());
    tracing::info!(client_id = %request.client.client_id, scope = %request.scope, "authorization request");
    let session = session::load(&jar).unwrap_or_else(Session::anonymous);
    let jar = session::store(jar, &session);
    let page = match session.user(state.core.now()) {
        // Approved before, for all of this: not asked again.
        Some((subject, _))
            if matches!(state.core.may_skip_consent(subject, &request).await, Ok(true)) =>
        {
            span.record("subject", subject).record("decision", "consent_remembered");
            tracing::info!(client_id = %request.client.client_id, subject, "consent remembered");
            code_redirect(&state, &request, subject).await
        }
        Some((_, username)) => consent_page(&request, username, &authz, &session.csrf),
        None => render(
            StatusCode::OK,
            LoginPage {
                client_name: &request.client.name,
                authz: &authz,
                csrf_token: &session.csrf,
                error: None,
            },
        ),
    };
    (jar, page).into_response()
}

/// The fields every page form posts, checked before anything else.
pub(super) struct PostedForm {
    pub(super) fields: std::collections::HashMap<String, String>,
    pub(super) session: Session,
    authz: String,
}

/// Reads a form post and checks its CSRF token against the session's.
pub(super) fn read_form(jar: &PrivateCookieJar, body: &[u8]) -> Result<PostedForm, Response> {
    let pairs = parse_pairs(body);
    let params = unique_params(&pairs).map_err(|err| error_page(&err))?;
    let fields: std::collections::HashMap<String, String> =
        params.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    let session = session::load(jar);
    let presented = fields.get("csrf_token").map(String::as_str).unwrap_or("");
    let Some(session) = session.filter(|s| s.csrf_matches(presented)) else {
        tracing::warn!("form post with a missing or wrong CSRF token refused");
        let mut page = error_page(&OAuthError::invalid_request(
            "the form has expired or was not sent from this site",
        ));
        *page.status_mut() = StatusCode::FORBIDDEN;
        return Err(page);
    };
    let authz = fields.get("authz").cloned().unwrap_or_default();
    Ok(PostedForm { fields, session, authz })
}

/// Checks the username and password a form carries: a fresh signed-in session
/// (new CSRF token) if they are right, `None` if not. Unknown user and wrong
/// password take the same time and give the same answer.
pub(super) async fn sign_in_with(
    state: &HttpState,
    peer: Peer,
    form: &PostedForm,
) -> Result<Option<Session>, OAuthError> {
    let username = form.fields.get("username").map(String::as_str).unwrap_or("");
    let password = form.fields.get("password").map(String::as_str).unwrap_or("");
    let span = tracing::Span::current();
    Ok(match state.core.authenticate_user(username, password, &peer.key()).await? {
        Some(user) => {
            span.record("decision", "allowed");
            span.record("subject", user.subject.as_str());
            Some(Session::signed_in(user.subject, user.username, state.core.now()))
        }
        None => {
            span.record("decision", "refused");
            span.record("reason", "bad_credentials");
            tollgate_telemetry::metrics::login_failed();
            None
        }
    })
}

fn back_to_authorize(authz: &str) -> Response {
    Redirect::to(&format!("{}?{authz}", paths::AUTHORIZE)).into_response()
}

/// `POST /authorize/login`: checks the resource owner's credentials.
#[tracing::instrument(name = "oauth.login", skip_all, fields(client_id, subject, decision, reason))]
pub async fn login(
    State(state): State<HttpState>,
    peer: Peer,
    jar: PrivateCookieJar,
    body: Bytes,
) -> Response {
    let form = match read_form(&jar, &body) {
        Ok(form) => form,
        Err(page) => return page,
    };
    let request = match state.core.validate_authorization(&parse_pairs(form.authz.as_bytes())).await
    {
        Ok(request) => request,
        Err(err) => return refusal(&state, err),
    };
    tracing::Span::current().record("client_id", request.client.client_id.as_str());
    match sign_in_with(&state, peer, &form).await {
        Ok(Some(session)) => {
            (session::store(jar, &session), back_to_authorize(&form.authz)).into_response()
        }
        Ok(None) => {
            // The same words whether the user exists or not.
            render(
                StatusCode::UNAUTHORIZED,
                LoginPage {
                    client_name: &request.client.name,
                    authz: &form.authz,
                    csrf_token: &form.session.csrf,
                    error: Some("Invalid username or password."),
                },
            )
        }
        Err(err) => error_page(&err),
    }
}

/// `POST /authorize/consent`: the resource owner's decision.
#[tracing::instrument(
    name = "oauth.consent",
    skip_all,
    fields(client_id, subject, scope, decision)
)]
pub async fn consent(
    State(state): State<HttpState>,
    jar: PrivateCookieJar,
    body: Bytes,
) -> Response {
    let form = match read_form(&jar, &body) {
        Ok(form) => form,
        Err(page) => return page,
    };
    let Some((subject, _)) = form.session.user(state.core.now()) else {
        // Signed out (or the sign-in expired) since the consent page was shown.
        return back_to_authorize(&form.authz);
    };
    let request = match state.core.validate_authorization(&parse_pairs(form.authz.as_bytes())).await
    {
        Ok(request) => request,
        Err(err) => return refusal(&state, err),
    };
    let span = tracing::Span::current();
    span.record("client_id", request.client.client_id.as_str());
    span.record("subject", subject).record("scope", request.scope.to_string());
    match form.fields.get("decision").map(String::as_str) {
        Some("approve") => {
            if let Err(err) = state.core.remember_consent(subject, &request).await {
                return error_page(&err);
            }
            span.record("decision", "approved");
            code_redirect(&state, &request, subject).await
        }
        Some("deny") => {
            span.record("decision", "denied");
            state.core.consent_denied(subject, &request);
            redirect_back(
                &state,
                &request.redirect_uri,
                request.state.as_deref(),
                &[
                    ("error", "access_denied"),
                    ("error_description", "the resource owner denied the request"),
                ],
            )
        }
        _ => error_page(&OAuthError::invalid_request("decision must be approve or deny")),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::header::RETRY_AFTER;

    use super::*;

    #[test]
    fn an_unavailable_page_says_when_to_retry_and_others_do_not() {
        let busy = error_page(&OAuthError::TemporarilyUnavailable("busy".into()));
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers().get(RETRY_AFTER).map(|v| v.as_bytes()), Some(&b"1"[..]));
        let bad = error_page(&OAuthError::invalid_request("bad"));
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert!(bad.headers().get(RETRY_AFTER).is_none());
    }
}
