//! The HTTP listener: one accept loop for plain HTTP and TLS, with every limit
//! chosen here rather than left to a library default (docs/security.md,
//! "Limits").
//!
//! - at most `max_connections` connections at once: past it, new connections
//!   wait in the kernel's listen backlog instead of costing memory here;
//! - at most [`MAX_OPEN_PER_ADDRESS`] open for one address (IPv6: one /64;
//!   beyond it each request is answered `429` and the connection closed), and
//!   at most `requests_per_address` of that address's requests in hand at once:
//!   its other connections are not read until one is answered ([`Gated`]), or
//!   for at most half the header timeout: then the request is read and answered
//!   `429`, and the connection closed.
//!   This keeps one flooding address from filling the run queue: the server's
//!   work for it is bounded by the requests it may have in hand, so other
//!   callers' requests are not queued behind thousands of its own;
//! - a TLS handshake must finish within `tls_handshake_timeout`;
//! - request headers must arrive within `header_timeout`, which is also how long
//!   an idle keep-alive connection stays open (hyper starts the same timer
//!   whenever a connection waits for a request head), and may total at most
//!   [`MAX_HEADER_BYTES`] in at most [`MAX_HEADERS`] fields;
//! - the body size and the whole request's time are bounded by layers of the
//!   router ([`super::router`]).
//!
//! Over TLS every response carries `Strict-Transport-Security` ([`HSTS`]).
//!
//! Each request carries the peer's address ([`axum::extract::ConnectInfo`]), which
//! the per-address throttles key on.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::HeaderValue;
use axum::http::header::{CONNECTION, STRICT_TRANSPORT_SECURITY};
use axum::response::IntoResponse as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tollgate_service_kit::tls::ServerTls;
use tollgate_token::OAuthError;
use tower::ServiceExt as _;
use tower::util::BoxCloneService;

use crate::domain::PeerCertificate;
use crate::domain::throttle::address_key;

/// The most bytes of request line and headers hyper buffers for one request.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The most header fields one request may carry.
pub const MAX_HEADERS: usize = 64;
/// Connections one address may hold open.
pub const MAX_OPEN_PER_ADDRESS: usize = 1024;

/// The listener's limits (`AUTH_HTTP_*`, see the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub body_bytes: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub max_connections: usize,
    pub requests_per_address: usize,
}

