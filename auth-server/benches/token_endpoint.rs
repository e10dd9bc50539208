//! The token endpoint's own per-request work (docs/performance.md
//! "Micro-benchmarks"): reading a `POST /token` request (the `Content-Type`,
//! HTTP Basic credentials and the form, RFC 6749 §2.3.1, §4.1.3, §4.4.2) and
//! signing an RFC 9068 access token with each algorithm the key ring offers.
//!
//! `cargo bench -p tollgate-auth-server`; CI runs each once (`cargo test --benches`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Mutex;

use axum::http::{HeaderMap, HeaderValue, header};
use criterion::{Criterion, criterion_group, criterion_main};
use tollgate_auth_server::domain::keys::{KeyRing, RotationPolicy};
use tollgate_auth_server::domain::model::StoredKey;
use tollgate_auth_server::http::token::parse_request;
use tollgate_auth_server::storage::{KeyStore, Result};
use tollgate_token::{AccessTokenClaims, Audience, KeyAlgorithm, Verifier, VerifierConfig};

const NOW: i64 = 1_800_000_000;
const POLICY: RotationPolicy =
    RotationPolicy { propagation_secs: 0, retire_after_secs: 3600, rotate_every_secs: 0 };

/// Signing keys in memory: the ring's storage, without a database.
#[derive(Default)]
struct Keys(Mutex<Vec<StoredKey>>);

impl KeyStore for Keys {
    async fn signing_keys(&self) -> Result<Vec<StoredKey>> {
        Ok(self.0.lock().unwrap().clone())
    }

    async fn insert_signing_key(&self, key: &StoredKey) -> Result<()> {
        self.0.lock().unwrap().push(key.clone());
        Ok(())
    }
}

fn form(body: &str, basic: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    if let Some(basic) = basic {
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(basic).unwrap());
    }
    assert!(parse_request(&headers, body.as_bytes()).is_ok(), "the benchmark's request parses");
    headers
}

fn parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_request");
    // `service:s3cret`, as a confidential client sends it.
    let body = "grant_type=client_credentials&scope=notes%3Aread%20profile%3Aread";
    let headers = form(body, Some("Basic c2VydmljZTpzM2NyZXQ="));
    group.bench_function("client_credentials", |b| {
        b.iter(|| parse_request(&headers, black_box(body.as_bytes())).unwrap())
    });
    let body = "grant_type=authorization_code&code=SplxlOBeZQQYbYS6WxSbIA\
                &redirect_uri=https%3A%2F%2Fapp.example%2Fcb&client_id=cli\
                &code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let headers = form(body, None);
    group.bench_function("authorization_code", |b| {
        b.iter(|| parse_request(&headers, black_box(body.as_bytes())).unwrap())
    });
    group.finish();
}

fn signing(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let claims = AccessTokenClaims {
        iss: "https://as.example".into(),
        sub: "alice".into(),
        aud: Audience::One("tollgate-resource".into()),
        exp: NOW + 300,
        iat: NOW,
        nbf: Some(NOW),
        jti: "0123456789abcdef0123456789abcdef".into(),
        client_id: "web".into(),
        scope: Some("profile:read notes:read notes:write".into()),
        act: None,
        cnf: None,
    };
    let verifier = Verifier::new(VerifierConfig::new("https://as.example", "tollgate-resource"));
    let mut group = c.benchmark_group("sign");
    for alg in [KeyAlgorithm::EdDSA, KeyAlgorithm::ES256] {
        let store = Keys::default();
        let ring = runtime.block_on(KeyRing::load_or_create(&store, alg, POLICY, NOW)).unwrap();
        let token = ring.sign(&claims, NOW).unwrap();
        verifier.verify(&ring.verification_keys(NOW), &token, NOW).expect("a valid token");
        group.bench_function(alg.as_str(), |b| {
            b.iter(|| ring.sign(black_box(&claims), NOW).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, parsing, signing);
criterion_main!(benches);
