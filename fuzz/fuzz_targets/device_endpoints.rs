//! RFC 8628: `POST /device_authorization` (client authentication and `scope`)
//! and the verification page's `user_code`, as typed by a person (or anyone).
//!
//! Oracle: no panic; refusals are wire-safe; a typed code normalises to
//! upper-case ASCII letters and digits only (what the store is asked for).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_auth_server::domain::grants::device::{display_user_code, normalize_user_code};
use tollgate_auth_server::http::device::parse_request;
use tollgate_auth_server::http::parse_pairs;
use tollgate_fuzz::{assert_wire_safe, request};

fuzz_target!(|data: &[u8]| {
    let (headers, body) = request(data);
    if let Err(err) = parse_request(&headers, body) {
        assert_wire_safe(&err);
    }
    // The page's query or form: `user_code=…`.
    for (name, typed) in parse_pairs(body) {
        if name == "user_code" {
            let code = normalize_user_code(&typed);
            assert!(code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
            let shown = display_user_code(&code);
            assert_eq!(shown.len(), code.len() + 1);
        }
    }
});
