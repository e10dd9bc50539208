//! The authorization request's query (RFC 6749 §4.1.1, RFC 7636 §4.3, RFC 8707,
//! RFC 8252 §7.3), validated by the protocol core against a real store holding
//! a public native client (loopback redirect, any port) and a confidential web
//! client (a loopback redirect with a fixed port, and an https one).
//!
//! Oracle: no panic; nothing is ever redirected to a URI that is not
//! registered for the client (RFC 9700 §4.11: no open redirector); an
//! accepted request asks only for the client's scopes with an S256
//! challenge; every refusal sent back on the redirect is wire-safe.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use tollgate_auth_server::domain::authorize::redirect_with;
use tollgate_auth_server::domain::hashing::HashLimits;
use tollgate_auth_server::domain::keys::{KeyRing, RotationPolicy};
use tollgate_auth_server::domain::model::{Client, GrantType};
use tollgate_auth_server::domain::throttle::ThrottleSettings;
use tollgate_auth_server::domain::{AuthorizeError, OAuthCore, OAuthSettings, pkce};
use tollgate_auth_server::http::parse_pairs;
use tollgate_auth_server::storage::{ClientStore as _, SqlStore};
use tollgate_fuzz::{ISSUER, NOW, assert_wire_safe};
use tollgate_token::{KeyAlgorithm, ManualClock, Scope};

struct Fixture {
    runtime: tokio::runtime::Runtime,
    core: OAuthCore<SqlStore>,
    _dir: tempfile::TempDir,
}

fn client(id: &str, public: bool, redirect_uris: &[&str]) -> Client {
    Client {
        client_id: id.into(),
        name: id.into(),
        secret_hash: (!public).then(|| tollgate_auth_server::domain::secrets::hash_secret("s")),
        redirect_uris: redirect_uris.iter().map(|u| (*u).to_owned()).collect(),
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        scope: Scope::parse("notes:read notes:write profile:read").expect("scope"),
        audience: "tollgate-resource".into(),
        exchange_audiences: vec![],
        jwks: None,
        tls_client_auth_san_dns: None,
        resources: vec!["https://api.example/notes".into()],
        dpop_bound_access_tokens: false,
    }
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let dir = tempfile::tempdir().expect("temp dir");
    let core = runtime.block_on(async {
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("auth.db").display());
        let store = SqlStore::connect(&url).await.expect("store");
        for c in [
            client("cli", true, &["http://127.0.0.1/callback"]),
            client("web", false, &["http://127.0.0.1:8080/cb", "https://web.example/cb?tenant=a"]),
        ] {
            store.upsert_client(&c, NOW).await.expect("client");
        }
        let policy =
            RotationPolicy { propagation_secs: 0, retire_after_secs: 3600, rotate_every_secs: 0 };
        let keys =
            KeyRing::load_or_create(&store, KeyAlgorithm::EdDSA, policy, NOW).await.expect("keys");
        let settings = OAuthSettings {
            issuer: ISSUER.into(),
            access_token_ttl_secs: 300,
            txn_trust_domain: "tollgate.internal".into(),
            txn_token_ttl_secs: 60,
            refresh_token_ttl_secs: 86_400,
            grant_max_lifetime_secs: 7 * 86_400,
            code_ttl_secs: 60,
            refresh_reuse_grace_secs: 2,
            device_code_ttl_secs: 600,
            device_poll_interval_secs: 5,
            hash_limits: HashLimits::for_this_machine(),
            throttles: ThrottleSettings::default(),
            max_pending_device_codes: 1000,
            dpop_nonces: None,
        };
        OAuthCore::new(store, Arc::new(keys), Arc::new(ManualClock::new(NOW)), settings)
    });
    Fixture { runtime, core, _dir: dir }
});

/// The native client's loopback URI has no port, so any port will do (RFC
/// 8252 §7.3); the web client's URIs match exactly, the loopback one with its
/// port included.
fn assert_redirect_allowed(client_id: &str, redirect_uri: &str) {
    match client_id {
        // Checked without the function under test: any port, nothing else.
        "cli" => {
            let url = url::Url::parse(redirect_uri).expect("a URL");
            assert_eq!(
                (url.scheme(), url.host_str(), url.path()),
                ("http", Some("127.0.0.1"), "/callback")
            );
            assert!(url.query().is_none() && url.fragment().is_none());
            assert!(url.username().is_empty() && url.password().is_none());
        }
        "web" => assert!(
            ["http://127.0.0.1:8080/cb", "https://web.example/cb?tenant=a"].contains(&redirect_uri),
            "the web client was answered at {redirect_uri:?}"
        ),
        other => panic!("redirected for an unknown client {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let fx = &*FIXTURE;
    let pairs = parse_pairs(data);
    match fx.runtime.block_on(fx.core.validate_authorization(&pairs)) {
        Ok(request) => {
            assert_redirect_allowed(&request.client.client_id, &request.redirect_uri);
            assert!(request.scope.is_subset(&request.client.scope));
            assert!(pkce::is_valid_challenge(&request.code_challenge));
        }
        Err(AuthorizeError::Page(err)) => assert_wire_safe(&err),
        Err(AuthorizeError::Redirect { redirect_uri, state, error }) => {
            assert_wire_safe(&error);
            let client_id = pairs.iter().find(|(k, _)| k == "client_id").map(|(_, v)| v.as_str());
            assert_redirect_allowed(client_id.unwrap_or_default(), &redirect_uri);
            let mut params =
                vec![("error", error.code()), ("error_description", error.description())];
            if let Some(state) = state.as_deref() {
                params.push(("state", state));
            }
            assert!(redirect_with(&redirect_uri, &params).is_some());
        }
    }
});
