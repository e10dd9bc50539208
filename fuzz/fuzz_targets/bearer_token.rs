//! Any bytes as a bearer token: the `authorization` value a protected service
//! reads (RFC 6750 §2.1), then the verifier (RFC 8725, RFC 9068 §4).
//!
//! Oracle: a token is accepted only with our issuer, our audience and an
//! unexpired `exp`; every refusal is a wire-safe `invalid_token`.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tollgate_fuzz::{AUDIENCE, ISSUER, NOW, assert_wire_safe, trusted_keys};
use tollgate_service_kit::auth::bearer_token;
use tollgate_token::{KeySet, OAuthError, Verifier, VerifierConfig};

static KEYS: LazyLock<KeySet> = LazyLock::new(trusted_keys);
static VERIFIER: LazyLock<Verifier> =
    LazyLock::new(|| Verifier::new(VerifierConfig::new(ISSUER, AUDIENCE)));

fuzz_target!(|data: &[u8]| {
    // As an `authorization: Bearer …` value, or else the bytes themselves.
    let token = match bearer_token(Some(data)) {
        Some(token) => token,
        None => match std::str::from_utf8(data) {
            Ok(token) => token,
            Err(_) => return,
        },
    };
    match VERIFIER.verify(&KEYS, token, NOW) {
        Ok(claims) => {
            let leeway = VERIFIER.config().leeway_secs;
            assert_eq!(claims.iss, ISSUER);
            assert!(claims.aud.contains(AUDIENCE));
            assert!(claims.exp + leeway > NOW, "an expired token was accepted");
            assert!(claims.nbf.is_none_or(|nbf| nbf - leeway <= NOW));
        }
        Err(err) => {
            let err = OAuthError::from(err);
            assert_eq!(err.code(), "invalid_token");
            assert_wire_safe(&err);
        }
    }
});
