//! `POST /token` (RFC 6749 §3.2): form-encoded in, JSON out.

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use tollgate_token::{OAuthError, Secret};

use super::{HttpError, HttpState, parse_pairs, unique_params};
use crate::domain::client_auth::assertion_subject;
use crate::domain::dpop::PresentedProof;
use crate::domain::model::{DEVICE_CODE, JWT_BEARER_ASSERTION, TOKEN_EXCHANGE};
use crate::domain::{ClientAuth, ExchangeRequest, Grant, PeerCertificate, TokenResponse};

pub async fn token(
    State(state): State<HttpState>,
    certificate: Option<Extension<PeerCertificate>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let certificate = certificate.map(|Extension(c)| c);
    let mut response = match handle(&state, certificate, &headers, &body).await {
        Ok(response) => success(response),
        Err(err) => HttpError(err).into_response(),
    };
    // RFC 9449 §8, §8.2: with nonces on, every answer (use_dpop_nonce above
    // all) carries the nonce to use next.
    if let Some(nonce) = state.core.dpop().fresh_nonce(state.core.now())
        && let Ok(value) = HeaderValue::from_str(&nonce)
    {
        response.headers_mut().insert(DPOP_NONCE, value);
    }
    response
}

/// The response header carrying a server nonce (RFC 9449 §8.1).
const DPOP_NONCE: &str = "dpop-nonce";

async fn handle(
    state: &HttpState,
    certificate: Option<PeerCertificate>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<TokenResponse, OAuthError> {
    let (auth, grant) = parse_request(headers, body)?;
    let proof = dpop_proof(headers, &state.core.settings().issuer)?;
    state.core.token_with_proof(&auth.presented_with(certificate), grant, proof.as_ref()).await
}

/// RFC 9449 §4.3 step 1: at most one `DPoP` header, with the URI it must
/// name: the token endpoint as the metadata advertises it (RFC 9449 §4.3
/// step 9 compares with the URI the client addressed, which behind a proxy
/// is the issuer's, not this listener's).
pub fn dpop_proof(headers: &HeaderMap, issuer: &str) -> Result<Option<PresentedProof>, OAuthError> {
    let mut values = headers.get_all(DPOP).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err(OAuthError::invalid_dpop_proof("more than one DPoP header")),
        (Some(value), None) => {
            let proof = value
                .to_str()
                .map_err(|_| OAuthError::invalid_dpop_proof("malformed proof: not ASCII"))?;
            Ok(Some(PresentedProof {
                proof: proof.to_owned(),
                uri: format!("{issuer}{}", super::paths::TOKEN),
            }))
        }
    }
}

/// The request header carrying a DPoP proof (RFC 9449 §4.1).
const DPOP: &str = "dpop";

/// Everything the token endpoint reads from the wire: the client's
/// authentication and the grant. No storage, no time: the fuzz target
/// `token_endpoint` runs exactly this on arbitrary headers and bodies.
pub fn parse_request(headers: &HeaderMap, body: &[u8]) -> Result<(ClientAuth, Grant), OAuthError> {
    let pairs = form_pairs(headers, body)?;
    let params = unique_params(&pairs)?;
    let auth = client_auth(headers, &params)?;
    let grant = grant(&params)?;
    Ok((auth, grant))
}

/// The body of a client's POST to the token, introspection or revocation
/// endpoint (RFC 6749 §3.2, RFC 7662 §2.1, RFC 7009 §2.1): form-encoded only.
pub(super) fn form_pairs(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>, OAuthError> {
    let form_encoded = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !form_encoded {
        return Err(OAuthError::invalid_request("body must be application/x-www-form-urlencoded"));
    }
    Ok(parse_pairs(body))
}

/// RFC 6749 §2.3: exactly one authentication method per request.
pub(super) fn client_auth(
    headers: &HeaderMap,
    params: &std::collections::HashMap<&str, &str>,
) -> Result<ClientAuth, OAuthError> {
    let body_id = params.get("client_id").map(|s| (*s).to_owned());
    let body_secret = params.get("client_secret").map(|s| (*s).to_owned());
    // RFC 7521 §4.2: a client assertion, alone.
    if let Some(assertion_type) = params.get("client_assertion_type") {
        if *assertion_type != JWT_BEARER_ASSERTION {
            return Err(OAuthError::invalid_client("unsupported client_assertion_type"));
        }
        if headers.contains_key(header::AUTHORIZATION) || body_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not two",
            ));
        }
        let assertion = params
            .get("client_assertion")
            .ok_or_else(|| OAuthError::invalid_request("client_assertion is missing"))?;
        let client_id = match (body_id, assertion_subject(assertion)) {
            (Some(id), Some(sub)) if id != sub => {
                return Err(OAuthError::invalid_client("client_id differs from the assertion"));
            }
            (Some(id), _) | (None, Some(id)) => id,
            (None, None) => return Err(OAuthError::invalid_client("client assertion is invalid")),
        };
        return Ok(ClientAuth::PrivateKeyJwt { client_id, assertion: Secret::new(*assertion) });
    }
    let Some(authorization) = headers.get(header::AUTHORIZATION) else {
        return match (body_id, body_secret) {
            (Some(client_id), Some(secret)) => {
                Ok(ClientAuth::SecretPost { client_id, secret: Secret::new(secret) })
            }
            (Some(client_id), None) => Ok(ClientAuth::None { client_id }),
            (None, _) => Err(OAuthError::invalid_client("client authentication required")),
        };
    };
    let (client_id, secret) = basic_credentials(authorization)
        .ok_or_else(|| OAuthError::invalid_client("malformed HTTP Basic credentials"))?;
    if body_secret.is_some() {
        return Err(OAuthError::invalid_request("use one client authentication method, not two"));
    }
    if body_id.is_some_and(|id| id != client_id) {
        return Err(OAuthError::invalid_request("client_id differs from the authenticated client"));
    }
    Ok(ClientAuth::SecretBasic { client_id, secret: Secret::new(secret) })
}

