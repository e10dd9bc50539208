//! Any bytes as a bearer token: the `authorization` value a protected service
//! reads (RFC 6750 §2.1), then the verifier (RFC 8725, RFC 9068 §4).
//!
//! Oracle: a token is accepted only if its header is ours (`EdDSA`, our `kid`,
//! `at+jwt`), its signature checks out with our key by an independent check
//! (ring, not the verifier's library), and it carries our issuer, our
//! audience, an unexpired `exp` and a passed `nbf`; every refusal is a
//! wire-safe `invalid_token`.
#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use tollgate_fuzz::{AUDIENCE, ISSUER, KEY_SEED, KID, NOW, assert_wire_safe, trusted_keys};
use tollgate_service_kit::auth::bearer_token;
use tollgate_token::{KeySet, OAuthError, Verifier, VerifierConfig};

static KEYS: LazyLock<KeySet> = LazyLock::new(trusted_keys);
static VERIFIER: LazyLock<Verifier> =
    LazyLock::new(|| Verifier::new(VerifierConfig::new(ISSUER, AUDIENCE)));

/// The independent check of an accepted token: header and Ed25519 signature.
fn assert_signed_by_us(token: &str) {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (signed, signature) = token.rsplit_once('.').expect("three segments");
    let header = signed.split('.').next().expect("a header");
    let header: serde_json::Value =
        serde_json::from_slice(&b64.decode(header).expect("base64url header")).expect("JSON");
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], KID);
    let typ = header["typ"].as_str().expect("typ").to_ascii_lowercase();
    assert!(typ == "at+jwt" || typ == "application/at+jwt", "typ {typ}");
    let pair = Ed25519KeyPair::from_seed_unchecked(&KEY_SEED).expect("seed");
    let public = UnparsedPublicKey::new(&ED25519, pair.public_key().as_ref().to_vec());
    let signature = b64.decode(signature).expect("base64url signature");
    public.verify(signed.as_bytes(), &signature).expect("accepted with a bad signature");
}

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
            assert_signed_by_us(token);
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
