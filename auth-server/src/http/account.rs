//! `/account`: the resource owner's own page at the authorization server, where
//! they see the applications they approved and withdraw an approval (which also
//! revokes that application's tokens for them).

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::PrivateCookieJar;

use super::authorize::{error_page, read_form, render, sign_in_with};
use super::session::{self, Session};
use super::{HttpState, Peer, paths};

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    username: Option<&'a str>,
    /// (client name, client id, scope)
    approvals: Vec<(String, String, String)>,
    csrf_token: &'a str,
    error: Option<&'a str>,
}

async fn page(
    state: &HttpState,
    session: &Session,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let now = state.core.now();
    let approvals = match session.user(now) {
        Some((subject, _)) => match state.core.approvals(subject).await {
            Ok(list) => list
                .into_iter()
                .map(|a| (a.client_name, a.client_id, a.scope.to_string()))
                .collect(),
            Err(err) => return error_page(&err),
        },
        None => Vec::new(),
    };
    render(
        status,
        AccountPage {
            username: session.user(now).map(|(_, name)| name),
            approvals,
            csrf_token: &session.csrf,
            error,
        },
    )
}

/// `GET /account`.
pub async fn show(State(state): State<HttpState>, jar: PrivateCookieJar) -> Response {
    let session = session::load(&jar).unwrap_or_else(Session::anonymous);
    let jar = session::store(jar, &session);
    (jar, page(&state, &session, StatusCode::OK, None).await).into_response()
}

/// `POST /account/login`.
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
    match sign_in_with(&state, peer, &form).await {
        Ok(Some(session)) => {
            (session::store(jar, &session), Redirect::to(paths::ACCOUNT)).into_response()
        }
        Ok(None) => {
            page(
                &state,
                &form.session,
                StatusCode::UNAUTHORIZED,
                Some("Invalid username or password."),
            )
            .await
        }
        Err(err) => error_page(&err),
    }
}

/// `POST /account/withdraw`: forgets an approval and revokes its grants.
pub async fn withdraw(
    State(state): State<HttpState>,
    jar: PrivateCookieJar,
    body: Bytes,
) -> Response {
    let form = match read_form(&jar, &body) {
        Ok(form) => form,
        Err(page) => return page,
    };
    let Some((subject, _)) = form.session.user(state.core.now()) else {
        return Redirect::to(paths::ACCOUNT).into_response();
    };
    let client_id = form.fields.get("client_id").map(String::as_str).unwrap_or("");
    match state.core.withdraw_consent(subject, client_id).await {
        Ok(_) => Redirect::to(paths::ACCOUNT).into_response(),
        Err(err) => error_page(&err),
    }
}
