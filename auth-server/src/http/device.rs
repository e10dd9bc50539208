//! RFC 8628 over HTTP: the device authorization endpoint (`POST
//! /device_authorization`, for the device) and the verification page (`/device`,
//! for the person, on another device with a browser).
//!
//! The page signs the person in (if needed) and takes their decision in one
//! form, protected like the authorization pages: CSRF token bound to the
//! session cookie, no framing, no caching.

use crate::domain::PeerCertificate;
use askama::Template;
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::PrivateCookieJar;
use tollgate_token::OAuthError;

use super::authorize::{describe_scope, error_page, read_form, render, sign_in_with};
use super::session::{self, Session};
use super::token::{client_auth, form_pairs};
use super::{HttpError, HttpState, Peer, paths, unique_params};
use crate::domain::ClientAuth;
use crate::domain::grants::device::PendingDevice;

#[derive(Template)]
#[template(path = "device.html")]
struct EnterCodePage<'a> {
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "device_confirm.html")]
struct ConfirmPage<'a> {
    client_name: &'a str,
    client_id: &'a str,
    user_code: &'a str,
    scopes: Vec<(String, String)>,
    username: Option<&'a str>,
    csrf_token: &'a str,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "device_done.html")]
struct DonePage {
    approved: bool,
}

/// `POST /device_authorization` (RFC 8628 §3.1).
pub async fn authorize(
    State(state): State<HttpState>,
    peer: Peer,
    certificate: Option<Extension<PeerCertificate>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        // Per address first: each request can write a row.
        state.core.throttles().device_ip.check(&peer.key())?;
        let (auth, scope) = parse_request(&headers, &body)?;
        let auth = auth.presented_with(certificate.map(|Extension(c)| c));
        state.core.device_authorization(&auth, scope.as_deref()).await
    }
    .await;
    match result {
        Ok(answer) => {
            let verification_uri = format!("{}{}", state.core.settings().issuer, paths::DEVICE);
            let complete = format!(
                "{verification_uri}?{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("user_code", answer.user_code.expose())
                    .finish()
            );
            let mut response = Json(serde_json::json!({
                "device_code": answer.device_code.expose(),
                "user_code": answer.user_code.expose(),
                "verification_uri": verification_uri,
                "verification_uri_complete": complete,
                "expires_in": answer.expires_in,
                "interval": answer.interval,
            }))
            .into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(err) => HttpError(err).into_response(),
    }
}

/// What the device authorization endpoint reads from the wire: the client's
/// authentication and the `scope` (fuzz target `device_endpoints`).
pub fn parse_request(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(ClientAuth, Option<String>), OAuthError> {
    let pairs = form_pairs(headers, body)?;
    let params = unique_params(&pairs)?;
    let auth = client_auth(headers, &params)?;
    Ok((auth, params.get("scope").map(|s| (*s).to_owned())))
}

fn confirm_page(
    pending: &PendingDevice,
    session: &Session,
    now: i64,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    render(
        status,
        ConfirmPage {
            client_name: &pending.client.name,
            client_id: &pending.client.client_id,
            user_code: &pending.user_code,
            scopes: pending.scope.iter().map(|s| (s.to_owned(), describe_scope(s))).collect(),
            username: session.user(now).map(|(_, name)| name),
            csrf_token: &session.csrf,
            error,
        },
    )
}

#[derive(serde::Deserialize)]
pub struct CodeQuery {
    user_code: Option<String>,
}

/// `GET /device`: enter a code, or confirm the one in the link.
pub async fn show(
    State(state): State<HttpState>,
    peer: Peer,
    jar: PrivateCookieJar,
    Query(query): Query<CodeQuery>,
) -> Response {
    let session = session::load(&jar).unwrap_or_else(Session::anonymous);
    let jar = session::store(jar, &session);
    let Some(typed) = query.user_code.filter(|c| !c.trim().is_empty()) else {
        return (jar, render(StatusCode::OK, EnterCodePage { error: None })).into_response();
    };
    let page = match state.core.pending_device(&typed, &peer.key()).await {
        Ok(Some(pending)) => {
            confirm_page(&pending, &session, state.core.now(), StatusCode::OK, None)
        }
        // Unknown, expired and used codes look alike: nothing to learn by guessing.
        Ok(None) => render(
            StatusCode::NOT_FOUND,
            EnterCodePage { error: Some("That code is not valid or has expired.") },
        ),
        Err(err) => error_page(&err),
    };
    (jar, page).into_response()
}

/// `POST /device`: sign in if needed, then approve or deny.
pub async fn decide(
    State(state): State<HttpState>,
    peer: Peer,
    jar: PrivateCookieJar,
    body: Bytes,
) -> Response {
    let form = match read_form(&jar, &body) {
        Ok(form) => form,
        Err(page) => return page,
    };
    let typed = form.fields.get("user_code").cloned().unwrap_or_default();
    let pending = match state.core.pending_device(&typed, &peer.key()).await {
        Ok(Some(pending)) => pending,
        Ok(None) => {
            return render(
                StatusCode::NOT_FOUND,
                EnterCodePage { error: Some("That code is not valid or has expired.") },
            );
        }
        Err(err) => return error_page(&err),
    };
    let now = state.core.now();
    let (session, jar) = match form.session.user(now) {
        Some(_) => (form.session.clone(), jar),
        None => match sign_in_with(&state, peer, &form).await {
            Ok(Some(session)) => {
                let jar = session::store(jar, &session);
                (session, jar)
            }
            Ok(None) => {
                let page = confirm_page(
                    &pending,
                    &form.session,
                    now,
                    StatusCode::UNAUTHORIZED,
                    Some("Invalid username or password."),
                );
                return (jar, page).into_response();
            }
            Err(err) => return error_page(&err),
        },
    };
    let Some((subject, _)) = session.user(now) else {
        return error_page(&OAuthError::ServerError);
    };
    let approve = match form.fields.get("decision").map(String::as_str) {
        Some("approve") => true,
        Some("deny") => false,
        _ => return error_page(&OAuthError::invalid_request("decision must be approve or deny")),
    };
    match state.core.decide_device(&typed, subject, approve).await {
        Ok(true) => (jar, render(StatusCode::OK, DonePage { approved: approve })).into_response(),
        Ok(false) => render(
            StatusCode::NOT_FOUND,
            EnterCodePage { error: Some("That code is not valid or has expired.") },
        ),
        Err(err) => error_page(&err),
    }
}
