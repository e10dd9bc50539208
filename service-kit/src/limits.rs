//! The gRPC listener's limits, chosen here rather than left to tonic's and h2's
//! defaults (some of which are "unlimited"), the same for every service
//! (docs/security.md, "Limits").
//!
//! - connections: at most `max_connections` at once; past it new connections
//!   wait in the kernel's listen backlog ([`limited_incoming`]);
//! - per connection: at most `max_concurrent_streams` calls at once (HTTP/2
//!   `SETTINGS_MAX_CONCURRENT_STREAMS`), headers of at most
//!   [`MAX_HEADER_LIST_BYTES`];
//! - per call: at most `request_timeout` (then `CANCELLED`), a request message
//!   of at most `max_message_bytes` (then `OUT_OF_RANGE`, before the
//!   handler runs), a response message of at most [`MAX_RESPONSE_BYTES`];
//! - idle or dead peers: HTTP/2 pings every [`KEEPALIVE_INTERVAL`], dropped
//!   when unanswered for [`KEEPALIVE_TIMEOUT`].

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};

pub const DEFAULT_MAX_CONNECTIONS: usize = 4_096;
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 256;
pub const DEFAULT_REQUEST_TIMEOUT: u64 = 30;
/// Every request message of the platform's APIs is a few KiB at most.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// The largest response message: a page of the denylist, a list of notes.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// The most bytes of headers (metadata) one call may send: an access token
/// and trace context fit many times over.
pub const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The limits (`GRPC_*`; each service runs in its own environment).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct GrpcLimits {
    /// gRPC connections open at once.
    #[arg(long, env = "GRPC_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Calls in flight at once on one connection.
    #[arg(long, env = "GRPC_MAX_CONCURRENT_STREAMS", default_value_t = DEFAULT_MAX_CONCURRENT_STREAMS)]
    pub max_concurrent_streams: u32,
    /// Seconds one call may take.
    #[arg(long = "grpc-request-timeout", env = "GRPC_REQUEST_TIMEOUT", default_value_t = DEFAULT_REQUEST_TIMEOUT)]
    pub request_timeout_secs: u64,
    /// The largest request message, bytes.
    #[arg(long, env = "GRPC_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            request_timeout_secs: DEFAULT_REQUEST_TIMEOUT,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

impl GrpcLimits {
    /// A server builder with the per-connection and per-call limits set.
    pub fn server(&self) -> tonic::transport::Server {
        tonic::transport::Server::builder()
            .max_concurrent_streams(self.max_concurrent_streams.max(1))
            .timeout(Duration::from_secs(self.request_timeout_secs.max(1)))
            .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .tcp_nodelay(true)
    }
}

/// The listener's connections, at most `max` open at once: each carries a
/// permit that it gives back when it closes, and the next accept waits for one.
pub fn limited_incoming(
    listener: TcpListener,
    max: usize,
) -> impl Stream<Item = std::io::Result<Limited>> + Send + 'static {
    let slots = Arc::new(Semaphore::new(max.max(1)));
    futures::stream::unfold((listener, slots), |(listener, slots)| async move {
        let permit = slots.clone().acquire_owned().await.ok()?;
        let accepted = listener.accept().await.map(|(stream, _)| {
            let _ = stream.set_nodelay(true);
            Limited { stream, _permit: permit }
        });
        Some((accepted, (listener, slots)))
    })
}

/// A connection holding one of the listener's slots.
#[derive(Debug)]
pub struct Limited {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl Connected for Limited {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

crate::delegate_async_write!(Limited, stream);

/// Implements `tokio::io::AsyncWrite` for a wrapper by writing to its `$field`
/// (an `Unpin` writer): for connection wrappers that only change how they are
/// read or what they hold.
#[macro_export]
macro_rules! delegate_async_write {
    ($wrapper:ty, $field:ident) => {
        impl ::tokio::io::AsyncWrite for $wrapper {
            fn poll_write(
                mut self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &[u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                ::std::pin::Pin::new(&mut self.$field).poll_write(cx, buf)
            }

            fn poll_flush(
                mut self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                ::std::pin::Pin::new(&mut self.$field).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                ::std::pin::Pin::new(&mut self.$field).poll_shutdown(cx)
            }

            fn poll_write_vectored(
                mut self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                bufs: &[::std::io::IoSlice<'_>],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                ::std::pin::Pin::new(&mut self.$field).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                ::tokio::io::AsyncWrite::is_write_vectored(&self.$field)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use futures::StreamExt as _;

    use super::*;

    #[tokio::test]
    async fn past_the_connection_limit_the_next_accept_waits_for_a_close() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = limited_incoming(listener, 2);
        tokio::pin!(incoming);
        let _clients: Vec<_> =
            futures::future::join_all((0..3).map(|_| TcpStream::connect(addr))).await;
        let first = incoming.next().await.unwrap().unwrap();
        let _second = incoming.next().await.unwrap().unwrap();
        let third = tokio::time::timeout(Duration::from_millis(200), incoming.next()).await;
        assert!(third.is_err(), "a third connection was served past the limit of two");
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), incoming.next()).await;
        assert!(matches!(third, Ok(Some(Ok(_)))), "the freed slot was not reused");
    }
}
