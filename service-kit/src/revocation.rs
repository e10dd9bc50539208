//! The resource side of revocation: a local copy of the authorization server's
//! denylist of revoked, unexpired access tokens, refreshed in the background.
//!
//! Access tokens are verified locally, so a revoked one would stay usable until
//! it expires. Instead of asking the authorization server on every request
//! (introspection), the resource server fetches the whole denylist every
//! `interval` (it only holds revoked tokens that have not expired, so it stays
//! small) and refuses what is on it. The bound: a revocation is enforced by every
//! resource server at most one interval plus one fetch after it happened, while
//! the authorization server is reachable. While it is not, the last list stays
//! in force and the access-token lifetime bounds the exposure.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tollgate_proto::auth::v1::revocation_list_service_client::RevocationListServiceClient;
use tollgate_proto::auth::v1::{ClientAuthentication, ListRevokedAccessTokensRequest};
use tollgate_token::Secret;

/// Where the denylist comes from, and how this service authenticates for it.
#[derive(Debug, Clone)]
pub struct RevocationConfig {
    /// The authorization server's gRPC endpoint.
    pub auth_grpc_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// How often the list is fetched: the enforcement bound.
    pub interval: Duration,
}

type Jtis = Arc<HashSet<String>>;
/// The senders a [`Denylist::fixed`] keeps alive (it has no sync task to own them).
type FixedSenders = (watch::Sender<Jtis>, watch::Sender<bool>);
/// A request for a fetch now, answered once that fetch is done.
type SyncRequest = oneshot::Sender<Result<(), tonic::Status>>;
/// How many [`Denylist::sync_now`] calls may wait for the sync task at once;
/// further callers wait for room. Every request waiting when a fetch starts is
/// answered by that one fetch.
const PENDING_SYNC_REQUESTS: usize = 8;

/// Why [`Denylist::sync_now`] did not bring the list up to date.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("the denylist sync has stopped")]
    Stopped,
    #[error("fetching the denylist failed: {0}")]
    Fetch(#[from] tonic::Status),
}

/// The revoked `jti`s currently known. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Denylist {
    current: watch::Receiver<Jtis>,
    /// Whether the list has been fetched at least once.
    synced: watch::Receiver<bool>,
    /// Asks the sync task for a fetch now; `None` for a fixed list.
    sync_requests: Option<mpsc::Sender<SyncRequest>>,
    _fixed: Option<Arc<FixedSenders>>,
}

impl Denylist {
    /// A list that never changes (revocation not configured, or tests).
    pub fn fixed(jtis: impl IntoIterator<Item = String>) -> Self {
        let (tx, rx) = watch::channel(Arc::new(jtis.into_iter().collect()));
        let (synced_tx, synced) = watch::channel(true);
        Self { current: rx, synced, sync_requests: None, _fixed: Some(Arc::new((tx, synced_tx))) }
    }

    /// Starts the background sync.
    pub fn spawn(
        config: RevocationConfig,
    ) -> Result<(Self, JoinHandle<()>), tonic::transport::Error> {
        let channel = tonic::transport::Endpoint::from_shared(config.auth_grpc_url.clone())?
            .timeout(config.interval.min(Duration::from_secs(5)))
            .connect_lazy();
        let client = RevocationListServiceClient::new(channel);
        let interval = config.interval;
        Ok(Self::spawn_from(GrpcSource { config, client }, interval))
    }

    /// Starts the sync loop over any source of the list.
    fn spawn_from(source: impl Source, interval: Duration) -> (Self, JoinHandle<()>) {
        let (tx, rx) = watch::channel(Arc::new(HashSet::new()));
        let (synced_tx, synced) = watch::channel(false);
        let (requests_tx, requests) = mpsc::channel(PENDING_SYNC_REQUESTS);
        let task = tokio::spawn(sync_loop(interval, source, tx, synced_tx, requests));
        let denylist = Self { current: rx, synced, sync_requests: Some(requests_tx), _fixed: None };
        (denylist, task)
    }