/// RFC 6749 §2.3.1: Basic credentials whose id and secret are each
/// form-urlencoded before being joined with `:` and base64-encoded.
fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| -> String {
        form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let id = unescape(id);
    (!id.is_empty()).then(|| (id, unescape(secret)))
}

fn grant(params: &std::collections::HashMap<&str, &str>) -> Result<Grant, OAuthError> {
    let owned = |key: &str| params.get(key).map(|s| (*s).to_owned());
    let required = |key: &'static str| {
        owned(key).ok_or_else(|| OAuthError::invalid_request(format!("{key} is missing")))
    };
    // Codes, verifiers and tokens are credentials from here on.
    let secret = |key: &'static str| required(key).map(Secret::new);
    match params.get("grant_type").copied() {
        Some("authorization_code") => Ok(Grant::AuthorizationCode {
            code: secret("code")?,
            redirect_uri: owned("redirect_uri"),
            code_verifier: owned("code_verifier").map(Secret::new),
            resource: owned("resource"),
        }),
        Some("client_credentials") => {
            Ok(Grant::ClientCredentials { scope: owned("scope"), resource: owned("resource") })
        }
        Some("refresh_token") => Ok(Grant::RefreshToken {
            refresh_token: secret("refresh_token")?,
            scope: owned("scope"),
            resource: owned("resource"),
        }),
        Some(DEVICE_CODE) => Ok(Grant::DeviceCode { device_code: secret("device_code")? }),
        Some(TOKEN_EXCHANGE) => Ok(Grant::TokenExchange(ExchangeRequest {
            subject_token: secret("subject_token")?,
            subject_token_type: required("subject_token_type")?,
            audience: owned("audience"),
            resource: owned("resource"),
            scope: owned("scope"),
            requested_token_type: owned("requested_token_type"),
            actor_token: owned("actor_token").map(Secret::new),
            request_context: owned("request_context"),
            request_details: owned("request_details"),
        })),
        // RFC 9700 §2.4: the resource owner password grant is not offered.
        Some(_) => Err(OAuthError::UnsupportedGrantType("grant_type is not supported".into())),
        None => Err(OAuthError::invalid_request("grant_type is missing")),
    }
}

fn success(response: TokenResponse) -> Response {
    let mut body = serde_json::json!({
        "access_token": response.access_token.expose(),
        "token_type": response.token_type.as_str(),
        "expires_in": response.expires_in,
        "scope": response.scope.to_string(),
    });
    if let Some(refresh_token) = response.refresh_token {
        body["refresh_token"] = refresh_token.into_exposed().into();
    }
    if let Some(issued) = response.issued_token_type {
        body["issued_token_type"] = issued.into();
    }
    let mut http = Json(body).into_response();
    // RFC 6749 §5.1.
    http.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    http.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    http
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        // RFC 6749 §2.3.1: "a b" and "s:%" are encoded before joining.
        let raw = base64::engine::general_purpose::STANDARD.encode("a+b:s%3A%25");
        let value = HeaderValue::from_str(&format!("Basic {raw}")).unwrap();
        assert_eq!(basic_credentials(&value), Some(("a b".into(), "s:%".into())));
        assert_eq!(basic_credentials(&HeaderValue::from_static("Bearer x")), None);
        assert_eq!(basic_credentials(&HeaderValue::from_static("Basic !!!")), None);
    }
}
