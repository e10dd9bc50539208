//! The auth layer and the revocation denylist, synced over real gRPC from a
//! stand-in `RevocationListService`: protected calls are `UNAVAILABLE` until
//! the first sync and while the list is stale, and served again once a sync
//! succeeds, with no restart.
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
    let service = layer.layer(tower::service_fn(
        |_req: http::Request<http_body_util::Empty<bytes::Bytes>>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        },
    ));
    let request = http::Request::builder()
        .uri("/x.v1.Notes/List")
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
