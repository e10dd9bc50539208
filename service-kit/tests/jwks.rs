//! The JWKS cache and the auth layer against a live (test) JWKS endpoint: keys
//! fetched in the background, refetches rate-limited, known keys kept when the
//! authorization server fails, and an unknown `kid` answered by a refetch.

// In tests a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::{ISSUER, JwksServer, TestKey};
use tollgate_service_kit::auth::{AuthLayer, Requirement, ScopePolicy};
use tollgate_service_kit::jwks::{JwksCache, JwksConfig, MAX_JWKS_BYTES};
use tollgate_token::{ManualClock, Verifier, VerifierConfig};
use tower::{Layer as _, ServiceExt as _};

const MIN_REFETCH: Duration = Duration::from_millis(300);

fn config(uri: &str) -> JwksConfig {
    JwksConfig {
        refresh_interval: Duration::from_secs(3600),
        min_refetch_interval: MIN_REFETCH,
        ..JwksConfig::new(uri)
    }
}

#[tokio::test]
async fn refetch_requests_are_coalesced_and_rate_limited() {
    let key = TestKey::new("a");
    let server = JwksServer::start(vec![key.jwk()]).await;
    let clock = Arc::new(ManualClock::new(1_000));
    let (cache, _task) = JwksCache::spawn(config(&server.uri), clock);
    cache.ready().await;
    assert_eq!(server.fetch_count(), 1);
    assert!(cache.current().unwrap().keys.contains("a"));

    // A burst of unknown-kid requests is one refetch, no sooner than the minimum
    // interval after the last fetch.
    for round in 2..=3 {
        let mut updated = cache.watch();
        for _ in 0..50 {
            cache.request_refetch();
        }
        updated.changed().await.unwrap();
        let fetches = server.served.lock().unwrap().fetches.clone();
        assert_eq!(fetches.len(), round, "one fetch per burst");
        let gap = fetches[round - 1] - fetches[round - 2];
        assert!(gap >= MIN_REFETCH, "refetched after {gap:?}");
    }
}

#[tokio::test]
async fn known_keys_are_kept_while_the_authorization_server_fails() {
    let (a, b) = (TestKey::new("a"), TestKey::new("b"));
    let server = JwksServer::start(vec![a.jwk()]).await;
    let (cache, _task) = JwksCache::spawn(config(&server.uri), Arc::new(ManualClock::new(1_000)));
    cache.ready().await;

    server.served.lock().unwrap().healthy = false;
    let failed = server.fetched.notified();
    cache.request_refetch();
    failed.await;
    // The failed fetch changed nothing: tokens signed with "a" still verify.
    assert!(cache.current().unwrap().keys.contains("a"));

    // It recovers by itself (a failed fetch is retried) once the server is back.
    let mut updated = cache.watch();
    {
        let mut served = server.served.lock().unwrap();
        served.healthy = true;
        served.keys = vec![a.jwk(), b.jwk()];
    }
    updated.changed().await.unwrap();
    let keys = &cache.current().unwrap().keys;
    assert!(keys.contains("a") && keys.contains("b"));
}

#[tokio::test]
async fn an_unknown_kid_is_refused_then_accepted_once_the_new_key_is_fetched() {
    let (old, new) = (TestKey::new("old"), TestKey::new("new"));
    let server = JwksServer::start(vec![old.jwk()]).await;
    let clock = Arc::new(ManualClock::new(1_000_000));
    let (cache, _task) = JwksCache::spawn(config(&server.uri), clock.clone());
    cache.ready().await;
    let layer = AuthLayer::new(
        Verifier::new(VerifierConfig::new(ISSUER, "api")),
        cache.clone(),
        ScopePolicy::new().method("/x.v1.Notes/List", Requirement::Scope("notes:read")),
        clock.clone(),
    );
    let inner =
        tower::service_fn(|_req: http::Request<http_body_util::Empty<bytes::Bytes>>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::from("reached")))
        });
    let call = |token: String| {
        let service = layer.layer(inner);
        async move {
            let request = http::Request::builder()
                .uri("/x.v1.Notes/List")
                .header("authorization", format!("Bearer {token}"))
                .body(http_body_util::Empty::new())
                .unwrap();
            let response = service.oneshot(request).await.unwrap();
            (response.headers().get("grpc-status").cloned(), response.into_body())
        }
    };

    // The server starts signing with a key this cache has not seen yet.
    server.served.lock().unwrap().keys = vec![old.jwk(), new.jwk()];
    let mut updated = cache.watch();
    let (status, _) = call(new.token(tollgate_token::Clock::now(clock.as_ref()))).await;
    assert_eq!(status.unwrap(), "16", "UNAUTHENTICATED before the key is known");
    // The refusal asked for a refetch; once it lands the same token is accepted.
    updated.changed().await.unwrap();
    let (status, body) = call(new.token(tollgate_token::Clock::now(clock.as_ref()))).await;
    assert_eq!((status, body.as_str()), (None, "reached"));
    assert_eq!(server.fetch_count(), 2);
}

