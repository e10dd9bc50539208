//! What the client side reads from an authorization server it was pointed at:
//! the RFC 8414 metadata, the JWKS (as every protected service's key cache
//! reads it), token responses (RFC 6749 §5.1, parsed as the `oauth2` crate
//! does, then kept), device authorization responses (RFC 8628 §3.2), and an
//! access token decoded for display. The first byte chooses which.
//!
//! Oracle: no panic (overflow checks on); accepted metadata names the issuer
//! it was fetched for and supports S256.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use oauth2::StandardDeviceAuthorizationResponse;
use oauth2::basic::BasicTokenResponse;
use tollgate_client_app::claims::decode_unverified;
use tollgate_client_app::discovery::parse_metadata;
use tollgate_client_app::oauth::{ClientAuthMethod, ClientIdentity, OAuthClient};
use tollgate_client_app::tokens::Obtained;
use tollgate_fuzz::{ISSUER, NOW};
use tollgate_service_kit::jwks::parse_jwks;
use tollgate_token::ManualClock;

static CLIENT: LazyLock<OAuthClient> = LazyLock::new(|| {
    let metadata = parse_metadata(
        ISSUER,
        br#"{"issuer": "https://as.example", "authorization_endpoint": "https://as.example/authorize",
             "token_endpoint": "https://as.example/token", "jwks_uri": "https://as.example/jwks.json",
             "code_challenge_methods_supported": ["S256"]}"#,
    )
    .expect("metadata");
    let identity = ClientIdentity {
        client_id: "fuzz".into(),
        client_secret: None,
        auth_method: ClientAuthMethod::ClientSecretBasic,
    };
    OAuthClient::new(metadata, identity, Arc::new(ManualClock::new(NOW))).expect("client")
});

fuzz_target!(|data: &[u8]| {
    let Some((which, body)) = data.split_first() else { return };
    match which % 5 {
        0 => {
            if let Ok(metadata) = parse_metadata(ISSUER, body) {
                assert_eq!(metadata.issuer, ISSUER);
                assert!(metadata.code_challenge_methods_supported.iter().any(|m| m == "S256"));
            }
        }
        1 => {
            if let Ok(keys) = parse_jwks(body) {
                assert!(!keys.is_empty());
            }
        }
        2 => {
            if let Ok(response) = serde_json::from_slice::<BasicTokenResponse>(body) {
                let kept = CLIENT.token_set(&response, Obtained::AuthorizationCode, Some("a"));
                assert!(kept.expires_at >= NOW);
            }
        }
        3 => {
            let _ = serde_json::from_slice::<StandardDeviceAuthorizationResponse>(body);
        }
        _ => {
            if let Ok(token) = std::str::from_utf8(body) {
                let _ = decode_unverified(token);
            }
        }
    }
});
