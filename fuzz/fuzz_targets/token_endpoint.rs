//! `POST /token` (RFC 6749 §3.2, §2.3): the `Content-Type`, the HTTP Basic
//! credentials, the form, the client assertion's unverified `sub` and the
//! grant's parameters, exactly as the endpoint reads them.
//!
//! Oracle: no panic; every refusal is wire-safe (RFC 6749 §5.2).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_auth_server::http::token::parse_request;
use tollgate_fuzz::{assert_wire_safe, request};

fuzz_target!(|data: &[u8]| {
    let (headers, body) = request(data);
    if let Err(err) = parse_request(&headers, body) {
        assert_wire_safe(&err);
    }
});
