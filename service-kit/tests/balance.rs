//! Client-side balancing (service-kit's `balance` module) against real gRPC
//! servers: calls spread round-robin over the SERVING replicas, a replica that
//! turns NOT_SERVING (draining) gets no new calls, the set follows the
//! resolver (and survives a resolver that answers nothing), and a call with
//! no replica left fails UNAVAILABLE.

// In tests a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tollgate_service_kit::balance::Balanced;
use tollgate_service_kit::tls::{ClientTls, GrpcTarget};
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::server::HealthReporter;

/// Counts the test's calls a server answers (marked `x-test-call`; the
/// balancer's own health checks are not counted).
#[derive(Clone)]
struct Counting<S> {
    inner: S,
    checks: Arc<AtomicUsize>,
}

impl<S, B> tower::Service<http::Request<B>> for Counting<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.headers().contains_key("x-test-call") {
            self.checks.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.call(request)
    }
}

struct Replica {
    addr: SocketAddr,
    health: HealthReporter,
    checks: Arc<AtomicUsize>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

async fn replica() -> Replica {
    let (health, service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    let listener = TcpListener::bind((IpAddr::V4(Ipv4Addr::LOCALHOST), 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let checks = Arc::new(AtomicUsize::new(0));
    let counted = checks.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(tower::layer::layer_fn(move |inner| Counting { inner, checks: counted.clone() }))
            .add_service(service)
            // A graceful stop: it waits for every call and stream still open.
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            )
            .await
            .unwrap();
    });
    Replica { addr, health, checks, stop, server }
}

type Addresses = Arc<Mutex<Vec<SocketAddr>>>;

fn balanced_over(addresses: &Addresses) -> Balanced {
    let addresses = addresses.clone();
    let target = GrpcTarget::new("http://replicas.test:50053", &ClientTls::public_roots()).unwrap();
    // Resolved only when the test says so (`refresh`).
    Balanced::with_resolver(
        target,
        Arc::new(move || -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
            let now = addresses.lock().unwrap().clone();
            Box::pin(async move { Ok(now) })
        }),
        Duration::from_secs(3600),
    )
}

/// Waits (at most 10 s) until the balancer sees `expected`.
async fn until_replicas(balanced: &Balanced, expected: &[(SocketAddr, Option<bool>)]) {
    let mut expected = expected.to_vec();
    expected.sort();
    for _ in 0..1000 {
        let mut now = balanced.replicas();
        now.sort();
        if now == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("replicas are {:?}, not {expected:?}", balanced.replicas());
}

async fn checks(balanced: &Balanced, calls: usize) -> Result<(), tonic::Status> {
    let mut client = HealthClient::new(balanced.clone());
    for _ in 0..calls {
        let mut request = tonic::Request::new(HealthCheckRequest { service: String::new() });
        request.metadata_mut().insert("x-test-call", "1".parse().unwrap());
        client.check(request).await?;
    }
    Ok(())
}

fn counts(replicas: &[&Replica]) -> Vec<usize> {
    replicas.iter().map(|r| r.checks.swap(0, Ordering::SeqCst)).collect()
}

#[tokio::test]
async fn calls_spread_over_serving_replicas_and_follow_health_and_the_resolver() {
    let (a, b, c) = (replica().await, replica().await, replica().await);
    let addresses: Addresses = Arc::new(Mutex::new(vec![a.addr, b.addr, c.addr]));
    let balanced = balanced_over(&addresses);
    until_replicas(&balanced, &[(a.addr, Some(true)), (b.addr, Some(true)), (c.addr, Some(true))])
        .await;

    // Round-robin: each replica one call in three.
    checks(&balanced, 30).await.unwrap();
    assert_eq!(counts(&[&a, &b, &c]), [10, 10, 10]);

    // B drains (NOT_SERVING before it stops): no new call reaches it.
    b.health.set_service_status("", ServingStatus::NotServing).await;
    until_replicas(&balanced, &[(a.addr, Some(true)), (b.addr, Some(false)), (c.addr, Some(true))])
        .await;
    checks(&balanced, 30).await.unwrap();
    assert_eq!(counts(&[&a, &b, &c]), [15, 0, 15]);
    // Serving again: back in rotation, without a new resolution.
    b.health.set_service_status("", ServingStatus::Serving).await;
    until_replicas(&balanced, &[(a.addr, Some(true)), (b.addr, Some(true)), (c.addr, Some(true))])
        .await;
    checks(&balanced, 30).await.unwrap();
    assert_eq!(counts(&[&a, &b, &c]), [10, 10, 10]);

    // The name now resolves to A alone: only A is called.
    *addresses.lock().unwrap() = vec![a.addr];
    balanced.refresh().await;
    until_replicas(&balanced, &[(a.addr, Some(true))]).await;
    checks(&balanced, 10).await.unwrap();
    assert_eq!(counts(&[&a, &b, &c]), [10, 0, 0]);

    // A resolver answering nothing (a DNS hiccup) does not empty the set.
    addresses.lock().unwrap().clear();
    balanced.refresh().await;
    assert_eq!(balanced.replicas(), [(a.addr, Some(true))]);
    checks(&balanced, 4).await.unwrap();
    assert_eq!(counts(&[&a, &b, &c]), [4, 0, 0]);

    // A drains and stops, as a service does on SIGTERM: NOT_SERVING, then a
    // graceful stop, which the balancer's health watch does not hold up.
    a.health.set_service_status("", ServingStatus::NotServing).await;
    until_replicas(&balanced, &[(a.addr, Some(false))]).await;
    a.stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), a.server)
        .await
        .expect("the stop waited for a stream the balancer held open")
        .unwrap();
    // No replica left: after the wait for a SERVING one, the call fails
    // UNAVAILABLE (A's connection refused), not with some other status.
    let refused = checks(&balanced, 1).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    drop((b, c));
}

#[tokio::test]
async fn a_name_is_resolved_and_an_unresolvable_one_is_unavailable() {
    let a = replica().await;
    let target =
        GrpcTarget::new(&format!("http://localhost:{}", a.addr.port()), &ClientTls::public_roots())
            .unwrap();
    let balanced = target.balanced();
    // localhost may also resolve to ::1, where nothing listens: that replica
    // is never SERVING and gets no call.
    checks(&balanced, 6).await.unwrap();
    assert_eq!(counts(&[&a]), [6]);
    assert!(balanced.replicas().contains(&(a.addr, Some(true))), "{:?}", balanced.replicas());

    let nowhere = GrpcTarget::new("http://nowhere.invalid:50053", &ClientTls::public_roots())
        .unwrap()
        .balanced();
    let refused = checks(&nowhere, 1).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert_eq!(refused.message(), "no address for nowhere.invalid:50053 could be resolved");
}
