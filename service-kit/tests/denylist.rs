//! The auth layer and the revocation denylist, synced over real gRPC from a
//! stand-in `RevocationListService`: protected calls are `UNAVAILABLE` until
//! the first sync and while the list is stale, and served again once a sync
//! succeeds, with no restart.
//!
//! The same layer caches each token's verified signature: a token it has
//! admitted before is refused exactly as a new one would be once it is
//! revoked, expired, out of scope or signed by a retired key.
//!
//! Real time, kept short: the sync runs every 200 ms and the list turns stale
//! 1.5 s after its last good sync. The tests wait for conditions, never for a
//! fixed time. (The exact bounds are proven on tokio's paused clock in the
//! `revocation` and `serve` unit tests.)

// In tests a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tollgate_service_kit::tls::ClientTls;

use support::{ISSUER, JwksServer, TestKey};
use tokio_stream::wrappers::TcpListenerStream;
use tollgate_proto::auth::v1::revocation_list_service_server::{
    RevocationListService, RevocationListServiceServer,
};
use tollgate_proto::auth::v1::{
    ListRevokedAccessTokensRequest, ListRevokedAccessTokensResponse, REVOCATION_LIST_MAX_PAGE_SIZE,
    RevokedAccessToken,
};
use tollgate_service_kit::auth::{AuthLayer, Requirement, ScopePolicy};
use tollgate_service_kit::jwks::{JwksCache, JwksConfig};
use tollgate_service_kit::revocation::{Denylist, Freshness, RevocationConfig};
use tollgate_token::{Clock as _, ManualClock, Secret, Verifier, VerifierConfig};
use tower::{Layer as _, ServiceExt as _};

const LIST: &str = "/x.v1.Notes/List";
const DELETE: &str = "/x.v1.Notes/Delete";
const INTERVAL: Duration = Duration::from_millis(200);
const MAX_STALENESS: Duration = Duration::from_millis(1500);
/// The stand-in's own page cap: small, so even a short list takes several pages.
const PAGE: usize = 2;

/// What the stand-in authorization server lists, and what it was asked.
#[derive(Default)]
struct Listed {
    revoked: BTreeSet<String>,
    down: bool,
    /// The largest `page_size` a request asked for.
    asked_page_size: u32,
    pages: usize,
}

#[derive(Clone, Default)]
struct RevocationList(Arc<Mutex<Listed>>);

#[tonic::async_trait]
impl RevocationListService for RevocationList {
    /// Keyset pages of at most [`PAGE`], as the authorization server serves them.
    async fn list_revoked_access_tokens(
        &self,
        request: tonic::Request<ListRevokedAccessTokensRequest>,
    ) -> Result<tonic::Response<ListRevokedAccessTokensResponse>, tonic::Status> {
        let request = request.into_inner();
        let mut listed = self.0.lock().unwrap();
        if listed.down {
            return Err(tonic::Status::unavailable("the authorization server is down"));
        }
        assert_eq!(request.client.unwrap().client_id, "svc");
        listed.asked_page_size = listed.asked_page_size.max(request.page_size);
        listed.pages += 1;
        let after = request.page_token.as_str();
        let mut tokens: Vec<RevokedAccessToken> = listed
            .revoked
            .range::<str, _>((Bound::Excluded(after), Bound::Unbounded))
            .take(PAGE + 1)
            .map(|jti| RevokedAccessToken { jti: jti.clone(), expires_at: i64::MAX })
            .collect();
        let more = tokens.len() > PAGE;
        tokens.truncate(PAGE);
        let next_page_token =
            if more { tokens.last().map(|t| t.jti.clone()).unwrap_or_default() } else { "".into() };
        Ok(tonic::Response::new(ListRevokedAccessTokensResponse { tokens, next_page_token }))
    }
}

impl RevocationList {
    /// Serves on a free port; returns its URL.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let service = RevocationListServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        url
    }

    fn set_down(&self, down: bool) {
        self.0.lock().unwrap().down = down;
    }

    fn revoke(&self, jti: &str) {
        self.0.lock().unwrap().revoked.insert(jti.to_owned());
    }
}

