//! Showing what an access token says, for people.
//!
//! To a client an access token is opaque (RFC 6749 §1.4; RFC 9068 §6: the client
//! must not rely on its contents): only the resource server verifies and acts on
//! it. This decodes the payload *without* verifying it, to show a newcomer what
//! the authorization server put in it, and is used for nothing else.

use base64::Engine as _;

use crate::ClientError;

/// The JOSE header and the claims of a JWT, decoded but not verified.
pub fn decode_unverified(
    token: &str,
) -> Result<(serde_json::Value, serde_json::Value), ClientError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ClientError::Malformed("not a JWT (three dot-separated parts)".into()));
    };
    let decode = |part: &str| -> Result<serde_json::Value, ClientError> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|e| ClientError::Malformed(format!("not base64url: {e}")))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Malformed(format!("not JSON: {e}")))
    };
    Ok((decode(header)?, decode(payload)?))
}
