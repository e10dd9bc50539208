//! The JWS compact serialization (RFC 7515 §7.1) as both verifiers here read
//! it: access tokens ([`crate::Verifier`]) and DPoP proofs ([`crate::dpop`]).
//! Each decides from the header which key to use; this module only splits,
//! decodes and checks a signature with the key it is given.

use base64::Engine as _;
use jsonwebtoken::{DecodingKey, Validation};
use serde::de::DeserializeOwned;

use crate::jwk::KeyAlgorithm;

/// Why a JWS could not be read or verified. The labels are the callers'
/// `Malformed` reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JwsError {
    Malformed(&'static str),
    BadSignature,
}

/// The protected header of a compact JWS of exactly three segments. Nothing
/// in it is trusted yet: the caller picks the key from it, then [`verify`]s.
pub(crate) fn header(jws: &str) -> Result<serde_json::Map<String, serde_json::Value>, JwsError> {
    let mut parts = jws.split('.');
    let (Some(header_b64), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed("not three segments"));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| JwsError::Malformed("header encoding"))?;
    serde_json::from_slice(&bytes).map_err(|_| JwsError::Malformed("header json"))
}

/// The payload of `jws`, once its signature verifies with `key` under `alg`.
/// Only the signature and the payload's shape are checked: the time and
/// audience rules are the caller's, against its own clock.
pub(crate) fn verify<T: DeserializeOwned>(
    jws: &str,
    alg: KeyAlgorithm,
    key: &DecodingKey,
) -> Result<T, JwsError> {
    let mut validation = Validation::new(alg.to_jsonwebtoken());
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<T>(jws, key, &validation).map(|data| data.claims).map_err(
        |err| match err.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => JwsError::BadSignature,
            jsonwebtoken::errors::ErrorKind::Json(_) => JwsError::Malformed("claims"),
            _ => JwsError::Malformed("encoding"),
        },
    )
}
