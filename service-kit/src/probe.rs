//! The probe listener: a plaintext port that serves nothing but the gRPC health
//! service, for Kubernetes' native gRPC probes.
//!
//! Every API listener here is TLS, the internal ones mutual TLS, and the
//! kubelet's gRPC probe speaks plaintext only (TLS probes are alpha in 1.37
//! and carry no client certificate). So a service started with `PROBE_ADDR`
//! also serves `grpc.health.v1` on that address, from the same health reporter
//! as its API listener:
//!
//! - service `""` is readiness: exactly what the API listener reports (keys
//!   loaded, denylist fresh, NOT_SERVING from the first moment of a shutdown);
//! - service [`LIVENESS`] is liveness: SERVING for as long as the process
//!   serves at all. It never follows readiness, so a pod whose denylist went
//!   stale is taken out of rotation, not restarted.
//!
//! Only health's `Check` is on this port (no `Watch`, no reflection, no API,
//! no token), so plaintext exposes nothing but those two statuses, and every
//! call ends within [`PROBE_TIMEOUT`]: nothing held open can fill the port or
//! hold up a stop. It closes with the API listener, after the drain.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::limits::limited_incoming;

/// The health service name the liveness probe asks for.
pub const LIVENESS: &str = "liveness";

/// At most this many probe connections at once (the kubelet opens one per
/// probe; anything more is not a kubelet).
pub const MAX_PROBE_CONNECTIONS: usize = 8;

/// A probe answers within this, or the call fails (the kubelet's own default
/// `timeoutSeconds` is 1).
pub const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// A probe connection idle this long is closed (the kubelet opens one per probe).
pub const PROBE_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

/// The probe listener's setting, the same in every service.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ProbeConfig {
    /// Address of a plaintext listener serving only the gRPC health service
    /// (`""` readiness, `liveness` liveness), for Kubernetes' native gRPC
    /// probes. Off unless set.
    #[arg(long, env = "PROBE_ADDR")]
    pub probe_addr: Option<SocketAddr>,
}

/// A bound probe listener, not yet serving.
#[derive(Debug)]
pub struct ProbeListener {
    listener: TcpListener,
}

impl ProbeListener {
    /// Binds `config.probe_addr`, if set.
    pub async fn bind(config: &ProbeConfig) -> anyhow::Result<Option<Self>> {
        let Some(addr) = config.probe_addr else { return Ok(None) };
        let listener = TcpListener::bind(addr).await.context("binding PROBE_ADDR")?;
        tracing::info!(addr = %listener.local_addr()?, "probe listener bound (gRPC health only, plaintext)");
        Ok(Some(Self { listener }))
    }

    pub fn addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Marks [`LIVENESS`] SERVING and serves `Check` on the statuses of
    /// `reporter` (the API listener's) until `close` resolves. The caller
    /// aborts the task once its API listener has stopped.
    pub async fn serve(
        self,
        reporter: &tonic_health::server::HealthReporter,
        close: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        use tonic_health::pb::health_server::HealthServer;
        use tonic_health::server::HealthService;
        reporter.set_service_status(LIVENESS, tonic_health::ServingStatus::Serving).await;
        let health =
            HealthServer::new(CheckOnly(HealthService::from_health_reporter(reporter.clone())));
        let incoming = limited_incoming(self.listener, MAX_PROBE_CONNECTIONS);
        tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .timeout(PROBE_TIMEOUT)
                .max_concurrent_streams(1)
                .http2_keepalive_interval(Some(PROBE_IDLE))
                .http2_keepalive_timeout(Some(PROBE_TIMEOUT))
                .max_connection_age(PROBE_IDLE)
                .add_service(health)
                .serve_with_incoming_shutdown(incoming, close)
                .await;
            if let Err(err) = served {
                tracing::error!(error = %err, "probe listener failed");
            }
        })
    }
}

/// The health service with `Check` only: a `Watch` would be a stream held
/// open, on a port anyone in the cluster may reach.
struct CheckOnly(tonic_health::server::HealthService);

#[tonic::async_trait]
impl tonic_health::pb::health_server::Health for CheckOnly {
    async fn check(
        &self,
        request: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status> {
        self.0.check(request).await
    }

    type WatchStream =
        futures::stream::Empty<Result<tonic_health::pb::HealthCheckResponse, tonic::Status>>;

    async fn watch(
        &self,
        _: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("the probe port answers Check only"))
    }
}