    /// Waits until the list has been fetched once: before that, a token revoked
    /// before this service started would be accepted.
    pub async fn ready(&self) {
        let mut synced = self.synced.clone();
        let _ = synced.wait_for(|done| *done).await;
    }

    pub fn contains(&self, jti: &str) -> bool {
        self.current.borrow().contains(jti)
    }

    /// A receiver that sees each later successful sync (subscribe first, then act).
    pub fn watch(&self) -> watch::Receiver<Arc<HashSet<String>>> {
        let mut rx = self.current.clone();
        rx.mark_unchanged();
        rx
    }

    /// Fetches the list now, after any fetch already under way, and returns once
    /// it is in force: every token revoked before the call is then refused. The
    /// periodic sync does the same within one interval; this does it on cue, for
    /// whoever must know when (the e2e tests, instead of watching the clock).
    /// A fixed list has nothing to fetch and returns at once.
    pub async fn sync_now(&self) -> Result<(), SyncError> {
        let Some(requests) = &self.sync_requests else { return Ok(()) };
        let (reply, done) = oneshot::channel();
        requests.send(reply).await.map_err(|_| SyncError::Stopped)?;
        Ok(done.await.map_err(|_| SyncError::Stopped)??)
    }
}

/// Where the sync gets the list: the authorization server, or a stand-in in the
/// unit tests below.
trait Source: Send + 'static {
    fn fetch(&mut self) -> impl Future<Output = Result<HashSet<String>, tonic::Status>> + Send;
}

/// The authorization server's `RevocationListService`, called with this
/// service's own credentials.
struct GrpcSource {
    config: RevocationConfig,
    client: RevocationListServiceClient<tonic::transport::Channel>,
}

impl Source for GrpcSource {
    async fn fetch(&mut self) -> Result<HashSet<String>, tonic::Status> {
        let config = &self.config;
        let request = ListRevokedAccessTokensRequest {
            client: Some(ClientAuthentication {
                client_id: config.client_id.clone(),
                client_secret: Some(config.client_secret.expose().clone()),
                client_assertion: None,
            }),
        };
        let response = self.client.list_revoked_access_tokens(request).await?;
        Ok(response.into_inner().tokens.into_iter().map(|t| t.jti).collect())
    }
}

