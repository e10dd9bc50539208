//! The HTTP listener: one accept loop for plain HTTP and TLS, with every limit
//! chosen here rather than left to a library default (docs/security.md,
//! "Limits").
//!
//! - at most `max_connections` connections at once: past it, new connections
//!   wait in the kernel's listen backlog instead of costing memory here;
//! - a TLS handshake must finish within `tls_handshake_timeout`;
//! - request headers must arrive within `header_timeout`, which is also how long
//!   an idle keep-alive connection stays open (hyper starts the same timer
//!   whenever a connection waits for a request head), and may total at most
//!   [`MAX_HEADER_BYTES`] in at most [`MAX_HEADERS`] fields;
//! - the body size and the whole request's time are bounded by layers of the
//!   router ([`super::router`]).
//!
//! Each request carries the peer's address ([`axum::extract::ConnectInfo`]), which
//! the per-address throttles key on.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

/// The most bytes of request line and headers hyper buffers for one request.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The most header fields one request may carry.
pub const MAX_HEADERS: usize = 64;

/// The listener's limits (`AUTH_HTTP_*`, see the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub body_bytes: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `router` (over TLS when `tls` is set) until `shutdown`, then lets the
/// requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    router: axum::Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS);
    tokio::pin!(shutdown);
    loop {
        // A connection slot before the next accept: at the limit, connections
        // queue in the backlog, not in this process.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed
            },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, usually: back off a little.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small request/response exchanges: send each as soon as it is written.
        let _ = tcp.set_nodelay(true);
        let service =
            router.clone().map_request(move |mut request: axum::http::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let service = TowerToHyperService::new(service);
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        let http1 = http1.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match acceptor {
                None => serve_connection(&http1, tcp, service, watcher, peer).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(tcp))
                        .await
                    {
                        Ok(Ok(tls)) => serve_connection(&http1, tls, service, watcher, peer).await,
                        // A failed or stalled handshake is the peer's problem.
                        Ok(Err(err)) => tracing::debug!(error = %err, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}

async fn serve_connection<IO, S>(
    http1: &hyper::server::conn::http1::Builder,
    io: IO,
    service: TowerToHyperService<S>,
    watcher: Watcher,
    peer: SocketAddr,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<axum::http::Request<Incoming>, Response = axum::response::Response>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = http1.serve_connection(TokioIo::new(io), service);
    if let Err(err) = watcher.watch(connection).await {
        tracing::debug!(error = %err, %peer, "connection ended with an error");
    }
}
