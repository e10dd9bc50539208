//! W3C trace context (`traceparent`, `tracestate`) across every hop, so one
//! authorization-code flow or one API call is one trace: injected into outgoing
//! HTTP requests and, by the client layer [`PropagateLayer`], into gRPC
//! metadata (HTTP/2 headers); extracted by the server layer [`TraceLayer`] on
//! every server, HTTP and gRPC alike.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(key.as_bytes()), HeaderValue::from_str(&value))
        {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Adds the current span's trace context to outgoing HTTP headers.
pub fn inject(headers: &mut HeaderMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// The current span's trace context as headers, for request builders that take
/// a whole map (reqwest's `.headers(...)`).
pub fn current_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    inject(&mut headers);
    headers
}

/// The client side of propagation for gRPC: wraps a channel so that every call
/// made through it carries the calling span's trace context in its metadata
/// (HTTP/2 headers). `XClient::new(traced(channel))`.
pub fn traced<S>(channel: S) -> Propagating<S> {
    Propagating { inner: channel }
}

/// The client tower layer behind [`traced`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PropagateLayer;

impl<S> tower::Layer<S> for PropagateLayer {
    type Service = Propagating<S>;

    fn layer(&self, inner: S) -> Self::Service {
        traced(inner)
    }
}

/// A client service that injects the current trace context into each request.
#[derive(Debug, Clone)]
pub struct Propagating<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for Propagating<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // Called by the generated client in the caller's task and span.
        inject(request.headers_mut());
        self.inner.call(request)
    }
}

/// The remote parent an incoming request carries (empty if none).
pub fn extract(headers: &HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    })
}

/// Which protocol a [`TraceLayer`] serves: it decides the span's name and
/// attributes (OpenTelemetry semantic conventions for RPC and HTTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    Http,
}

/// A server span per request, continuing the caller's trace, plus the request
/// latency histogram. Health checks are neither traced nor measured: they would
/// bury every real request under probes.
///
/// Only the path is recorded, never the query: an authorization response's
/// query carries the code and state.
#[derive(Debug, Clone)]
pub struct TraceLayer {
    service: &'static str,
    protocol: Protocol,
}

impl TraceLayer {
    /// `service` names the server in every span (`tollgate.service`), which tells
    /// services apart even when several run in one process (the tests).
    pub fn new(service: &'static str, protocol: Protocol) -> Self {
        Self { service, protocol }
    }
}

impl<S> tower::Layer<S> for TraceLayer {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Traced { inner, service: self.service, protocol: self.protocol }
    }
}

/// The service [`TraceLayer`] makes.
#[derive(Debug, Clone)]
pub struct Traced<S> {
    inner: S,
    service: &'static str,
    protocol: Protocol,
}

const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

/// Put in a response's extensions by a layer below [`TraceLayer`] that refused
/// a request for a path the service does not serve (the token layer's
/// default-deny for a method in no policy). The latency histogram then records
/// it as `unmatched`, not under the caller's path.
#[derive(Debug, Clone, Copy)]
pub struct UnmatchedRoute;

impl<S, B, R> tower::Service<http::Request<B>> for Traced<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        if path.starts_with(HEALTH_PREFIX) {
            return Box::pin(self.inner.call(request));
        }
        let span = match self.protocol {
            Protocol::Grpc => {
                let (service, method) =
                    path.trim_start_matches('/').split_once('/').unwrap_or((&path, ""));
                tracing::info_span!(
                    "grpc.server",
                    otel.name = %path.trim_start_matches('/'),
                    otel.kind = "server",
                    tollgate.service = self.service,
                    rpc.system = "grpc",
                    rpc.service = %service,
                    rpc.method = %method,
                    rpc.grpc.status_code = tracing::field::Empty,
                )
            }
            Protocol::Http => tracing::info_span!(
                "http.server",
                otel.name = %format_args!("{} {}", request.method(), path),
                otel.kind = "server",
                tollgate.service = self.service,
                http.request.method = %request.method(),
                url.path = %path,
                http.response.status_code = tracing::field::Empty,
            ),
        };
        // Fails only for a span already started or not recorded by the
        // OpenTelemetry layer (none configured): then there is no trace to join.
        let _ = span.set_parent(extract(request.headers()));
        let (service, protocol) = (self.service, self.protocol);
        let started = Instant::now();
        // Entered while the inner service is called, too: layers below (the
        // token check) decide synchronously in `call`, and their spans must be
        // children of this one.
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(
            async move {
                let result = future.await;
                let unmatched =
                    result.as_ref().is_ok_and(|r| r.extensions().get::<UnmatchedRoute>().is_some());
                let status = match &result {
                    Ok(response) => match protocol {
                        // An error is answered "trailers-only", in the headers;
                        // without grpc-status there, the call succeeded (its
                        // status follows in the trailers).
                        Protocol::Grpc => response
                            .headers()
                            .get("grpc-status")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("0")
                            .to_owned(),
                        Protocol::Http => response.status().as_u16().to_string(),
                    },
                    Err(_) => "transport_error".to_owned(),
                };
                let current = tracing::Span::current();
                match protocol {
                    Protocol::Grpc => current.record("rpc.grpc.status_code", status.as_str()),
                    Protocol::Http => current.record("http.response.status_code", status.as_str()),
                };
                crate::metrics::request_duration(
                    service, protocol, &path, &status, unmatched, started,
                );
                result
            }
            .instrument(span),
        )
    }
}
