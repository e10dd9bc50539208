//! Serving a protected gRPC API: health and reflection (open), the service's own
//! routes (behind the token guard), readiness tied to the signing keys and the
//! denylist's freshness, and a graceful stop. Shared by every protected service
//! so they behave alike.

use std::future::Future;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::server::Router;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::layer::util::{Identity, Stack};

use crate::auth::{AuthLayer, ScopePolicy};
use crate::limits::{GrpcLimits, limited_incoming};
use crate::probe::ProbeListener;
use crate::protect::{TokenGuard, TokenValidationConfig};
use crate::revocation::{Denylist, Freshness};
use crate::tls::{ClientTls, Listener, ServerTls, TlsConfig, tls_incoming};
use tollgate_telemetry::propagation::{Protocol, TraceLayer};

/// A protected API's listener, bound, with its token guard started: what every
/// protected service builds before serving its routes.
#[derive(Debug)]
pub struct ProtectedListener {
    listener: TcpListener,
    addr: std::net::SocketAddr,
    guard: TokenGuard,
    drain: std::time::Duration,
    limits: GrpcLimits,
    tls: Option<ServerTls>,
    probe: Option<ProbeListener>,
}

impl ProtectedListener {
    /// Starts the token guard (`policy`, tokens for `default_audience` unless
    /// configured otherwise) and binds `addr` (port 0 picks a free port), to
    /// serve TLS only when `tls` has a certificate.
    pub async fn bind(
        service: &'static str,
        addr: std::net::SocketAddr,
        tokens: &TokenValidationConfig,
        default_audience: &str,
        policy: ScopePolicy,
        clock: std::sync::Arc<dyn tollgate_token::Clock>,
        tls: &TlsConfig,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let server_tls = ServerTls::from_config(tls, Listener::Grpc).context("loading TLS_*")?;
        let client_tls = ClientTls::from_config(tls).context("loading TLS_*")?;
        let guard =
            TokenGuard::start(service, tokens, default_audience, policy, clock, &client_tls)
                .context("starting the token guard")?;
        let listener = TcpListener::bind(addr).await.context("binding gRPC")?;
        let addr = listener.local_addr()?;
        Ok(Self {
            listener,
            addr,
            guard,
            drain: std::time::Duration::ZERO,
            limits: GrpcLimits::default(),
            tls: server_tls,
            probe: None,
        })
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// The probe listener's address, if it has one ([`crate::probe`]).
    pub fn probe_addr(&self) -> Option<std::net::SocketAddr> {
        self.probe.as_ref().and_then(|probe| probe.addr().ok())
    }

    /// The listener's TLS, if it has a certificate.
    pub fn tls(&self) -> Option<&ServerTls> {
        self.tls.as_ref()
    }

    /// The token guard's state: keys, denylist, access log. Test support only.
    #[cfg(feature = "test-support")]
    pub fn guard(&self) -> &TokenGuard {
        &self.guard
    }

    /// The benchmark's baseline: every protected call admitted as `caller`,
    /// no token checked ([`AuthLayer::admitting_everyone_as`]).
    #[cfg(feature = "bench")]
    pub fn without_token_checks(mut self, caller: crate::auth::AuthContext) -> Self {
        self.guard.layer = self.guard.layer.admitting_everyone_as(caller);
        self
    }

    /// How long to keep serving, health NOT_SERVING, once told to stop
    /// (none by default; see [`crate::shutdown::stop_sequence`]).
    pub fn with_drain(mut self, drain: std::time::Duration) -> Self {
        self.drain = drain;
        self
    }

    /// Also serves health on `probe` ([`crate::probe`]).
    pub fn with_probe(mut self, probe: Option<ProbeListener>) -> Self {
        self.probe = probe;
        self
    }

    /// The listener's limits (the defaults otherwise).
    pub fn with_limits(mut self, limits: GrpcLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Serves `routes` until `shutdown` (see [`serve_protected`]); `routes` is
    /// given the limits to set on its services' messages.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        routes: impl FnOnce(ProtectedRouter, &GrpcLimits) -> ProtectedRouter,
    ) -> anyhow::Result<()> {
        let limits = self.limits;
        serve_protected(
            self.listener,
            self.tls,
            self.probe,
            self.guard,
            shutdown,
            self.drain,
            &limits,
            |router| routes(router, &limits),
        )
        .await
    }
}

/// The router type the services add their routes to.
pub type ProtectedRouter = Router<Stack<AuthLayer, Stack<TraceLayer, Identity>>>;

/// Serves until `shutdown` resolves. Health says NOT_SERVING until the signing
/// keys have been fetched once (before that every token would be refused) and the
/// revocation denylist once (before that a revoked token would be accepted),
/// while the denylist is stale (revocations since its last sync are unknown
/// here; [`Freshness`]), and again first thing on shutdown, `drain` before the
/// listener closes and the calls in flight are finished
/// ([`crate::shutdown::stop_sequence`]). With `tls`, every connection is TLS
/// (and mutual TLS when it has a client CA); without, plaintext. With `probe`,
/// the same health is also served there ([`crate::probe`]).
#[allow(clippy::too_many_arguments)]
pub async fn serve_protected(
    listener: TcpListener,
    tls: Option<ServerTls>,
    probe: Option<ProbeListener>,
    guard: TokenGuard,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: std::time::Duration,
    limits: &GrpcLimits,
    routes: impl FnOnce(ProtectedRouter) -> ProtectedRouter,
) -> anyhow::Result<()> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter.set_service_status("", ServingStatus::NotServing).await;
    let (reflection_v1, reflection_v1alpha) = crate::reflection()?;

