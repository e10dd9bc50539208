//! Client-side load balancing over every replica a name resolves to.
//!
//! gRPC runs over HTTP/2, which keeps one long-lived connection per client, so
//! a load balancer that spreads *connections* (a Kubernetes ClusterIP Service,
//! round-robin DNS) sends all of one caller's calls to one replica. Here the
//! caller spreads the *calls* itself:
//!
//! - The name is resolved every [`RESOLVE_INTERVAL`] (a headless Service or
//!   compose's DNS answers with one address per ready replica); each address
//!   gets its own lazily connected channel, still verifying the certificate
//!   against the name (never the address).
//! - Each channel watches its replica's gRPC health (`grpc.health.v1` Watch,
//!   service `""`). A replica that turns NOT_SERVING (it is draining before a
//!   shutdown, or its denylist is stale) or cannot be reached gets no new
//!   calls until it is SERVING again.
//! - Calls go round-robin over the SERVING replicas. While none is (the first
//!   moments, or every replica draining at once), a call waits up to
//!   [`READY_WAIT`] for one, then goes to any, so it fails with that replica's
//!   own status rather than with none.
//!
//! A call in flight when its replica goes away fails with the replica's
//! error; only new calls move. Calls are never retried here: a request body
//! is a stream, and a write is not always safe to repeat.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{Notify, watch};
use tokio::task::AbortHandle;
use tonic::body::Body;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tower::ServiceExt as _;

use crate::tls::GrpcTarget;

/// How often the name is resolved again.
pub const RESOLVE_INTERVAL: Duration = Duration::from_secs(5);

/// At most this many replicas are used (the first addresses, in the
/// resolver's order); more are ignored.
pub const MAX_ENDPOINTS: usize = 64;

/// How long a call waits for a SERVING replica before trying any.
pub const READY_WAIT: Duration = Duration::from_secs(2);

/// How long a replica's health is watched again after its watch ends.
const HEALTH_RETRY: Duration = Duration::from_secs(1);

type Resolve = Arc<dyn Fn() -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> + Send + Sync>;

/// A gRPC channel that balances calls over every SERVING replica of a name
/// (the module's documentation). Cheap to clone; the background work stops
/// when the last clone is dropped.
#[derive(Clone)]
pub struct Balanced {
    shared: Arc<Shared>,
}

struct Shared {
    /// The name, for errors and logs.
    name: String,
    replicas: watch::Receiver<Arc<[Arc<Replica>]>>,
    /// Told whenever a replica turns SERVING.
    serving: Arc<Notify>,
    next: AtomicUsize,
    resolver: AbortHandle,
    /// Ask the resolver to resolve now (tests, and a call that found none).
    refresh: Arc<Notify>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.resolver.abort();
    }
}

struct Replica {
    addr: SocketAddr,
    channel: Channel,
    health: watch::Receiver<Option<bool>>,
    watcher: AbortHandle,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl Replica {
    fn start(target: &GrpcTarget, addr: SocketAddr, serving: Arc<Notify>) -> Self {
        let channel = target.clone().via(addr).connect_lazy();
        let (tx, health) = watch::channel(None);
        let watcher = tokio::spawn(watch_health(channel.clone(), tx, serving)).abort_handle();
        Self { addr, channel, health, watcher }
    }

    fn serving(&self) -> Option<bool> {
        *self.health.borrow()
    }
}

/// Follows a replica's health for as long as it is a member: a Watch stream
/// while it is SERVING, then, once it is not (or cannot be reached), a Check
/// every [`HEALTH_RETRY`] until it is again. No stream is held open to a
/// replica that is not SERVING: a draining server's graceful stop waits for
/// the streams still open, and must not wait for this one.
async fn watch_health(channel: Channel, health: watch::Sender<Option<bool>>, serving: Arc<Notify>) {
    let set = |now: bool| {
        health.send_if_modified(|was| {
            let changed = *was != Some(now);
            *was = Some(now);
            changed
        });
        if now {
            serving.notify_waiters();
        }
    };
    let overall = || HealthCheckRequest { service: String::new() };
    let mut client = HealthClient::new(channel);
    loop {
        match client.watch(overall()).await {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                while let Ok(Some(update)) = stream.message().await {
                    if update.status() != ServingStatus::Serving {
                        break;
                    }
                    set(true);
                }
                set(false);
            }
            // A server without the health service: its calls decide.
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                set(true);
                return;
            }
            Err(_) => set(false),
        }
        loop {
            tokio::time::sleep(HEALTH_RETRY).await;
            match client.check(overall()).await {
                Ok(reply) if reply.get_ref().status() == ServingStatus::Serving => break,
                _ => set(false),
            }
        }
    }
}

impl Balanced {
    /// Balances over the addresses `target`'s host resolves to, resolved
    /// again every `interval`.
    pub fn new(target: GrpcTarget, interval: Duration) -> Self {
        let (host, port) = (target.host().to_owned(), target.port());
        let resolve: Resolve = Arc::new(move || {
            let (host, port) = (host.clone(), port);
            Box::pin(
                async move { Ok(tokio::net::lookup_host((host.as_str(), port)).await?.collect()) },
            )
        });
        Self::with_resolver(target, resolve, interval)
    }

