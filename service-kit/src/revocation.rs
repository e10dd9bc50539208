//! The resource side of revocation: a local copy of the authorization server's
//! denylist of revoked, unexpired access tokens, refreshed in the background.
//!
//! Access tokens are verified locally, so a revoked one would stay usable until
//! it expires. Instead of asking the authorization server on every request
//! (introspection), the service fetches the whole denylist every `interval` and
//! refuses what is on it. The bound: a revocation is enforced by every service
//! at most one interval plus one fetch after it happened, while the
//! authorization server is reachable.
//!
//! The list has no size of its own: one client that issues and revokes in a
//! loop grows it. So it comes in pages (`ListRevokedAccessTokens` with a page
//! token, at most `REVOCATION_LIST_MAX_PAGE_SIZE` (10,000) entries, about
//! 370 kB, a page), each sync reads every page into a new set, and the set is
//! swapped in only once the last page has arrived: a sync that fails part-way
//! leaves the previous list in force, whole. A sync takes at most
//! [`MAX_DENYLIST_ENTRIES`] entries over at most [`MAX_SYNC_PAGES`] pages, so a
//! misbehaving server cannot grow this service's memory without bound; a
//! larger list fails the sync like an unreachable server does.
//!
//! The list is only as good as its last successful sync, so it also says how
//! far it can be trusted ([`Freshness`]): not loaded before the first sync
//! (a token revoked before this service started would be accepted), stale once
//! `max_staleness` has passed since the last successful sync began (revocations
//! since then are unknown here). The auth layer refuses protected calls with
//! `UNAVAILABLE` in both cases, and health reports `NOT_SERVING`, until a sync
//! succeeds; both recover by themselves. Time here is tokio's clock, so the
//! unit tests below move it instead of waiting.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tollgate_proto::auth::v1::revocation_list_service_client::RevocationListServiceClient;
use tollgate_proto::auth::v1::{
    ClientAuthentication, ListRevokedAccessTokensRequest, REVOCATION_LIST_MAX_PAGE_SIZE,
};
use tollgate_token::Secret;

/// The most revoked tokens one sync takes in. Generous: access tokens live
/// minutes, so reaching it takes thousands of revocations a second, sustained.
/// Each entry costs roughly 80 bytes here (a 22-byte `jti` in its own
/// allocation, the `String` beside it, the hash table's slack), so a full list
/// is about 400 MB, and twice that while a sync builds the next list beside the
/// one in force. A list past it fails the sync ([`SyncError::Oversized`]).
pub const MAX_DENYLIST_ENTRIES: usize = 5_000_000;

/// The most pages one sync follows: enough for [`MAX_DENYLIST_ENTRIES`] in
/// pages of 1,000 (a tenth of the contract's cap, which is what this service
/// asks for), so a server that never says "last page" cannot keep a sync going
/// forever.
pub const MAX_SYNC_PAGES: usize = MAX_DENYLIST_ENTRIES / 1_000;

/// Where the denylist comes from, and how this service authenticates for it.
#[derive(Debug, Clone)]
pub struct RevocationConfig {
    /// The authorization server's gRPC endpoint.
    pub auth_grpc_url: String,
    pub client_id: String,
    /// `None`: the TLS client certificate authenticates (RFC 8705).
    pub client_secret: Option<Secret>,
    /// How often the list is fetched: the enforcement bound.
    pub interval: Duration,
    /// How long after the start of the last successful sync the list is still
    /// relied on. Past it the list is [`Freshness::Stale`]. Must be larger than
    /// `interval` (plus a fetch), or a healthy service would flap.
    pub max_staleness: Duration,
    /// Trust for an `https://` URL, and this service's client certificate.
    pub tls: crate::tls::ClientTls,
}

/// How far the list in force can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// No sync has succeeded yet.
    NotLoaded,
    /// The last successful sync began less than `max_staleness` ago.
    Fresh,
    /// It began `max_staleness` ago or longer.
    Stale,
}

