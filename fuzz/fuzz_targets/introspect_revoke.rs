//! `POST /introspect` (RFC 7662 §2.1) and `POST /revoke` (RFC 7009 §2.1): one
//! reader for both, authenticated like the token endpoint.
//!
//! Oracle: no panic; a read request names a non-empty token; every refusal is
//! wire-safe.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_auth_server::http::lifecycle::parse_request;
use tollgate_fuzz::{assert_wire_safe, request};

fuzz_target!(|data: &[u8]| {
    let (headers, body) = request(data);
    match parse_request(&headers, body) {
        Ok((_, token, _)) => assert!(!token.is_empty()),
        Err(err) => assert_wire_safe(&err),
    }
});