/// Syncs now, trying again while the link is slow or the connection new (as
/// the service itself would at its next tick).
async fn sync(denylist: &Denylist) {
    loop {
        match denylist.sync_now().await {
            Ok(()) => return,
            Err(err) if err.is_transient() => {}
            Err(err) => panic!("sync failed: {err}"),
        }
    }
}

/// The gRPC status a call through `layer` with `token` ends in (`None`: it
/// reached the method).
async fn status_of(layer: &AuthLayer, token: &str) -> Option<tonic::Status> {
    status_at(layer, LIST, token).await
}

/// The same for a call to `path`.
async fn status_at(layer: &AuthLayer, path: &str, token: &str) -> Option<tonic::Status> {
    let service = layer.layer(tower::service_fn(
        |_req: http::Request<http_body_util::Empty<bytes::Bytes>>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        },
    ));
    let request = http::Request::builder()
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    tonic::Status::from_header_map(response.headers())
}

#[tokio::test]
async fn calls_are_unavailable_until_the_first_sync_and_while_the_list_is_stale() {
    let key = TestKey::new("k");
    let jwks = JwksServer::start(vec![key.jwk()]).await;
    let clock = Arc::new(ManualClock::starting_now());
    let (keys, _keys_task) = JwksCache::spawn(JwksConfig::new(&jwks.uri), clock.clone());
    keys.ready().await;
    let list = RevocationList::default();
    list.set_down(true);
    let (denylist, _sync_task) = Denylist::spawn(RevocationConfig {
        auth_grpc_url: list.start().await,
        client_id: "svc".into(),
        client_secret: Some(Secret::new("svc-secret")),
        interval: INTERVAL,
        max_staleness: MAX_STALENESS,
        tls: ClientTls::public_roots(),
    })
    .unwrap();
    let layer = AuthLayer::new(
        Verifier::new(VerifierConfig::new(ISSUER, "api")),
        keys,
        ScopePolicy::new().method("/x.v1.Notes/List", Requirement::Scope("notes:read")),
        clock.clone(),
    )
    .with_denylist(denylist.clone());
    let good = key.token_with_jti(clock.now(), "good");
    let revoked = key.token_with_jti(clock.now(), "revoked");

    // Keys loaded, list never synced: a valid token cannot be judged yet.
    assert_eq!(denylist.freshness(), Freshness::NotLoaded);
    let refused = status_of(&layer, &good).await.unwrap();
    assert_eq!(
        (refused.code(), refused.message()),
        (tonic::Code::Unavailable, "the revocation denylist is not loaded yet")
    );

    // The list, over several pages, synced: served, and the revoked token refused.
    for jti in ["a", "b", "revoked", "x", "y"] {
        list.revoke(jti);
    }
    list.set_down(false);
    sync(&denylist).await;
    assert_eq!(denylist.len(), 5);
    assert!(list.0.lock().unwrap().pages >= 3, "5 entries, 2 a page");
    assert_eq!(list.0.lock().unwrap().asked_page_size, REVOCATION_LIST_MAX_PAGE_SIZE);
    assert!(status_of(&layer, &good).await.is_none());
    let refused = status_of(&layer, &revoked).await.unwrap();
    assert_eq!(
        (refused.code(), refused.message()),
        (tonic::Code::Unauthenticated, "token has been revoked")
    );

    // The authorization server goes away; once the last good sync is older
    // than the bound, the list is stale and calls are refused.
    list.set_down(true);
    assert_eq!(denylist.freshness_changed(Freshness::Fresh).await, Freshness::Stale);
    let refused = status_of(&layer, &good).await.unwrap();
    assert_eq!(
        (refused.code(), refused.message()),
        (tonic::Code::Unavailable, "the revocation denylist is stale; try again later")
    );

    // It comes back: served again, without a restart.
    list.set_down(false);
    sync(&denylist).await;
    assert!(status_of(&layer, &good).await.is_none());
    assert_eq!(status_of(&layer, &revoked).await.unwrap().code(), tonic::Code::Unauthenticated);
}

