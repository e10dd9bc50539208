//! The HTTP endpoints the OAuth RFCs define, as thin axum adapters over the
//! protocol core: the authorization endpoint with its login and consent pages,
//! the token endpoint, RFC 8414 metadata and the JWKS.

mod account;
mod authorize;
pub mod device;
mod error;
pub mod lifecycle;
mod metadata;
pub mod serve;
mod session;
pub mod token;

use std::collections::HashMap;
use std::sync::Arc;
use tollgate_telemetry::propagation::{Protocol, TraceLayer};

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRef, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use axum_extra::extract::cookie::Key;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use crate::domain::throttle::address_key;

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
    /// Whether the listener asks for TLS client certificates (a client CA is
    /// configured): then `tls_client_auth` works, and the metadata says so.
    pub client_certificates: bool,
}

impl FromRef<HttpState> for Key {
    fn from_ref(state: &HttpState) -> Key {
        state.cookie_key.clone()
    }
}

pub fn router(state: HttpState, limits: &serve::HttpLimits) -> Router {
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
        .layer(page_headers)
        // Per address, before any work: the pages are where people (and
        // guessers) type.
        .layer(axum::middleware::from_fn_with_state(state.clone(), throttle_pages));
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
        // Every body is read whole by the handlers: bound it, and the time a
        // request (body included) may take.
        .layer(DefaultBodyLimit::max(limits.body_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout))
        // Outermost: continue the caller's trace (W3C traceparent), one server
        // span per request, latency per route.
        .layer(TraceLayer::new("auth-server", Protocol::Http))
        .with_state(state)
}

/// The caller's address, as the listener saw it ([`serve`]). A request that did
/// not come through the listener (an in-process test) counts as `0.0.0.0`.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
        Ok(Self(peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip())))
    }
}

impl Peer {
    /// The throttles' key for this address.
    pub fn key(&self) -> String {
        address_key(self.0)
    }
}

/// Refuses page requests past the per-address allowance, `429` with
/// `Retry-After`, before any handler work.
async fn throttle_pages(
    State(state): State<HttpState>,
    peer: Peer,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match state.core.throttles().pages_ip.check(&peer.key()) {
        Ok(()) => next.run(request).await,
        Err(err) => {
            // Read the (small, bounded) form before answering: an unread body
            // makes the server close the connection after the answer, and a
            // client that already reused it sees a transport error instead of
            // the 429.
            let _ = axum::body::to_bytes(request.into_body(), serve::MAX_REFUSED_BODY_READ).await;
            // Answer late, holding one of the address's places meanwhile
            // (`serve`): an address that ignores Retry-After gets a few answers
            // a second, not tens of thousands, and costs no CPU while it waits.
            tokio::time::sleep(THROTTLED_PAGE_DELAY).await;
            authorize::error_page(&err)
        }
    }
}

/// How long a throttled page request waits for its 429.
pub const THROTTLED_PAGE_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// Parses `application/x-www-form-urlencoded` pairs, refusing a parameter sent
/// twice (RFC 6749 §3.1, §3.2).
pub(crate) fn unique_params(
    pairs: &[(String, String)],
) -> Result<HashMap<&str, &str>, tollgate_token::OAuthError> {
    let mut params = HashMap::new();
    for (key, value) in pairs {
        if params.insert(key.as_str(), value.as_str()).is_some() {
            return Err(crate::domain::repeated_parameter(key));
        }
    }
    Ok(params)
}

/// The query or body of a request, as name/value pairs (the authorization
/// request's query is read this way, fuzz target `authorize_query`).
pub fn parse_pairs(raw: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(raw).into_owned().collect()
}