type Jtis = Arc<HashSet<String>>;
/// The senders a [`Denylist::fixed`] keeps alive (it has no sync task to own them).
type FixedSenders = (watch::Sender<Jtis>, watch::Sender<Option<Instant>>);
/// A request for a fetch now, answered once that fetch is done.
type SyncRequest = oneshot::Sender<Result<(), SyncError>>;
/// How many [`Denylist::sync_now`] calls may wait for the sync task at once;
/// further callers wait for room. Every request waiting when a fetch starts is
/// answered by that one fetch.
const PENDING_SYNC_REQUESTS: usize = 8;

/// Why a sync did not bring the list up to date.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    #[error("the denylist sync has stopped")]
    Stopped,
    #[error("fetching the denylist failed: {0}")]
    Fetch(#[from] tonic::Status),
    /// The server sent more than this service takes in one sync.
    #[error("the denylist is larger than this service takes ({0})")]
    Oversized(&'static str),
}

impl SyncError {
    /// Whether the same sync may succeed if tried again at once: the link was
    /// slow or the server unreachable (what the periodic sync rides out at
    /// its next tick), not a refusal or a list too large.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Fetch(status) if matches!(
                status.code(),
                tonic::Code::Cancelled | tonic::Code::DeadlineExceeded | tonic::Code::Unavailable
            )
        )
    }
}

/// The revoked `jti`s currently known. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Denylist {
    current: watch::Receiver<Jtis>,
    /// When the fetch behind the list in force began; `None` before the first
    /// success. Every token revoked before that instant is on the list.
    synced_at: watch::Receiver<Option<Instant>>,
    /// How long after `synced_at` the list counts as stale; `None` for a
    /// fixed list, which never is.
    max_staleness: Option<Duration>,
    /// Asks the sync task for a fetch now; `None` for a fixed list.
    sync_requests: Option<mpsc::Sender<SyncRequest>>,
    _fixed: Option<Arc<FixedSenders>>,
}

impl Denylist {
    /// A list that never changes (revocation not configured, or tests). It
    /// counts as loaded and never turns stale.
    pub fn fixed(jtis: impl IntoIterator<Item = String>) -> Self {
        let (tx, rx) = watch::channel(Arc::new(jtis.into_iter().collect()));
        let (synced_tx, synced_at) = watch::channel(Some(Instant::now()));
        Self {
            current: rx,
            synced_at,
            max_staleness: None,
            sync_requests: None,
            _fixed: Some(Arc::new((tx, synced_tx))),
        }
    }

    /// Starts the background sync.
    pub fn spawn(
        config: RevocationConfig,
    ) -> Result<(Self, JoinHandle<()>), crate::tls::TargetError> {
        // Per page: a sync of many pages may take longer, which the staleness
        // bound covers.
        let timeout = config.interval.min(Duration::from_secs(5));
        let channel = crate::tls::GrpcTarget::new(&config.auth_grpc_url, &config.tls)?
            .configure(|endpoint| endpoint.timeout(timeout))
            .connect_lazy();
        let client = RevocationListServiceClient::new(channel);
        let (interval, max_staleness) = (config.interval, config.max_staleness);
        Ok(Self::spawn_from(GrpcSource { config, client }, interval, max_staleness))
    }

    /// Starts the sync loop over any source of the list.
    pub(crate) fn spawn_from(
        source: impl Source,
        interval: Duration,
        max_staleness: Duration,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = watch::channel(Arc::new(HashSet::new()));
        let (synced_tx, synced_at) = watch::channel(None);
        let (requests_tx, requests) = mpsc::channel(PENDING_SYNC_REQUESTS);
        let task = tokio::spawn(sync_loop(interval, source, tx, synced_tx, requests));
        let denylist = Self {
            current: rx,
            synced_at,
            max_staleness: Some(max_staleness),
            sync_requests: Some(requests_tx),
            _fixed: None,
        };
        (denylist, task)
    }

