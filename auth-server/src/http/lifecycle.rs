//! `POST /introspect` (RFC 7662) and `POST /revoke` (RFC 7009): form-encoded,
//! authenticated like the token endpoint.

use crate::domain::PeerCertificate;
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tollgate_token::OAuthError;

use super::token::{client_auth, form_pairs};
use super::{HttpError, HttpState, unique_params};
use crate::domain::ClientAuth;
use crate::domain::lifecycle::{ActiveToken, TokenTypeHint};

/// The authenticated client, the `token` and its hint from a posted form: all
/// that introspection and revocation read from the wire (fuzz target
/// `introspect_revoke`).
pub fn parse_request(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(ClientAuth, String, Option<TokenTypeHint>), OAuthError> {
    let pairs = form_pairs(headers, body)?;
    let params = unique_params(&pairs)?;
    let auth = client_auth(headers, &params)?;
    let token = params
        .get("token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
    let hint = TokenTypeHint::parse(params.get("token_type_hint").copied());
    Ok((auth, (*token).to_owned(), hint))
}

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// RFC 7662 §2.2: `{"active": false}` and nothing more for any token the
/// caller may not know about.
pub fn introspection_json(active: Option<&ActiveToken>) -> serde_json::Value {
    let Some(token) = active else { return serde_json::json!({ "active": false }) };
    let mut body = serde_json::json!({
        "active": true,
        "scope": token.scope,
        "client_id": token.client_id,
        "sub": token.sub,
        "exp": token.exp,
        "iat": token.iat,
        "iss": token.iss,
        "aud": token.aud,
    });
    if let Some(nbf) = token.nbf {
        body["nbf"] = nbf.into();
    }
    if let Some(token_type) = token.token_type {
        body["token_type"] = token_type.into();
    }
    if let Some(jti) = &token.jti {
        body["jti"] = jti.as_str().into();
    }
    if let Some(thumbprint) = &token.x5t_s256 {
        body["cnf"]["x5t#S256"] = thumbprint.as_str().into();
    }
    if let Some(jkt) = &token.jkt {
        body["cnf"]["jkt"] = jkt.as_str().into();
    }
    body
}

pub async fn introspect(
    State(state): State<HttpState>,
    certificate: Option<Extension<PeerCertificate>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let (auth, token, hint) = parse_request(&headers, &body)?;
        let auth = auth.presented_with(certificate.map(|Extension(c)| c));
        state.core.introspect(&auth, &token, hint).await
    }
    .await;
    match result {
        Ok(active) => no_store(Json(introspection_json(active.as_ref())).into_response()),
        Err(err) => HttpError(err).into_response(),
    }
}

pub async fn revoke(
    State(state): State<HttpState>,
    certificate: Option<Extension<PeerCertificate>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let (auth, token, hint) = parse_request(&headers, &body)?;
        let auth = auth.presented_with(certificate.map(|Extension(c)| c));
        state.core.revoke(&auth, &token, hint).await
    }
    .await;
    match result {
        // RFC 7009 §2.2: 200, whether or not there was anything to revoke.
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(err) => HttpError(err).into_response(),
    }
}