    /// Balances over what `resolve` returns (tests give a list of their own).
    pub fn with_resolver(target: GrpcTarget, resolve: Resolve, interval: Duration) -> Self {
        let name = format!("{}:{}", target.host(), target.port());
        let (tx, replicas) = watch::channel::<Arc<[Arc<Replica>]>>(Arc::from(Vec::new()));
        let serving = Arc::new(Notify::new());
        let refresh = Arc::new(Notify::new());
        let resolver = tokio::spawn(resolve_loop(
            target,
            resolve,
            interval,
            tx,
            serving.clone(),
            refresh.clone(),
            name.clone(),
        ))
        .abort_handle();
        Self {
            shared: Arc::new(Shared {
                name,
                replicas,
                serving,
                next: AtomicUsize::new(0),
                resolver,
                refresh,
            }),
        }
    }

    /// The replicas in use and whether each is SERVING (`None`: not known yet).
    pub fn replicas(&self) -> Vec<(SocketAddr, Option<bool>)> {
        self.shared.replicas.borrow().iter().map(|r| (r.addr, r.serving())).collect()
    }

    /// Resolves the name again now, and waits until the result is in use.
    pub async fn refresh(&self) {
        let mut replicas = self.shared.replicas.clone();
        replicas.mark_unchanged();
        self.shared.refresh.notify_one();
        let _ = replicas.changed().await;
    }

    /// The next SERVING replica's channel, round-robin; `None` if none is.
    fn pick_serving(&self) -> Option<Channel> {
        let replicas = self.shared.replicas.borrow().clone();
        let serving: Vec<_> = replicas.iter().filter(|r| r.serving() == Some(true)).collect();
        if serving.is_empty() {
            return None;
        }
        let next = self.shared.next.fetch_add(1, Ordering::Relaxed);
        Some(serving[next % serving.len()].channel.clone())
    }

    /// Any replica's channel, preferring those whose health is not known yet.
    fn pick_any(&self) -> Option<Channel> {
        let replicas = self.shared.replicas.borrow().clone();
        let start = self.shared.next.fetch_add(1, Ordering::Relaxed);
        let order = (0..replicas.len()).map(|i| &replicas[(start + i) % replicas.len()]);
        let mut fallback = None;
        for replica in order {
            match replica.serving() {
                Some(true) | None => return Some(replica.channel.clone()),
                Some(false) => fallback = fallback.or(Some(replica)),
            }
        }
        fallback.map(|r| r.channel.clone())
    }

    async fn channel(self) -> Result<Channel, tower::BoxError> {
        if let Some(channel) = self.pick_serving() {
            return Ok(channel);
        }
        // None SERVING: wait a little for one (or for the first resolution).
        let waited = tokio::time::timeout(READY_WAIT, async {
            loop {
                let notified = self.shared.serving.notified();
                let mut replicas = self.shared.replicas.clone();
                if let Some(channel) = self.pick_serving() {
                    return channel;
                }
                tokio::select! {
                    () = notified => {}
                    _ = replicas.changed() => {}
                }
            }
        })
        .await;
        match waited {
            Ok(channel) => Ok(channel),
            Err(_) => self.pick_any().ok_or_else(|| {
                self.shared.refresh.notify_one();
                Box::new(tonic::Status::unavailable(format!(
                    "no address for {} could be resolved",
                    self.shared.name
                ))) as tower::BoxError
            }),
        }
    }
}

impl fmt::Debug for Balanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balanced")
            .field("name", &self.shared.name)
            .field("replicas", &self.replicas())
            .finish()
    }
}

async fn resolve_loop(
    target: GrpcTarget,
    resolve: Resolve,
    interval: Duration,
    replicas: watch::Sender<Arc<[Arc<Replica>]>>,
    serving: Arc<Notify>,
    refresh: Arc<Notify>,
    name: String,
) {
    let mut failing = false;
    loop {
        match resolve().await {
            Ok(mut addrs) if !addrs.is_empty() => {
                failing = false;
                // In a stable order: DNS servers shuffle their answers.
                addrs.sort_unstable();
                addrs.dedup();
                addrs.truncate(MAX_ENDPOINTS);
                let current = replicas.borrow().clone();
                let same = current.len() == addrs.len()
                    && current.iter().zip(&addrs).all(|(r, a)| r.addr == *a);
                if same {
                    // Unchanged; still tell a `refresh` waiting for the result.
                    replicas.send_modify(|_| {});
                } else {
                    let next: Vec<Arc<Replica>> = addrs
                        .iter()
                        .map(|addr| match current.iter().find(|r| r.addr == *addr) {
                            Some(kept) => kept.clone(),
                            None => Arc::new(Replica::start(&target, *addr, serving.clone())),
                        })
                        .collect();
                    tracing::info!(%name, replicas = ?addrs, "replicas resolved");
                    replicas.send_replace(Arc::from(next));
                }
            }
            // Keep what was resolved last: a DNS hiccup must not empty the set.
            outcome => {
                if !failing {
                    match outcome {
                        Err(error) => {
                            tracing::warn!(%name, %error, "resolving failed; keeping the last addresses");
                        }
                        Ok(_) => tracing::warn!(
                            %name,
                            "the name resolves to no address; keeping the last ones"
                        ),
                    }
                }
                failing = true;
                // Still tell a `refresh` waiting for the outcome.
                replicas.send_modify(|_| {});
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = refresh.notified() => {}
        }
    }
}

impl tower::Service<http::Request<Body>> for Balanced {
    type Response = http::Response<Body>;
    type Error = tower::BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each call waits for its own replica's channel in its future.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let balanced = self.clone();
        Box::pin(async move {
            let channel = balanced.channel().await?;
            Ok(channel.oneshot(request).await?)
        })
    }
}