    /// Waits until the list has been fetched once: before that, a token revoked
    /// before this service started would be accepted.
    pub async fn ready(&self) {
        let mut synced_at = self.synced_at.clone();
        let _ = synced_at.wait_for(Option::is_some).await;
    }

    pub fn contains(&self, jti: &str) -> bool {
        self.current.borrow().contains(jti)
    }

    /// How many revoked tokens the list in force holds.
    pub fn len(&self) -> usize {
        self.current.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How far the list in force can be trusted now.
    pub fn freshness(&self) -> Freshness {
        self.freshness_since(*self.synced_at.borrow())
    }

    fn freshness_since(&self, synced_at: Option<Instant>) -> Freshness {
        match (synced_at, self.max_staleness) {
            (None, _) => Freshness::NotLoaded,
            (Some(at), Some(max)) if at.elapsed() >= max => Freshness::Stale,
            (Some(_), _) => Freshness::Fresh,
        }
    }

    /// Waits until [`Denylist::freshness`] is no longer `from`, and returns
    /// what it is then: the next sync success, or the moment the list turns
    /// stale, whichever changes it. What health follows.
    pub async fn freshness_changed(&self, from: Freshness) -> Freshness {
        let mut synced_at = self.synced_at.clone();
        // Once the sync task is gone only time changes anything.
        let mut sync_running = true;
        loop {
            let at = *synced_at.borrow_and_update();
            let now = self.freshness_since(at);
            if now != from {
                return now;
            }
            // A bound too far off to represent is one never reached.
            let turns_stale = match (at, self.max_staleness) {
                (Some(at), Some(max)) if now == Freshness::Fresh => at.checked_add(max),
                _ => None,
            };
            let stale_at = async {
                match turns_stale {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = synced_at.changed(), if sync_running => sync_running = changed.is_ok(),
                () = stale_at => {}
            }
        }
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
        done.await.map_err(|_| SyncError::Stopped)?
    }
}

/// One page of the list as the source sent it.
#[derive(Debug, Default)]
pub(crate) struct Page {
    jtis: Vec<String>,
    /// Where the next page starts; empty after the last.
    next_page_token: String,
}

/// Where the sync gets the list, page by page: the authorization server, or a
/// stand-in in the unit tests below.
pub(crate) trait Source: Send + 'static {
    /// The page that `page_token` names (`""`: the first).
    fn fetch_page(
        &mut self,
        page_token: &str,
    ) -> impl Future<Output = Result<Page, tonic::Status>> + Send;
}

/// The authorization server's `RevocationListService`, called with this
/// service's own credentials.
struct GrpcSource {
    config: RevocationConfig,
    client: RevocationListServiceClient<tonic::transport::Channel>,
}

impl Source for GrpcSource {
    async fn fetch_page(&mut self, page_token: &str) -> Result<Page, tonic::Status> {
        let config = &self.config;
        let request = ListRevokedAccessTokensRequest {
            client: Some(ClientAuthentication {
                client_id: config.client_id.clone(),
                client_secret: config.client_secret.as_ref().map(|s| s.expose().clone()),
                client_assertion: None,
            }),
            page_token: page_token.to_owned(),
            // The largest page the contract allows: the fewest round trips.
            page_size: REVOCATION_LIST_MAX_PAGE_SIZE,
        };
        let response = self.client.list_revoked_access_tokens(request).await?.into_inner();
        Ok(Page {
            jtis: response.tokens.into_iter().map(|t| t.jti).collect(),
            next_page_token: response.next_page_token,
        })
    }
}

/// The most one sync takes in: [`MAX_DENYLIST_ENTRIES`] over [`MAX_SYNC_PAGES`]
/// in service, smaller in the tests that cross them.
#[derive(Debug, Clone, Copy)]
struct SyncLimits {
    entries: usize,
    pages: usize,
}

const SYNC_LIMITS: SyncLimits = SyncLimits { entries: MAX_DENYLIST_ENTRIES, pages: MAX_SYNC_PAGES };

/// Reads every page into a new set: the whole list, or an error and nothing.
///
/// Every token revoked before the first page was asked for, and not expired
/// since, is in the result: the server pages by keyset over `(exp, jti)` on a
/// table that only grows until expired rows are purged, so no page boundary
/// can move past a live row.
async fn fetch_all(
    source: &mut impl Source,
    limits: SyncLimits,
) -> Result<HashSet<String>, SyncError> {
    let mut jtis = HashSet::new();
    let mut page_token = String::new();
    for _ in 0..limits.pages {
        let page = source.fetch_page(&page_token).await?;
        if jtis.len().saturating_add(page.jtis.len()) > limits.entries {
            return Err(SyncError::Oversized("too many entries"));
        }
        jtis.extend(page.jtis);
        if page.next_page_token.is_empty() {
            return Ok(jtis);
        }
        page_token = page.next_page_token;
    }
    Err(SyncError::Oversized("too many pages"))
}

/// Fetches the list every `interval` (the first time at once) and whenever
/// asked. A fetch asked for starts after the request arrived, so it sees every
/// revocation made before; the requests waiting when it starts share it.
async fn sync_loop(
    interval: Duration,
    mut source: impl Source,
    tx: watch::Sender<Jtis>,
    synced_at: watch::Sender<Option<Instant>>,
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
        let started = Instant::now();
        let result = match fetch_all(&mut source, SYNC_LIMITS).await {
            Ok(jtis) => {
                tracing::debug!(revoked = jtis.len(), "denylist synced");
                // The list first, then its time: whoever sees the new time
                // sees the new list.
                tx.send_replace(Arc::new(jtis));
                synced_at.send_replace(Some(started));
                Ok(())
            }
            // Keep enforcing the last list, whole; the next tick tries again.
            // Its age shows in `freshness`.
            Err(err) => {
                match &err {
                    SyncError::Fetch(status) => tracing::warn!(
                        code = ?status.code(), message = status.message(), "denylist sync failed"
                    ),
                    other => tracing::warn!(error = %other, "denylist sync failed"),
                }
                Err(err)
            }
        };
        for request in waiting {
            let _ = request.send(result.clone());
        }
    }
}