    let jwks = guard.jwks.clone();
    let readiness = spawn_readiness(
        async move { jwks.ready().await },
        guard.denylist.clone(),
        reporter.clone(),
    );
    let stop_readiness = readiness.abort_handle();
    let probe_reporter = reporter.clone();
    let stopping = crate::shutdown::stop_sequence(
        readiness_stopped_after(shutdown, readiness),
        reporter,
        vec![],
        drain,
    );
    let probe = match probe {
        Some(probe) => Some(probe.serve(&probe_reporter, stopping.clone().listeners_close()).await),
        None => None,
    };

    // Outermost the trace (the caller's context, the server span, latency), then
    // the token check, whose span nests inside it.
    let router = limits
        .server()
        .layer(TraceLayer::new(guard.service, Protocol::Grpc))
        .layer(guard.layer.clone())
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let router = routes(router);
    let incoming = limited_incoming(listener, limits.max_connections);
    let close = stopping.listeners_close();
    let result = match tls {
        None => router.serve_with_incoming_shutdown(incoming, close).await,
        Some(tls) => router.serve_with_incoming_shutdown(tls_incoming(incoming, tls), close).await,
    };
    stop_readiness.abort();
    guard.stop();
    // The probe listener closed with this one; nothing it serves outlives a call.
    if let Some(probe) = probe {
        probe.abort();
    }
    Ok(result?)
}

/// Sets health from the keys and the denylist: NOT_SERVING until `keys_loaded`
/// resolves and the denylist has synced once, then SERVING while the denylist
/// is fresh and NOT_SERVING while it is stale, for as long as it runs.
fn spawn_readiness(
    keys_loaded: impl Future<Output = ()> + Send + 'static,
    denylist: Denylist,
    health: HealthReporter,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        keys_loaded.await;
        let mut freshness = Freshness::NotLoaded;
        let mut served = false;
        loop {
            freshness = denylist.freshness_changed(freshness).await;
            let status = match freshness {
                Freshness::Fresh if served => {
                    tracing::info!("denylist synced again; serving");
                    ServingStatus::Serving
                }
                Freshness::Fresh => {
                    tracing::info!("signing keys and denylist loaded; serving");
                    served = true;
                    ServingStatus::Serving
                }
                Freshness::Stale => {
                    tracing::warn!(
                        "no denylist sync has succeeded within OAUTH_REVOCATION_MAX_STALENESS: \
                         refusing protected calls, NOT_SERVING until one does"
                    );
                    ServingStatus::NotServing
                }
                Freshness::NotLoaded => ServingStatus::NotServing,
            };
            health.set_service_status("", status).await;
        }
    })
}

