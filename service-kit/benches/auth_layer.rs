//! The auth layer's per-call work besides the token itself
//! (docs/performance.md "Micro-benchmarks"): reading the bearer token from
//! the request's metadata (RFC 6750 §2.1), finding the method's requirement
//! in the service's scope policy, and the scope check against the token's
//! claims.
//!
//! `cargo bench -p tollgate-service-kit`; CI runs each once (`cargo test --benches`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tollgate_service_kit::auth::{Requirement, ScopePolicy, bearer_token};
use tollgate_token::{AccessTokenClaims, Audience};

/// The resource server's own table (resource-server `policy.rs`), as a service
/// declares it.
fn policy() -> ScopePolicy {
    ScopePolicy::for_api(&[
        ("/tollgate.resource.v1.ProfileService/GetProfile", "profile:read"),
        ("/tollgate.resource.v1.ProfileService/UpdateProfile", "profile:write"),
        ("/tollgate.resource.v1.NotesService/ListNotes", "notes:read"),
        ("/tollgate.resource.v1.NotesService/CreateNote", "notes:write"),
        ("/tollgate.resource.v1.NotesService/DeleteNote", "notes:write"),
        ("/tollgate.resource.v1.ReportService/GetUsageReport", "reports:read"),
    ])
}

fn per_call(c: &mut Criterion) {
    // A realistic header: an RFC 9068 token of the size this project issues.
    let header = format!("Bearer {}", "eyJhbGciOiJFZERTQSJ9.".repeat(20));
    assert!(bearer_token(Some(header.as_bytes())).is_some());
    c.bench_function("metadata/bearer_token", |b| {
        b.iter(|| bearer_token(black_box(Some(header.as_bytes()))).unwrap())
    });

    let policy = policy();
    let path = "/tollgate.resource.v1.NotesService/CreateNote";
    assert_eq!(policy.requirement(path), Some(Requirement::Scope("notes:write")));
    c.bench_function("scope/requirement", |b| {
        b.iter(|| policy.requirement(black_box(path)).unwrap())
    });

    let claims = AccessTokenClaims {
        iss: "https://as.example".into(),
        sub: "alice".into(),
        aud: Audience::One("tollgate-resource".into()),
        exp: 0,
        iat: 0,
        nbf: None,
        jti: "j".into(),
        client_id: "web".into(),
        scope: Some("openid profile:read notes:read notes:write".into()),
        act: None,
        cnf: None,
    };
    assert!(claims.has_scope("notes:write") && !claims.has_scope("reports:read"));
    c.bench_function("scope/check", |b| b.iter(|| claims.has_scope(black_box("notes:write"))));
}

criterion_group!(benches, per_call);
criterion_main!(benches);