// Every page the sync may take in holds at most the contract's page size, so
// the page cap must leave room for the entry cap at that size.
const _: () =
    assert!(MAX_SYNC_PAGES * REVOCATION_LIST_MAX_PAGE_SIZE as usize >= MAX_DENYLIST_ENTRIES);

/// A stand-in for the authorization server's list, for the unit tests here and
/// in [`crate::serve`].
#[cfg(test)]
pub(crate) mod stand_in {
    use std::collections::BTreeSet;
    use std::ops::Bound;
    use std::sync::Mutex;

    use super::*;

    /// How long one page takes, there and back.
    pub(crate) const FETCH: Duration = Duration::from_millis(400);

    /// The authorization server's list, as a stand-in serves it.
    #[derive(Clone, Default)]
    pub(crate) struct Server(Arc<Mutex<Served>>);

    #[derive(Default)]
    struct Served {
        revoked: BTreeSet<String>,
        down: bool,
        /// Entries a page; 0: all on one page.
        page_size: usize,
        /// This page of every sync (1 = the first) fails.
        failing_page: Option<usize>,
        /// The pages of the sync under way so far.
        pages: usize,
    }

    impl Server {
        pub(crate) fn with_page_size(self, page_size: usize) -> Self {
            self.0.lock().unwrap().page_size = page_size;
            self
        }

        pub(crate) fn revoke(&self, jti: &str) {
            self.0.lock().unwrap().revoked.insert(jti.to_owned());
        }

        pub(crate) fn set_down(&self, down: bool) {
            self.0.lock().unwrap().down = down;
        }

        pub(crate) fn fail_on_page(&self, page: Option<usize>) {
            self.0.lock().unwrap().failing_page = page;
        }