/// `shutdown`, and then `readiness` stopped and finished, so that once the stop
/// sequence has set NOT_SERVING no later sync can set SERVING again during
/// the drain.
async fn readiness_stopped_after(shutdown: impl Future<Output = ()>, readiness: JoinHandle<()>) {
    shutdown.await;
    readiness.abort();
    let _ = readiness.await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;
    use tokio_stream::StreamExt as _;
    use tonic_health::pb::health_server::Health as _;
    use tonic_health::pb::{HealthCheckRequest, health_check_response};
    use tonic_health::server::HealthService;

    use super::*;
    use crate::revocation::stand_in::{FETCH, Server};

    const INTERVAL: Duration = Duration::from_secs(5);
    const MAX_STALENESS: Duration = Duration::from_secs(30);
    const DRAIN: Duration = Duration::from_secs(10);

    /// The overall (`""`) status as health-checking clients see it.
    struct Watcher {
        health: HealthService,
        updates: tonic_health::server::WatchStream,
    }

    impl Watcher {
        async fn new(reporter: &HealthReporter) -> Self {
            let health = HealthService::from_health_reporter(reporter.clone());
            let updates = health.watch(overall()).await.unwrap().into_inner();
            Self { health, updates }
        }

        async fn now(&self) -> health_check_response::ServingStatus {
            self.health.check(overall()).await.unwrap().into_inner().status()
        }

        /// Waits until the status is `status`.
        async fn until(&mut self, status: health_check_response::ServingStatus) {
            while self.updates.next().await.unwrap().unwrap().status() != status {}
        }
    }

    fn overall() -> tonic::Request<HealthCheckRequest> {
        tonic::Request::new(HealthCheckRequest { service: String::new() })
    }

    // On tokio's paused clock, as the denylist's own tests.
    #[tokio::test(start_paused = true)]
    async fn health_follows_the_denylist_and_stays_not_serving_once_stopping() {
        use health_check_response::ServingStatus::{NotServing, Serving};
        let server = Server::default();
        server.set_down(true);
        let (denylist, _task) = Denylist::spawn_from(server.clone(), INTERVAL, MAX_STALENESS);
        let reporter = HealthReporter::new();
        reporter.set_service_status("", ServingStatus::NotServing).await;
        let mut health = Watcher::new(&reporter).await;
        let readiness = spawn_readiness(async {}, denylist.clone(), reporter.clone());
        let (stop, stop_signal) = tokio::sync::oneshot::channel::<()>();
        let stopping = crate::shutdown::stop_sequence(
            readiness_stopped_after(
                async {
                    let _ = stop_signal.await;
                },
                readiness,
            ),
            reporter.clone(),
            vec![],
            DRAIN,
        );

        // Never synced: NOT_SERVING, however long.
        tokio::time::sleep(MAX_STALENESS * 2).await;
        assert_eq!(health.now().await, NotServing);
        server.set_down(false);
        health.until(Serving).await;
        let synced = Instant::now() - FETCH;

        // No sync succeeds for the bound: NOT_SERVING, at the bound exactly.
        server.set_down(true);
        health.until(NotServing).await;
        let age = synced.elapsed();
        assert!(
            (MAX_STALENESS..=MAX_STALENESS + Duration::from_millis(1)).contains(&age),
            "NOT_SERVING after {age:?}"
        );
        // A sync succeeds again: SERVING, without a restart.
        server.set_down(false);
        health.until(Serving).await;

        // Stale again, then told to stop; during the drain a sync succeeds,
        // and health stays NOT_SERVING.
        server.set_down(true);
        health.until(NotServing).await;
        stop.send(()).unwrap();
        server.set_down(false);
        denylist.sync_now().await.unwrap();
        assert_eq!(denylist.freshness(), Freshness::Fresh);
        stopping.listeners_close().await;
        assert_eq!(health.now().await, NotServing, "health turned SERVING during the drain");
    }
}