#[tokio::test]
async fn with_stale_keys_an_unknown_kid_is_unavailable_and_known_keys_still_work() {
    let (known, rotated_in) = (TestKey::new("known"), TestKey::new("new"));
    let server = JwksServer::start(vec![known.jwk()]).await;
    let clock = Arc::new(ManualClock::new(1_000_000));
    let config = JwksConfig { max_staleness: Duration::from_secs(600), ..config(&server.uri) };
    let (cache, _task) = JwksCache::spawn(config, clock.clone());
    cache.ready().await;
    let layer = AuthLayer::new(
        Verifier::new(VerifierConfig::new(ISSUER, "api")),
        cache.clone(),
        ScopePolicy::new().method("/x.v1.Notes/List", Requirement::Scope("notes:read")),
        clock.clone(),
    );
    let status_of = |token: String| {
        let service = layer.layer(tower::service_fn(
            |_req: http::Request<http_body_util::Empty<bytes::Bytes>>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
            },
        ));
        async move {
            let request = http::Request::builder()
                .uri("/x.v1.Notes/List")
                .header("authorization", format!("Bearer {token}"))
                .body(http_body_util::Empty::new())
                .unwrap();
            let response = service.oneshot(request).await.unwrap();
            response.headers().get("grpc-status").map(|v| v.to_str().unwrap().to_owned())
        }
    };
    let now = || tollgate_token::Clock::now(clock.as_ref());

    // The authorization server goes away; time passes beyond the staleness limit.
    server.served.lock().unwrap().healthy = false;
    clock.advance(601);
    // A token signed with a key the cache knows is still accepted...
    assert_eq!(status_of(known.token(now())).await, None);
    // ...one with a kid it has never seen cannot be judged: UNAVAILABLE (14), not
    // UNAUTHENTICATED (16).
    assert_eq!(status_of(rotated_in.token(now())).await.as_deref(), Some("14"));
    // Within the limit, an unknown kid is simply invalid.
    let fresh_clock = Arc::new(ManualClock::new(1_000_000));
    let fresh = AuthLayer::new(
        Verifier::new(VerifierConfig::new(ISSUER, "api")),
        cache.clone(),
        ScopePolicy::new().method("/x.v1.Notes/List", Requirement::Scope("notes:read")),
        fresh_clock,
    );
    let service = fresh.layer(tower::service_fn(
        |_req: http::Request<http_body_util::Empty<bytes::Bytes>>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        },
    ));
    let request = http::Request::builder()
        .uri("/x.v1.Notes/List")
        .header("authorization", format!("Bearer {}", rotated_in.token(1_000_000)))
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.headers().get("grpc-status").unwrap(), "16");
}

#[tokio::test]
async fn a_key_set_over_the_size_limit_is_refused_whole() {
    let a = TestKey::new("a");
    // A usable key beside one whose `kid` alone fills the limit.
    let mut padding = TestKey::new("p").jwk();
    padding.kid = "p".repeat(MAX_JWKS_BYTES);
    let server = JwksServer::start(vec![a.jwk(), padding]).await;
    let (cache, _task) = JwksCache::spawn(config(&server.uri), Arc::new(ManualClock::new(1_000)));
    // Fetched, and refused: no key is taken from it, "a" included.
    let waited = tokio::time::timeout(Duration::from_secs(1), cache.ready()).await;
    assert!(waited.is_err(), "an oversized key set was loaded");
    assert!(server.fetch_count() >= 1);
    assert!(cache.current().is_none());
    // Within the limit, the same key loads (the failed fetch is retried).
    server.served.lock().unwrap().keys = vec![a.jwk()];
    cache.ready().await;
    assert!(cache.current().unwrap().keys.contains("a"));
}