        /// The pages the last sync asked for.
        pub(crate) fn pages(&self) -> usize {
            self.0.lock().unwrap().pages
        }
    }

    impl Source for Server {
        /// Answers with the list as it stood when asked, keyset-paged as the
        /// authorization server does, after [`FETCH`].
        async fn fetch_page(&mut self, page_token: &str) -> Result<Page, tonic::Status> {
            let answer = {
                let mut served = self.0.lock().unwrap();
                served.pages = if page_token.is_empty() { 1 } else { served.pages + 1 };
                if served.down || served.failing_page == Some(served.pages) {
                    Err(tonic::Status::unavailable("the authorization server is down"))
                } else {
                    let size = if served.page_size == 0 { usize::MAX } else { served.page_size };
                    let mut rest = served
                        .revoked
                        .range::<str, _>((Bound::Excluded(page_token), Bound::Unbounded))
                        .take(size.saturating_add(1))
                        .cloned()
                        .collect::<Vec<_>>();
                    let more = rest.len() > size;
                    rest.truncate(size);
                    let next_page_token =
                        if more { rest.last().cloned().unwrap_or_default() } else { String::new() };
                    Ok(Page { jtis: rest, next_page_token })
                }
            };
            tokio::time::sleep(FETCH).await;
            answer
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::stand_in::{FETCH, Server};
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(5);
    const MAX_STALENESS: Duration = Duration::from_secs(30);
    const HOUR: Duration = Duration::from_secs(3600);

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
        let (denylist, _task) = Denylist::spawn_from(server.clone(), INTERVAL, MAX_STALENESS);
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
        let (denylist, _task) = Denylist::spawn_from(server.clone(), INTERVAL, MAX_STALENESS);
        server.revoke("first");
        denylist.sync_now().await.unwrap();
        server.set_down(true);
        server.revoke("second");
        let failed = denylist.sync_now().await.unwrap_err();
        assert!(matches!(&failed, SyncError::Fetch(s) if s.code() == tonic::Code::Unavailable));
        assert!(failed.is_transient(), "worth trying again");
        assert!(denylist.contains("first"), "the last list stays in force");
        assert!(!denylist.contains("second"));
        server.set_down(false);
        let back = Instant::now();
        assert!(enforced(&denylist, "second", back).await <= INTERVAL + FETCH);
    }