/// The verified-token cache saves the signature check only: a token the layer
/// has admitted (and cached) is refused, with the uncached path's exact error,
/// once it is revoked, expired (the clock moved), used for a method its scope
/// does not cover, or signed by a key that has left the JWKS.
#[tokio::test]
async fn a_token_admitted_before_is_refused_as_a_new_one_would_be() {
    let (key, next_key) = (TestKey::new("k1"), TestKey::new("k2"));
    let jwks = JwksServer::start(vec![key.jwk(), next_key.jwk()]).await;
    let clock = Arc::new(ManualClock::starting_now());
    let jwks_config = JwksConfig {
        min_refetch_interval: Duration::from_millis(10),
        ..JwksConfig::new(&jwks.uri)
    };
    let (keys, _keys_task) = JwksCache::spawn(jwks_config, clock.clone());
    keys.ready().await;
    let list = RevocationList::default();
    let (denylist, _sync_task) = Denylist::spawn(RevocationConfig {
        auth_grpc_url: list.start().await,
        client_id: "svc".into(),
        client_secret: Some(Secret::new("svc-secret")),
        interval: INTERVAL,
        max_staleness: Duration::from_secs(3600),
        tls: ClientTls::public_roots(),
    })
    .unwrap();
    sync(&denylist).await;
    let layer = AuthLayer::new(
        Verifier::new(VerifierConfig::new(ISSUER, "api")),
        keys.clone(),
        ScopePolicy::new()
            .method(LIST, Requirement::Scope("notes:read"))
            .method(DELETE, Requirement::Scope("notes:write")),
        clock.clone(),
    )
    .with_denylist(denylist.clone());
    let refusal = |status: Option<tonic::Status>| {
        let status = status.expect("the call was admitted");
        (status.code(), status.message().to_owned())
    };
    let unauthenticated = |message: &str| (tonic::Code::Unauthenticated, message.to_owned());

    // Admitted twice: the second time from the cache.
    let token = key.token_with_jti(clock.now(), "t1");
    assert!(status_of(&layer, &token).await.is_none());
    assert!(status_of(&layer, &token).await.is_none());

    // Scope: checked on every call, whatever the cache holds.
    assert_eq!(
        refusal(status_at(&layer, DELETE, &token).await),
        (tonic::Code::PermissionDenied, "requires scope notes:write".to_owned())
    );

    // Revoked after it was cached.
    list.revoke("t1");
    sync(&denylist).await;
    assert_eq!(refusal(status_of(&layer, &token).await), unauthenticated("token has been revoked"));

    // Expired after it was cached: the clock moves past exp + leeway (30 s).
    let expiring = key.token_with_jti(clock.now(), "t2");
    assert!(status_of(&layer, &expiring).await.is_none());
    clock.advance(300 + 29);
    assert!(status_of(&layer, &expiring).await.is_none(), "within the leeway");
    clock.advance(1);
    assert_eq!(refusal(status_of(&layer, &expiring).await), unauthenticated("token has expired"));

    // Its key leaves the JWKS after it was cached.
    let signed_by_retired = key.token_with_jti(clock.now(), "t3");
    assert!(status_of(&layer, &signed_by_retired).await.is_none());
    jwks.served.lock().unwrap().keys = vec![next_key.jwk()];
    let mut updated = keys.watch();
    keys.request_refetch();
    updated.changed().await.unwrap();
    assert!(!keys.current().unwrap().keys.contains("k1"));
    assert_eq!(
        refusal(status_of(&layer, &signed_by_retired).await),
        unauthenticated("token is signed with an unknown key")
    );
    // The key that stayed still serves its tokens.
    assert!(status_of(&layer, &next_key.token_with_jti(clock.now(), "t4")).await.is_none());
}
