//! The HTTP endpoints the OAuth RFCs define, as thin axum adapters over the
//! protocol core: the authorization endpoint with its login and consent pages,
//! the token endpoint, RFC 8414 metadata and the JWKS.

mod account;
mod authorize;
mod device;
mod error;
mod lifecycle;
mod metadata;
mod session;
mod token;

use std::collections::HashMap;
use std::sync::Arc;
use tollgate_telemetry::propagation::{Protocol, TraceLayer};

use axum::Router;
use axum::extract::FromRef;
use axum::http::{HeaderName, HeaderValue, header};
use axum::routing::{get, post};
use axum_extra::extract::cookie::Key;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::domain::OAuthCore;
use crate::storage::SqlStore;
pub use error::HttpError;
pub use lifecycle::introspection_json;

/// Paths of the endpoints, also advertised in the metadata document.
pub mod paths {
    pub const AUTHORIZE: &str = "/authorize";
    pub const LOGIN: &str = "/authorize/login";
    pub const CONSENT: &str = "/authorize/consent";
    pub const TOKEN: &str = "/token";
    pub const INTROSPECT: &str = "/introspect";
    pub const REVOKE: &str = "/revoke";
    pub const DEVICE_AUTHORIZATION: &str = "/device_authorization";
    pub const DEVICE: &str = "/device";
    pub const ACCOUNT: &str = "/account";
    pub const ACCOUNT_LOGIN: &str = "/account/login";
    pub const ACCOUNT_WITHDRAW: &str = "/account/withdraw";
    pub const JWKS: &str = "/jwks.json";
    pub const METADATA: &str = "/.well-known/oauth-authorization-server";
}

/// What every handler shares.
#[derive(Clone)]
pub struct HttpState {
    pub core: Arc<OAuthCore<SqlStore>>,
    pub cookie_key: Key,
}

impl FromRef<HttpState> for Key {
    fn from_ref(state: &HttpState) -> Key {
        state.cookie_key.clone()
    }
}

pub fn router(state: HttpState) -> Router {
    // The resource owner's pages: never framed (RFC 6749 §10.13), never cached,
    // never leaking the authorization request through Referer.
    let page_headers = tower::ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    let pages = Router::new()
        .route(paths::AUTHORIZE, get(authorize::show))
        .route(paths::LOGIN, post(authorize::login))
        .route(paths::CONSENT, post(authorize::consent))
        .route(paths::DEVICE, get(device::show).post(device::decide))
        .route(paths::ACCOUNT, get(account::show))
        .route(paths::ACCOUNT_LOGIN, post(account::login))
        .route(paths::ACCOUNT_WITHDRAW, post(account::withdraw))
        .layer(page_headers);
    Router::new()
        .merge(pages)
        .route(paths::TOKEN, post(token::token))
        .route(paths::INTROSPECT, post(lifecycle::introspect))
        .route(paths::REVOKE, post(lifecycle::revoke))
        .route(paths::DEVICE_AUTHORIZATION, post(device::authorize))
        .route(paths::METADATA, get(metadata::metadata))
        .route(paths::JWKS, get(metadata::jwks))
        .layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ))
        // Outermost: continue the caller's trace (W3C traceparent), one server
        // span per request, latency per route.
        .layer(TraceLayer::new("auth-server", Protocol::Http))
        .with_state(state)
}

/// Parses `application/x-www-form-urlencoded` pairs, refusing a parameter sent
/// twice (RFC 6749 §3.1, §3.2).
pub(crate) fn unique_params(pairs: &[(String, String)]) -> Result<HashMap<&str, &str>, String> {
    let mut params = HashMap::new();
    for (key, value) in pairs {
        if params.insert(key.as_str(), value.as_str()).is_some() {
            return Err(format!("{key} was sent more than once"));
        }
    }
    Ok(params)
}

pub(crate) fn parse_pairs(raw: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(raw).into_owned().collect()
}