    #[tokio::test(start_paused = true)]
    async fn sync_now_fetches_at_once_and_returns_once_the_list_is_in_force() {
        let server = Server::default();
        let (denylist, task) = Denylist::spawn_from(server.clone(), HOUR, MAX_STALENESS);
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

    #[tokio::test(start_paused = true)]
    async fn a_list_of_many_pages_comes_into_force_whole_once_the_last_page_arrives() {
        let server = Server::default().with_page_size(3);
        let (denylist, _task) = Denylist::spawn_from(server.clone(), HOUR, MAX_STALENESS);
        denylist.ready().await;
        let jtis: Vec<String> = (0..10).map(|i| format!("jti-{i:02}")).collect();
        for jti in &jtis {
            server.revoke(jti);
        }
        let sync = tokio::spawn({
            let denylist = denylist.clone();
            async move { denylist.sync_now().await }
        });
        // Halfway through the third of four pages, the old (empty) list is
        // still the one in force: no half list is ever enforced.
        tokio::time::sleep(FETCH * 2 + FETCH / 2).await;
        assert!(denylist.is_empty());
        sync.await.unwrap().unwrap();
        assert_eq!(server.pages(), 4, "3 + 3 + 3 + 1");
        assert_eq!(denylist.len(), 10);
        assert!(jtis.iter().all(|jti| denylist.contains(jti)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_on_a_later_page_keeps_the_previous_list_whole() {
        let server = Server::default().with_page_size(2);
        let (denylist, _task) = Denylist::spawn_from(server.clone(), HOUR, MAX_STALENESS);
        for jti in ["a", "b", "c"] {
            server.revoke(jti);
        }
        denylist.sync_now().await.unwrap();
        let before = denylist.watch().borrow().clone();
        for jti in ["d", "e", "f"] {
            server.revoke(jti);
        }
        // Pages 1 and 2 (a b, c d) arrive; page 3 fails.
        server.fail_on_page(Some(3));
        let failed = denylist.sync_now().await.unwrap_err();
        assert!(matches!(&failed, SyncError::Fetch(s) if s.code() == tonic::Code::Unavailable));
        assert_eq!(server.pages(), 3);
        assert_eq!(*denylist.watch().borrow(), before, "the previous list, not a mix");
        assert!(!denylist.contains("d"), "fetched on page 2, but that sync failed");
        server.fail_on_page(None);
        denylist.sync_now().await.unwrap();
        assert_eq!(denylist.len(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn the_list_turns_stale_at_the_bound_and_fresh_again_at_the_next_success() {
        let server = Server::default();
        server.revoke("revoked");
        let (denylist, _task) = Denylist::spawn_from(server.clone(), INTERVAL, MAX_STALENESS);
        denylist.ready().await;
        // The age counts from when the last good fetch began: every revocation
        // before that instant is on the list.
        let synced = Instant::now() - FETCH;
        assert_eq!(denylist.freshness(), Freshness::Fresh);
        server.set_down(true);
        tokio::time::sleep_until(synced + MAX_STALENESS - Duration::from_millis(1)).await;
        assert_eq!(denylist.freshness(), Freshness::Fresh, "within the bound");
        assert_eq!(denylist.freshness_changed(Freshness::Fresh).await, Freshness::Stale);
        let age = synced.elapsed();
        assert!(
            (MAX_STALENESS..=MAX_STALENESS + Duration::from_millis(1)).contains(&age),
            "stale after {age:?}"
        );
        assert!(denylist.contains("revoked"), "the last list stays in force meanwhile");
        server.set_down(false);
        let back = Instant::now();
        assert_eq!(denylist.freshness_changed(Freshness::Stale).await, Freshness::Fresh);
        assert!(back.elapsed() <= INTERVAL + FETCH, "fresh after {:?}", back.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn before_the_first_sync_the_list_is_not_loaded_however_long_that_takes() {
        let server = Server::default();
        server.set_down(true);
        let (denylist, _task) = Denylist::spawn_from(server.clone(), INTERVAL, MAX_STALENESS);
        tokio::time::sleep(MAX_STALENESS * 4).await;
        // Not "stale": there is nothing to be stale. Still refused.
        assert_eq!(denylist.freshness(), Freshness::NotLoaded);
        server.set_down(false);
        assert_eq!(denylist.freshness_changed(Freshness::NotLoaded).await, Freshness::Fresh);
        // A fixed list counts as loaded, and never turns stale.
        let fixed = Denylist::fixed([]);
        tokio::time::sleep(HOUR * 24).await;
        assert_eq!(fixed.freshness(), Freshness::Fresh);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sync_past_the_entry_or_the_page_cap_fails_and_takes_nothing() {
        let limits = SyncLimits { entries: 5, pages: 3 };
        let mut server = Server::default().with_page_size(2);
        for jti in ["a", "b", "c", "d", "e"] {
            server.revoke(jti);
        }
        // Exactly at both caps: three pages, five entries.
        assert_eq!(fetch_all(&mut server, limits).await.unwrap().len(), 5);
        server.revoke("f");
        let over = fetch_all(&mut server, limits).await.unwrap_err();
        assert!(matches!(over, SyncError::Oversized("too many entries")), "{over:?}");
        assert!(!over.is_transient(), "the same list would be refused again");
        server.revoke("g");
        let limits = SyncLimits { entries: 100, ..limits };
        let over = fetch_all(&mut server, limits).await.unwrap_err();
        assert!(matches!(over, SyncError::Oversized("too many pages")), "{over:?}");
        assert_eq!(server.pages(), 3, "no page past the cap is asked for");
    }
}
