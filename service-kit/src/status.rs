//! OAuth errors as gRPC statuses: the one place this mapping is written.
//!
//! The gRPC code says what kind of failure it is; the `oauth-error` metadata entry
//! carries the exact RFC error code so a client can act on it, and token failures
//! also carry `www-authenticate` as RFC 6750 §3 does over HTTP.

use tollgate_token::OAuthError;
use tonic::{Code, Status};

/// A protected service's own storage failed: the cause goes to the log, not to
/// the caller, who is told to try again.
pub fn storage_unavailable(err: impl std::fmt::Display) -> Status {
    tracing::error!(error = %err, "storage failure");
    Status::unavailable("storage is unavailable, try again")
}

/// The metadata key holding the RFC error code of a refused call.
pub const OAUTH_ERROR_METADATA: &str = "oauth-error";
/// The metadata key telling a throttled caller how many seconds to wait.
pub const RETRY_AFTER_METADATA: &str = "retry-after";

/// How a refused call presented its access token: its challenge uses the
/// same scheme (RFC 9449 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenScheme {
    Bearer,
    Dpop,
}

/// The JWS algorithms a DPoP proof may use here, as the `algs` of a DPoP
/// challenge (RFC 9449 §7.1).
pub const DPOP_ALGS: &str = "EdDSA ES256";

/// Maps an OAuth error to the gRPC status that means the same thing.
pub fn to_status(err: &OAuthError) -> Status {
    to_status_for(err, TokenScheme::Bearer)
}

/// [`to_status`] for a call that presented its token with `scheme`: a
/// token error's challenge is in that scheme; a DPoP proof's error is always
/// a DPoP challenge.
pub fn to_status_for(err: &OAuthError, scheme: TokenScheme) -> Status {
    let code = match err {
        // RFC 6750 §3.1 → gRPC: no/bad token is "who are you?", not "no".
        OAuthError::InvalidToken(_)
        | OAuthError::InvalidClient(_)
        | OAuthError::InvalidDpopProof(_)
        | OAuthError::UseDpopNonce(_) => Code::Unauthenticated,
        OAuthError::InsufficientScope(_)
        | OAuthError::UnauthorizedClient(_)
        | OAuthError::AccessDenied(_) => Code::PermissionDenied,
        OAuthError::InvalidRequest(_)
        | OAuthError::InvalidGrant(_)
        | OAuthError::InvalidScope(_)
        | OAuthError::InvalidTarget(_)
        | OAuthError::UnsupportedGrantType(_)
        | OAuthError::UnsupportedResponseType(_) => Code::InvalidArgument,
        OAuthError::TemporarilyUnavailable(_) => Code::Unavailable,
        // RFC 8628 §3.5 polling answers: not yet, and not so often.
        OAuthError::AuthorizationPending(_) => Code::FailedPrecondition,
        OAuthError::SlowDown(_) | OAuthError::TooManyRequests { .. } => Code::ResourceExhausted,
        OAuthError::ExpiredToken(_) => Code::InvalidArgument,
        OAuthError::ServerError => Code::Internal,
    };
    let mut status = Status::new(code, err.description().to_owned());
    let metadata = status.metadata_mut();
    if let Ok(value) = err.code().parse() {
        metadata.insert(OAUTH_ERROR_METADATA, value);
    }
    if let OAuthError::TooManyRequests { retry_after_secs } = err {
        // The gRPC form of HTTP's Retry-After (RFC 9110 §10.2.3), in seconds.
        metadata.insert(RETRY_AFTER_METADATA, (*retry_after_secs).into());
    }
    let scheme = match (err, scheme) {
        (OAuthError::InvalidToken(_) | OAuthError::InsufficientScope(_), TokenScheme::Bearer) => {
            Some(TokenScheme::Bearer)
        }
        // RFC 9449 §7.1: a DPoP proof's failure, or any token failure of a
        // call made with the DPoP scheme, is a DPoP challenge.
        (OAuthError::InvalidToken(_) | OAuthError::InsufficientScope(_), TokenScheme::Dpop)
        | (OAuthError::InvalidDpopProof(_) | OAuthError::UseDpopNonce(_), _) => {
            Some(TokenScheme::Dpop)
        }
        _ => None,
    };
    if let Some(scheme) = scheme {
        // RFC 6750 §3: quoted-string values; our descriptions hold no quotes.
        let (code, description) = (err.code(), err.description());
        let challenge = match scheme {
            TokenScheme::Bearer => {
                format!("Bearer error=\"{code}\", error_description=\"{description}\"")
            }
            TokenScheme::Dpop => format!(
                "DPoP error=\"{code}\", error_description=\"{description}\", algs=\"{DPOP_ALGS}\""
            ),
        };
        if let Ok(value) = challenge.parse() {
            metadata.insert("www-authenticate", value);
        }
    }
    status
}

/// The RFC error code a refused call carried, if any.
pub fn oauth_error_code(status: &Status) -> Option<&str> {
    status.metadata().get(OAUTH_ERROR_METADATA).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_errors_are_unauthenticated_and_scope_errors_permission_denied() {
        let status = to_status(&OAuthError::invalid_token("token has expired"));
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(oauth_error_code(&status), Some("invalid_token"));
        assert_eq!(
            status.metadata().get("www-authenticate").unwrap().to_str().unwrap(),
            "Bearer error=\"invalid_token\", error_description=\"token has expired\""
        );
        let status = to_status(&OAuthError::insufficient_scope("needs notes:write"));
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(oauth_error_code(&status), Some("insufficient_scope"));
    }

    #[test]
    fn a_throttled_call_is_resource_exhausted_and_says_when_to_retry() {
        let status =
            to_status(&OAuthError::too_many_requests(std::time::Duration::from_millis(1500)));
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(oauth_error_code(&status), Some("temporarily_unavailable"));
        assert_eq!(status.metadata().get(RETRY_AFTER_METADATA).unwrap().to_str().unwrap(), "2");
    }

    #[test]
    fn server_errors_say_nothing_internal() {
        let status = to_status(&OAuthError::ServerError);
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "the server could not complete the request");
    }
}
