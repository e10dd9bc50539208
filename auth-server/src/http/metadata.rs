//! RFC 8414 metadata and the JWKS (RFC 7517).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::{HttpState, paths};

/// `GET /.well-known/oauth-authorization-server`. Lists exactly what is
/// implemented; `issuer` is the configured issuer byte for byte (RFC 8414 §3.3).
pub async fn metadata(State(state): State<HttpState>) -> Response {
    let issuer = &state.core.settings().issuer;
    // RFC 8705 §2.1: with client certificates, clients may authenticate with
    // them (tls_client_auth) and get tokens bound to them (§3.3).
    let mtls = state.client_certificates;
    let methods = |with_none: bool| {
        let mut methods = vec!["client_secret_basic", "client_secret_post", "private_key_jwt"];
        methods.extend(mtls.then_some("tls_client_auth"));
        methods.extend(with_none.then_some("none"));
        methods
    };
    let mut body = serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}{}", paths::AUTHORIZE),
        "token_endpoint": format!("{issuer}{}", paths::TOKEN),
        "jwks_uri": format!("{issuer}{}", paths::JWKS),
        "introspection_endpoint": format!("{issuer}{}", paths::INTROSPECT),
        "introspection_endpoint_auth_methods_supported": methods(false),
        "revocation_endpoint": format!("{issuer}{}", paths::REVOKE),
        "revocation_endpoint_auth_methods_supported": methods(true),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": [
            "authorization_code",
            "client_credentials",
            "refresh_token",
            crate::domain::model::TOKEN_EXCHANGE,
            crate::domain::model::DEVICE_CODE,
        ],
        "device_authorization_endpoint": format!("{issuer}{}", paths::DEVICE_AUTHORIZATION),
        "token_endpoint_auth_methods_supported": methods(true),
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA", "ES256"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        // RFC 9449 §5.1.
        "dpop_signing_alg_values_supported": state.core.dpop().algorithms().collect::<Vec<_>>(),
    });
    if mtls {
        // RFC 8705 §3.3. No `mtls_endpoint_aliases` (§5): the endpoints take
        // client certificates where they are, asking without requiring.
        body["tls_client_certificate_bound_access_tokens"] = true.into();
    }
    let mut response = Json(body).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    response
}

/// `GET /jwks.json`: public keys only.
pub async fn jwks(State(state): State<HttpState>) -> Response {
    let mut response = Json(state.core.signer().jwks(state.core.now())).into_response();
    // Short, so a newly published key reaches caches quickly.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
    response
}
