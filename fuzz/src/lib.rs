//! What the fuzz targets share: how a fuzz input becomes a request, the key the
//! verifier trusts, and the checks every refusal must pass.
//!
//! Inputs of the HTTP targets are text a person can read and write: the first
//! line is the `Content-Type`, the second the `Authorization` header (either
//! may be empty: no header), the rest the body. The committed seeds in
//! `seeds/` are written that way.

use http::{HeaderMap, HeaderValue, header};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use tollgate_token::{Jwk, JwkSet, KeySet, OAuthError};

pub const ISSUER: &str = "https://as.example";
pub const AUDIENCE: &str = "tollgate-resource";
/// The verifier's "now": the seed tokens are valid at this time.
pub const NOW: i64 = 1_800_000_000;
/// The Ed25519 seed of the one key the verifier trusts (the seed tokens in
/// `seeds/bearer_token` are signed with it), published as `kid` [`KID`].
pub const KEY_SEED: [u8; 32] = [7; 32];
pub const KID: &str = "fuzz-key";

/// The key set the verifier targets trust.
pub fn trusted_keys() -> KeySet {
    let pair = Ed25519KeyPair::from_seed_unchecked(&KEY_SEED).expect("a 32-byte seed");
    let jwk = Jwk::ed25519(KID, pair.public_key().as_ref());
    KeySet::from_jwks(&JwkSet { keys: vec![jwk] })
}

/// Headers and body from a fuzz input (see the module docs).
pub fn request(data: &[u8]) -> (HeaderMap, &[u8]) {
    let mut headers = HeaderMap::new();
    let mut rest = data;
    for name in [header::CONTENT_TYPE, header::AUTHORIZATION] {
        let (line, tail) = match rest.iter().position(|b| *b == b'\n') {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &[][..]),
        };
        if !line.is_empty()
            && let Ok(value) = HeaderValue::from_bytes(line)
        {
            headers.insert(name, value);
        }
        rest = tail;
    }
    (headers, rest)
}

/// RFC 6749 §5.2, §4.1.2.1: `error` and `error_description` use only
/// `%x20-21 / %x23-5B / %x5D-7E`. Every refusal the targets provoke is checked,
/// so a description that carries request text with a quote, a backslash or a
/// non-ASCII character is a crash.
pub fn assert_wire_safe(err: &OAuthError) {
    let allowed = |b: u8| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E);
    assert!(err.code().bytes().all(allowed), "error code {:?}", err.code());
    assert!(
        err.description().bytes().all(allowed),
        "error_description outside RFC 6749's character set: {:?}",
        err.description()
    );
}