/// Fetches the list every `interval` (the first time at once) and whenever
/// asked. A fetch asked for starts after the request arrived, so it sees every
/// revocation made before; the requests waiting when it starts share it.
async fn sync_loop(
    interval: Duration,
    mut source: impl Source,
    tx: watch::Sender<Jtis>,
    synced: watch::Sender<bool>,
    mut requests: mpsc::Receiver<SyncRequest>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut waiting = Vec::new();
        tokio::select! {
            _ = ticker.tick() => {}
            Some(request) = requests.recv() => waiting.push(request),
            () = tx.closed() => return,
        }
        while let Ok(request) = requests.try_recv() {
            waiting.push(request);
        }
        let result = match source.fetch().await {
            Ok(jtis) => {
                tracing::debug!(revoked = jtis.len(), "denylist synced");
                tx.send_replace(Arc::new(jtis));
                synced.send_replace(true);
                Ok(())
            }
            // Keep enforcing the last list; the next tick tries again.
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "denylist sync failed");
                Err(status)
            }
        };
        for request in waiting {
            let _ = request.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::time::Instant;

    use super::*;

    const INTERVAL: Duration = Duration::from_secs(5);
    /// How long one fetch takes, there and back.
    const FETCH: Duration = Duration::from_millis(400);

    /// The authorization server's list, as a stand-in serves it.
    #[derive(Clone, Default)]
    struct Server(Arc<Mutex<Served>>);

    #[derive(Default)]
    struct Served {
        revoked: HashSet<String>,
        down: bool,
    }

    impl Server {
        fn revoke(&self, jti: &str) {
            self.0.lock().unwrap().revoked.insert(jti.to_owned());
        }

        fn set_down(&self, down: bool) {
            self.0.lock().unwrap().down = down;
        }
    }

    impl Source for Server {
        /// Answers with the list as it stood when asked, after [`FETCH`].
        async fn fetch(&mut self) -> Result<HashSet<String>, tonic::Status> {
            let answer = {
                let served = self.0.lock().unwrap();
                if served.down {
                    Err(tonic::Status::unavailable("the authorization server is down"))
                } else {
                    Ok(served.revoked.clone())
                }
            };
            tokio::time::sleep(FETCH).await;
            answer
        }
    }

    /// How long after `since` the denylist came to hold `jti`.
    async fn enforced(denylist: &Denylist, jti: &str, since: Instant) -> Duration {
        let mut updates = denylist.watch();
        while !denylist.contains(jti) {
            updates.changed().await.unwrap();
        }
        since.elapsed()
    }

    // Time is tokio's paused clock: it moves only when every task waits, so
    // the bound is checked exactly, not by luck on a fast machine.
    #[tokio::test(start_paused = true)]
    async fn a_revocation_is_enforced_within_one_interval_plus_one_fetch() {
        let server = Server::default();
        let (denylist, _task) = Denylist::spawn_from(server.clone(), INTERVAL);
        denylist.ready().await;
        let start = Instant::now() - FETCH; // when the first fetch began
        let mut worst = Duration::ZERO;
        // Revocations at points across one interval, the worst just after a
        // fetch has read the list.
        for (i, offset) in [1, 100, 2_500, 4_999, 5_001].into_iter().enumerate() {
            tokio::time::sleep_until(start + INTERVAL * 2 * (i as u32 + 1)).await;
            tokio::time::sleep(Duration::from_millis(offset)).await;
            let jti = format!("jti-{i}");
            let revoked_at = Instant::now();
            server.revoke(&jti);
            let took = enforced(&denylist, &jti, revoked_at).await;
            assert!(took <= INTERVAL + FETCH, "revocation {i} enforced after {took:?}");
            worst = worst.max(took);
        }
        assert!(worst > INTERVAL, "the worst case was not exercised: {worst:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_fetch_keeps_the_last_list_and_the_next_tick_tries_again() {
        let server = Server::default();
        let (denylist, _task) = Denylist::spawn_from(server.clone(), INTERVAL);
        server.revoke("first");
        denylist.sync_now().await.unwrap();
        server.set_down(true);
        server.revoke("second");
        let failed = denylist.sync_now().await.unwrap_err();
        assert!(matches!(&failed, SyncError::Fetch(s) if s.code() == tonic::Code::Unavailable));
        assert!(denylist.contains("first"), "the last list stays in force");
        assert!(!denylist.contains("second"));
        server.set_down(false);
        let back = Instant::now();
        assert!(enforced(&denylist, "second", back).await <= INTERVAL + FETCH);
    }

    #[tokio::test(start_paused = true)]
    async fn sync_now_fetches_at_once_and_returns_once_the_list_is_in_force() {
        let server = Server::default();
        let hour = Duration::from_secs(3600);
        let (denylist, task) = Denylist::spawn_from(server.clone(), hour);
        denylist.ready().await;
        server.revoke("revoked");
        let asked = Instant::now();
        // Several callers at once share a fetch that starts after they asked.
        let (a, b) = tokio::join!(denylist.sync_now(), denylist.sync_now());
        a.unwrap();
        b.unwrap();
        assert!(denylist.contains("revoked"));
        assert!(asked.elapsed() <= FETCH * 2, "not the next tick: {:?}", asked.elapsed());

        task.abort();
        let _ = task.await;
        assert!(matches!(denylist.sync_now().await, Err(SyncError::Stopped)));
        // A fixed list has nothing to fetch.
        Denylist::fixed(["x".to_owned()]).sync_now().await.unwrap();
    }
}
