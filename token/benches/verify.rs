//! What a protected service pays per call to check an access token
//! (docs/performance.md "Micro-benchmarks"): the full check of a token seen
//! for the first time (an Ed25519 signature, then the claims), the same token
//! through the verified-token cache (a SHA-256 and the time checks), and a
//! forged token's refusal (what an attacker costs); and a DPoP proof's
//! check, which a DPoP-bound call adds and no cache can spare.
//!
//! `cargo bench -p tollgate-token`; CI runs each once (`cargo test --benches`).

// A benchmark that measured a refusal by mistake would be worthless: every
// setup step is checked, and a failure is the report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use tollgate_token::{
    AccessTokenClaims, Audience, Jwk, JwkSet, KeySet, TokenError, VerifiedTokens, Verifier,
    VerifierConfig, dpop,
};

const ISSUER: &str = "https://as.example";
const AUDIENCE: &str = "tollgate-resource";
const NOW: i64 = 1_800_000_000;
const KID: &str = "bench-key";

/// A token as the authorization server signs it (RFC 9068), and the key set
/// that verifies it.
fn signed_token() -> (String, KeySet) {
    let pair = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap();
    let keys =
        KeySet::from_jwks(&JwkSet { keys: vec![Jwk::ed25519(KID, pair.public_key().as_ref())] });
    let claims = AccessTokenClaims {
        iss: ISSUER.into(),
        sub: "alice".into(),
        aud: Audience::One(AUDIENCE.into()),
        exp: NOW + 300,
        iat: NOW,
        nbf: Some(NOW),
        jti: "0123456789abcdef0123456789abcdef".into(),
        client_id: "web".into(),
        scope: Some("profile:read notes:read notes:write".into()),
        act: None,
        cnf: None,
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{KID}"}}"#);
    let signed =
        format!("{}.{}", b64.encode(header), b64.encode(serde_json::to_vec(&claims).unwrap()));
    let signature = pair.sign(signed.as_bytes());
    (format!("{signed}.{}", b64.encode(signature.as_ref())), keys)
}

fn verification(c: &mut Criterion) {
    let (token, keys) = signed_token();
    let verifier = Verifier::new(VerifierConfig::new(ISSUER, AUDIENCE));
    verifier.verify(&keys, &token, NOW).expect("the benchmark's token verifies");

    let mut group = c.benchmark_group("verify");
    group.bench_function("cold", |b| {
        b.iter(|| verifier.verify(&keys, black_box(&token), NOW).unwrap())
    });
    let cache = VerifiedTokens::default();
    cache.verify(&verifier, &keys, &token, NOW).unwrap();
    group.bench_function("cached", |b| {
        b.iter(|| cache.verify(&verifier, &keys, black_box(&token), NOW).unwrap())
    });
    // A signature character changed: a forgery the cache never admits.
    let mut forged = token.clone().into_bytes();
    let at = forged.len() - 10;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert!(matches!(cache.verify(&verifier, &keys, &forged, NOW), Err(TokenError::BadSignature)));
    group.bench_function("forged", |b| {
        b.iter(|| cache.verify(&verifier, &keys, black_box(&forged), NOW).unwrap_err())
    });
    group.finish();
}

const DPOP_URI: &str = "https://api.example/tollgate.resource.v1.ProfileService/GetProfile";

/// A DPoP proof (RFC 9449) for a gRPC call to [`DPOP_URI`] with `token`,
/// made with the client's key as a client would.
fn dpop_proof(token: &str) -> String {
    let pair = Ed25519KeyPair::from_seed_unchecked(&[9; 32]).unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let x = b64.encode(pair.public_key().as_ref());
    let header = format!(
        r#"{{"typ":"dpop+jwt","alg":"EdDSA","jwk":{{"kty":"OKP","crv":"Ed25519","x":"{x}"}}}}"#
    );
    let claims = serde_json::json!({
        "jti": "bench-proof-1", "htm": "POST", "htu": DPOP_URI, "iat": NOW,
        "ath": dpop::access_token_hash(token),
    });
    let signed =
        format!("{}.{}", b64.encode(header), b64.encode(serde_json::to_vec(&claims).unwrap()));
    let signature = pair.sign(signed.as_bytes());
    format!("{signed}.{}", b64.encode(signature.as_ref()))
}

/// What a DPoP-bound call adds: each proof is new, so its signature is
/// checked on every call (no cache can help), with the `htu` and `ath`.
fn dpop(c: &mut Criterion) {
    let (token, _) = signed_token();
    let proof = dpop_proof(&token);
    let request = dpop::ProofRequest {
        method: "POST",
        uri: DPOP_URI,
        access_token: Some(&token),
        nonce: None,
    };
    let policy = dpop::ProofPolicy::default();
    dpop::verify_proof(&proof, &request, &policy, NOW).expect("the benchmark's proof verifies");
    c.bench_function("dpop/verify_proof", |b| {
        b.iter(|| dpop::verify_proof(black_box(&proof), &request, &policy, NOW).unwrap())
    });
}

criterion_group!(benches, verification, dpop);
criterion_main!(benches);