/// Serves `router` (over TLS when `tls` is set) until `shutdown`, then lets the
/// requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<ServerTls>,
    router: axum::Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let addresses = Arc::new(Addresses::new(limits.requests_per_address));
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
        let ticket = addresses.admit(address_key(peer.ip()));
        // Small request/response exchanges: send each as soon as it is written.
        let _ = tcp.set_nodelay(true);
        let gate = Arc::new(Gate::new(
            ticket.as_ref().map(|t| t.serving.clone()),
            limits.header_timeout / 2,
        ));
        let tcp = Gated { stream: tcp, gate: gate.clone(), acquiring: None };
        let service = match &ticket {
            Some(_) => per_connection(router.clone(), peer, gate),
            None => too_many_open(),
        };
        let service = match tls {
            Some(_) => with_hsts(service),
            None => service,
        };
        let watcher = graceful.watcher();
        // The certificate current now: a reload changes only later connections.
        let acceptor = tls.as_ref().map(ServerTls::acceptor);
        let http1 = http1.clone();
        tokio::spawn(async move {
            let _slot = (slot, ticket);
            match acceptor {
                None => {
                    let service = TowerToHyperService::new(service);
                    serve_connection(&http1, tcp, service, watcher, peer).await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(tcp))
                        .await
                    {
                        Ok(Ok(tls)) => {
                            let certificate = client_certificate(&tls);
                            let service =
                                TowerToHyperService::new(with_certificate(service, certificate));
                            serve_connection(&http1, tls, service, watcher, peer).await
                        }
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

/// The router as one connection sees it: each request carries the peer's
/// address, and gives its address's place back once it is answered.
fn per_connection(router: axum::Router, peer: SocketAddr, gate: Arc<Gate>) -> ConnectionService {
    BoxCloneService::new(tower::service_fn(move |mut request: axum::http::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        let gate = gate.clone();
        async move {
            if gate.gave_up() {
                return refuse_and_close(request).await;
            }
            let response = router.oneshot(request).await;
            gate.release();
            response
        }
    }))
}

/// Whether a connection holds one of its address's places: taken when it has
/// bytes to read ([`Gated`]), given back when the request read is answered.
struct Gate {
    /// The address's places; `None`: not gated (a connection past the cap,
    /// answered at once).
    serving: Option<Arc<Semaphore>>,
    held: Mutex<Option<OwnedSemaphorePermit>>,
    /// How long a connection waits for a place: less than the header timeout,
    /// which would otherwise close it with its request unanswered.
    wait: Duration,
    /// It waited that long: its request is read without a place and answered
    /// `429`, and the connection closed.
    gave_up: AtomicBool,
}

impl Gate {
    fn new(serving: Option<Arc<Semaphore>>, wait: Duration) -> Self {
        Self { serving, held: Mutex::new(None), wait, gave_up: AtomicBool::new(false) }
    }

    fn holds(&self) -> bool {
        self.serving.is_none()
            || self.gave_up.load(Ordering::Relaxed)
            || self.held.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    fn gave_up(&self) -> bool {
        self.gave_up.load(Ordering::Relaxed)
    }

    fn hold(&self, place: OwnedSemaphorePermit) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = Some(place);
    }

    fn release(&self) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

type Acquiring = Pin<
    Box<
        dyn Future<
                Output = Result<
                    Result<OwnedSemaphorePermit, tokio::sync::AcquireError>,
                    tokio::time::error::Elapsed,
                >,
            > + Send,
    >,
>;

/// A connection's socket, read only while the connection holds one of its
/// address's places. Without one it waits for bytes to arrive without reading
/// them (an idle connection holds no place), then for a place: a flood of
/// requests from one address costs a wake-up each until its turn, not a parse.
struct Gated {
    stream: TcpStream,
    gate: Arc<Gate>,
    acquiring: Option<Acquiring>,
}

impl AsyncRead for Gated {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let mut taken_now = false;
        if !this.gate.holds() {
            ready!(this.stream.poll_read_ready(cx))?;
            if let Some(serving) = &this.gate.serving {
                let wait = this.gate.wait;
                let acquiring = this.acquiring.get_or_insert_with(|| {
                    Box::pin(tokio::time::timeout(wait, serving.clone().acquire_owned()))
                });
                let place = ready!(acquiring.as_mut().poll(cx));
                this.acquiring = None;
                match place {
                    Ok(Ok(place)) => {
                        this.gate.hold(place);
                        taken_now = true;
                    }
                    Ok(Err(_)) => {} // never closed
                    Err(_) => this.gate.gave_up.store(true, Ordering::Relaxed),
                }
            }
        }
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if taken_now && read.is_pending() {
            // Readiness is remembered from the last read, so it can be stale:
            // nothing to read after all. An idle connection gives the place back.
            this.gate.release();
        }
        read
    }
}

tollgate_service_kit::delegate_async_write!(Gated, stream);

/// What a connection past its address's [`MAX_OPEN_PER_ADDRESS`] is told:
/// `429` with `Retry-After`, then the connection closes. An answer rather than a
/// bare close, so a client that opened one connection too many sees a throttle,
/// not a transport error. The body is read first (bounded) so the close is
/// clean.
fn too_many_open() -> ConnectionService {
    BoxCloneService::new(tower::service_fn(refuse_and_close))
}

/// What serves one connection's requests.
type ConnectionService = BoxCloneService<
    axum::http::Request<Incoming>,
    axum::response::Response,
    std::convert::Infallible,
>;

/// The client certificate the connection presented, if any (its chain
/// verified by the handshake against the client CA).
fn client_certificate<IO>(tls: &tokio_rustls::server::TlsStream<IO>) -> Option<PeerCertificate> {
    let chain = tls.get_ref().1.peer_certificates()?;
    chain.first().map(|end_entity| PeerCertificate::from_der(end_entity))
}

/// Each request of the connection carries its client certificate (RFC 8705
/// client authentication at the endpoints that authenticate clients).
fn with_certificate(
    service: ConnectionService,
    certificate: Option<PeerCertificate>,
) -> ConnectionService {
    let Some(certificate) = certificate else { return service };
    BoxCloneService::new(service.map_request(move |mut request: axum::http::Request<Incoming>| {
        request.extensions_mut().insert(certificate.clone());
        request
    }))
}

/// Every answer over TLS says to use nothing else (RFC 6797 §7.1), whatever
/// produced it: a page, an endpoint, a listener limit. Never over plain HTTP
/// (§7.2), where it would mean nothing.
fn with_hsts(service: ConnectionService) -> ConnectionService {
    BoxCloneService::new(service.map_response(|mut response| {
        response.headers_mut().insert(STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
        response
    }))
}

/// One year; not `includeSubDomains`: the issuer's host says nothing for its
/// neighbours.
pub const HSTS: &str = "max-age=31536000";

/// `429` with `Retry-After`, the request's body read first (bounded) so the
/// close that follows is clean.
async fn refuse_and_close(
    request: axum::http::Request<Incoming>,
) -> Result<axum::response::Response, std::convert::Infallible> {
    let body = axum::body::Body::new(request.into_body());
    let _ = axum::body::to_bytes(body, MAX_REFUSED_BODY_READ).await;
    let refusal = OAuthError::too_many_requests(Duration::from_secs(1));
    let mut response = super::HttpError(refusal).into_response();
    response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    Ok(response)
}

/// The most of a refused request's body read before the refusal is sent.
pub const MAX_REFUSED_BODY_READ: usize = 64 * 1024;

/// The connections open per address, and the semaphore that bounds how many of
/// its requests are handled at once.
struct Addresses {
    requests_per_address: usize,
    open: Mutex<HashMap<String, Open>>,
}

/// One address's open connections and its places.
struct Open {
    connections: usize,
    serving: Arc<Semaphore>,
}

/// One open connection of an address; gives its place back when dropped.
struct Ticket {
    key: String,
    /// The places for this address's requests, shared by its connections.
    serving: Arc<Semaphore>,
    table: Arc<Addresses>,
}

impl Addresses {
    fn new(requests_per_address: usize) -> Self {
        Self { requests_per_address: requests_per_address.max(1), open: Mutex::new(HashMap::new()) }
    }

    /// A place for one more connection of `key`, unless it has
    /// [`MAX_OPEN_PER_ADDRESS`] open already.
    fn admit(self: &Arc<Self>, key: String) -> Option<Ticket> {
        let mut table = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let open = table.entry(key.clone()).or_insert_with(|| Open {
            connections: 0,
            serving: Arc::new(Semaphore::new(self.requests_per_address)),
        });
        if open.connections >= MAX_OPEN_PER_ADDRESS {
            return None;
        }
        open.connections += 1;
        Some(Ticket { key, serving: open.serving.clone(), table: self.clone() })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut table = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        // The last one out removes the entry.
        if let Some(open) = table.get_mut(&self.key) {
            open.connections -= 1;
            if open.connections == 0 {
                table.remove(&self.key);
            }
        }
    }
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
