//! The OAuth error codes, one enum for every service.
//!
//! Named after the codes the RFCs define, so a reader can look each one up. It is
//! mapped exactly once to HTTP (in the authorization server's HTTP adapter) and
//! exactly once to `tonic::Status` (in `tollgate-service-kit`).

use std::borrow::Cow;

/// A protocol-level refusal. The description is for the client developer: it is
/// sent on the wire, so it never carries internal detail (that is logged where the
/// error is raised).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// RFC 6749 §5.2: malformed request: a missing, repeated or unsupported parameter.
    #[error("invalid_request: {0}")]
    InvalidRequest(Cow<'static, str>),
    /// RFC 6749 §5.2: client authentication failed (unknown client, wrong secret,
    /// no authentication, or an unsupported method).
    #[error("invalid_client: {0}")]
    InvalidClient(Cow<'static, str>),
    /// RFC 6749 §5.2: the grant (code, refresh token) is invalid, expired, revoked,
    /// used, or was issued to another client or redirect URI; or the PKCE verifier
    /// does not match (RFC 7636 §4.6).
    #[error("invalid_grant: {0}")]
    InvalidGrant(Cow<'static, str>),
    /// RFC 6749 §5.2: this client may not use this grant type.
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(Cow<'static, str>),
    /// RFC 6749 §5.2: the grant type is not supported by this server.
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(Cow<'static, str>),
    /// RFC 6749 §4.1.2.1: the response type is not supported (only `code` is).
    #[error("unsupported_response_type: {0}")]
    UnsupportedResponseType(Cow<'static, str>),
    /// RFC 6749 §5.2: the scope is unknown, malformed, or beyond what was granted.
    #[error("invalid_scope: {0}")]
    InvalidScope(Cow<'static, str>),
    /// RFC 8707 §2 (used by RFC 8693 §2.2.2): the requested resource or audience
    /// is unknown, or not one this client may obtain a token for.
    #[error("invalid_target: {0}")]
    InvalidTarget(Cow<'static, str>),
    /// RFC 8628 §3.5: the user has not yet acted on the device authorization.
    #[error("authorization_pending: {0}")]
    AuthorizationPending(Cow<'static, str>),
    /// RFC 8628 §3.5: polling too fast; the interval grows by five seconds.
    #[error("slow_down: {0}")]
    SlowDown(Cow<'static, str>),
    /// RFC 8628 §3.5: the device code has expired; start again.
    #[error("expired_token: {0}")]
    ExpiredToken(Cow<'static, str>),
    /// RFC 6749 §4.1.2.1: the resource owner or the server denied the request.
    #[error("access_denied: {0}")]
    AccessDenied(Cow<'static, str>),
    /// RFC 6750 §3.1: the access token is missing, malformed, expired, revoked or
    /// not meant for this resource.
    #[error("invalid_token: {0}")]
    InvalidToken(Cow<'static, str>),
    /// RFC 6750 §3.1: the access token is valid but lacks the scope the request needs.
    #[error("insufficient_scope: {0}")]
    InsufficientScope(Cow<'static, str>),
    /// RFC 9449 §7.1, §12.2: the DPoP proof is missing, malformed, or not
    /// for this request, key or token.
    #[error("invalid_dpop_proof: {0}")]
    InvalidDpopProof(Cow<'static, str>),
    /// RFC 9449 §8, §9: the proof must carry a nonce of the server's; the
    /// answer carries a fresh one (`DPoP-Nonce`).
    #[error("use_dpop_nonce: {0}")]
    UseDpopNonce(Cow<'static, str>),
    /// RFC 6749 §4.1.2.1: the server cannot answer now (a dependency is down).
    #[error("temporarily_unavailable: {0}")]
    TemporarilyUnavailable(Cow<'static, str>),
    /// A throttle refused the request: the caller sent too many, too fast.
    /// RFC 6749 defines no code for this, so it is sent as
    /// `temporarily_unavailable` (the RFC 6749 §4.1.2.1 meaning: try later), with
    /// HTTP 429 and `Retry-After` (RFC 6585 §4) or gRPC `RESOURCE_EXHAUSTED`.
    #[error("temporarily_unavailable: too many requests")]
    TooManyRequests {
        /// Whole seconds until a retry can succeed (at least 1).
        retry_after_secs: u64,
    },
    /// RFC 6749 §4.1.2.1: an unexpected condition. The cause is logged, never sent.
    #[error("server_error")]
    ServerError,
}

impl OAuthError {
    /// The RFC error code, as sent in the `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient(_) => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::UnsupportedResponseType(_) => "unsupported_response_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::InvalidTarget(_) => "invalid_target",
            Self::AuthorizationPending(_) => "authorization_pending",
            Self::SlowDown(_) => "slow_down",
            Self::ExpiredToken(_) => "expired_token",
            Self::AccessDenied(_) => "access_denied",
            Self::InvalidToken(_) => "invalid_token",
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::InvalidDpopProof(_) => "invalid_dpop_proof",
            Self::UseDpopNonce(_) => "use_dpop_nonce",
            Self::TemporarilyUnavailable(_) | Self::TooManyRequests { .. } => {
                "temporarily_unavailable"
            }
            Self::ServerError => "server_error",
        }
    }

    /// The human-readable `error_description`, safe to send.
    pub fn description(&self) -> &str {
        match self {
            Self::InvalidRequest(d)
            | Self::InvalidClient(d)
            | Self::InvalidGrant(d)
            | Self::UnauthorizedClient(d)
            | Self::UnsupportedGrantType(d)
            | Self::UnsupportedResponseType(d)
            | Self::InvalidScope(d)
            | Self::InvalidTarget(d)
            | Self::AuthorizationPending(d)
            | Self::SlowDown(d)
            | Self::ExpiredToken(d)
            | Self::AccessDenied(d)
            | Self::InvalidToken(d)
            | Self::InsufficientScope(d)
            | Self::InvalidDpopProof(d)
            | Self::UseDpopNonce(d)
            | Self::TemporarilyUnavailable(d) => d,
            Self::TooManyRequests { .. } => "too many requests; try again later",
            Self::ServerError => "the server could not complete the request",
        }
    }

    /// A throttle's refusal; `retry_after` is rounded up to whole seconds.
    pub fn too_many_requests(retry_after: std::time::Duration) -> Self {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        Self::TooManyRequests { retry_after_secs: secs.max(1) }
    }

    /// How long the caller should wait before retrying, where that is known.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::TooManyRequests { retry_after_secs } => Some(*retry_after_secs),
            // A dependency is away: a short wait is the best guess.
            Self::TemporarilyUnavailable(_) => Some(1),
            _ => None,
        }
    }

    pub fn invalid_request(d: impl Into<Cow<'static, str>>) -> Self {
        Self::InvalidRequest(d.into())
    }
    pub fn invalid_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::InvalidClient(d.into())
    }
    pub fn invalid_grant(d: impl Into<Cow<'static, str>>) -> Self {
        Self::InvalidGrant(d.into())
    }
    pub fn unauthorized_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::UnauthorizedClient(d.into())
    }
    pub fn invalid_scope(d: impl Into<Cow<'static, str>>) -> Self {
        Self::InvalidScope(d.into())
    }
    pub fn invalid_target(d: impl Into<Cow<'static, str>>) -> Self {
        Self::InvalidTarget(d.into())
    }
    pub fn invalid_token(d: impl Into<Cow<'static, str>>) -> Self {
        Self::InvalidToken(d.into())
    }
    pub fn insufficient_scope(d: impl Into<Cow<'static, str>>) -> Self {
        Self::InsufficientScope(d.into())
    }
    pub fn invalid_dpop_proof(d: impl Into<Cow<'static, str>>) -> Self {
        Self::InvalidDpopProof(d.into())
    }
}

impl From<crate::dpop::DpopError> for OAuthError {
    /// RFC 9449 §12.2's codes; a replay cache full of live proofs is "try
    /// later", not the client's fault.
    fn from(err: crate::dpop::DpopError) -> Self {
        use crate::dpop::DpopError;
        match err {
            DpopError::UseNonce => Self::UseDpopNonce(err.to_string().into()),
            DpopError::ReplayCacheFull => Self::TemporarilyUnavailable(err.to_string().into()),
            other => Self::InvalidDpopProof(other.to_string().into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_error_never_carries_detail() {
        assert_eq!(OAuthError::ServerError.code(), "server_error");
        assert!(!OAuthError::ServerError.description().contains("sql"));
    }

    #[test]
    fn codes_are_the_rfc_strings() {
        assert_eq!(OAuthError::invalid_grant("x").code(), "invalid_grant");
        assert_eq!(OAuthError::insufficient_scope("x").code(), "insufficient_scope");
        assert_eq!(OAuthError::invalid_grant("used").description(), "used");
    }
}
