//! OAuth errors as HTTP responses: the one place this mapping is written
//! (RFC 6749 §5.2 for the token endpoint, RFC 6750 §3 for bearer errors).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tollgate_token::OAuthError;

/// An [`OAuthError`] on its way out over HTTP.
#[derive(Debug)]
pub struct HttpError(pub OAuthError);

impl From<OAuthError> for HttpError {
    fn from(err: OAuthError) -> Self {
        Self(err)
    }
}

pub fn status_of(err: &OAuthError) -> StatusCode {
    match err {
        // RFC 6749 §5.2: 401 for failed client authentication.
        OAuthError::InvalidClient(_) | OAuthError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
        OAuthError::InsufficientScope(_) => StatusCode::FORBIDDEN,
        // RFC 6749 §5.2 (and RFC 8628 §3.5's access_denied): every other error
        // of these JSON endpoints is 400.
        OAuthError::TemporarilyUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        // RFC 6585 §4.
        OAuthError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        OAuthError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let err = self.0;
        let body = serde_json::json!({
            "error": err.code(),
            "error_description": err.description(),
        });
        let mut response = (status_of(&err), Json(body)).into_response();
        let headers = response.headers_mut();
        // RFC 6749 §5.1/§5.2: token responses must not be cached.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if matches!(err, OAuthError::InvalidClient(_)) {
            // RFC 6749 §5.2: a 401 names the scheme the client may authenticate with.
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tollgate\", charset=\"UTF-8\""),
            );
        }
        if let Some(secs) = err.retry_after_secs() {
            // RFC 9110 §10.2.3: tell clients when retrying makes sense, so they
            // back off instead of hammering a server that is busy or whose
            // database is away.
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
