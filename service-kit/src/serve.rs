//! Serving a protected gRPC API: health and reflection (open), the service's own
//! routes (behind the token guard), readiness tied to the signing keys, and a
//! graceful stop. Shared by every protected service so they behave alike.

use std::future::Future;

use tokio::net::TcpListener;
use tonic::transport::server::Router;
use tonic_health::ServingStatus;
use tower::layer::util::{Identity, Stack};

use crate::auth::{AuthLayer, ScopePolicy};
use crate::limits::{GrpcLimits, limited_incoming};
use crate::protect::{TokenGuard, TokenValidationConfig};
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
}

impl ProtectedListener {
    /// Starts the token guard (`policy`, tokens for `default_audience` unless
    /// configured otherwise) and binds `addr` (port 0 picks a free port).
    pub async fn bind(
        service: &'static str,
        addr: std::net::SocketAddr,
        tokens: &TokenValidationConfig,
        default_audience: &str,
        policy: ScopePolicy,
        clock: std::sync::Arc<dyn tollgate_token::Clock>,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let guard = TokenGuard::start(service, tokens, default_audience, policy, clock)
            .context("the authorization server's gRPC URL")?;
        let listener = TcpListener::bind(addr).await.context("binding gRPC")?;
        let addr = listener.local_addr()?;
        Ok(Self {
            listener,
            addr,
            guard,
            drain: std::time::Duration::ZERO,
            limits: GrpcLimits::default(),
        })
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// The token guard's state: keys, denylist, access log. Test support only.
    #[cfg(feature = "test-support")]
    pub fn guard(&self) -> &TokenGuard {
        &self.guard
    }

    /// How long to keep serving, health NOT_SERVING, once told to stop
    /// (none by default; see [`crate::shutdown::stop_sequence`]).
    pub fn with_drain(mut self, drain: std::time::Duration) -> Self {
        self.drain = drain;
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
        serve_protected(self.listener, self.guard, shutdown, self.drain, &limits, |router| {
            routes(router, &limits)
        })
        .await
    }
}

/// The router type the services add their routes to.
pub type ProtectedRouter = Router<Stack<AuthLayer, Stack<TraceLayer, Identity>>>;

/// Serves until `shutdown` resolves. Health says NOT_SERVING until the signing
/// keys have been fetched once (before that every token would be refused) and the
/// revocation denylist once (before that a revoked token would be accepted), and
/// again first thing on shutdown, `drain` before the listener closes and the
/// calls in flight are finished ([`crate::shutdown::stop_sequence`]).
pub async fn serve_protected(
    listener: TcpListener,
    guard: TokenGuard,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: std::time::Duration,
    limits: &GrpcLimits,
    routes: impl FnOnce(ProtectedRouter) -> ProtectedRouter,
) -> anyhow::Result<()> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter.set_service_status("", ServingStatus::NotServing).await;
    let (reflection_v1, reflection_v1alpha) = crate::reflection()?;

    let ready_reporter = reporter.clone();
    let jwks = guard.jwks.clone();
    let denylist = guard.denylist.clone();
    let ready = tokio::spawn(async move {
        jwks.ready().await;
        denylist.ready().await;
        tracing::info!("signing keys and denylist loaded; serving");
        ready_reporter.set_service_status("", ServingStatus::Serving).await;
    });

    let stopping = crate::shutdown::stop_sequence(shutdown, reporter, vec![], drain);

    // Outermost the trace (the caller's context, the server span, latency), then
    // the token check, whose span nests inside it.
    let router = limits
        .server()
        .layer(TraceLayer::new(guard.service, Protocol::Grpc))
        .layer(guard.layer.clone())
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let result = routes(router)
        .serve_with_incoming_shutdown(
            limited_incoming(listener, limits.max_connections),
            stopping.listeners_close(),
        )
        .await;
    ready.abort();
    guard.stop();
    Ok(result?)
}
