//! The bootstrap file (docs/bootstrap.md): TOML, then every client spec checked
//! as the server checks it before writing anything.
//!
//! Oracle: no panic; a client that passes the checks is well formed: a
//! non-empty id without `:` (RFC 6749 §2.3.1), and public exactly when the
//! file says so (a confidential client without a secret or keys is refused).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_auth_server::bootstrap::{BootstrapFile, client_from_spec};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(file) = BootstrapFile::parse(text) else { return };
    for spec in &file.clients {
        if let Ok(client) = client_from_spec(spec, "tollgate-resource") {
            assert!(!client.client_id.is_empty() && !client.client_id.contains(':'));
            assert_eq!(client.is_public(), spec.public);
        }
    }
});
