//! The HTTP listener's limits, met by a client that misbehaves on purpose: a
//! body too large, headers sent too slowly, a connection left idle. The
//! timeouts are set to a second here so the test waits briefly; the defaults
//! are in docs/security.md, "Limits".

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tollgate_e2e::TestStack;

async fn stack() -> TestStack {
    TestStack::builder()
        .tweak(|c| {
            c.auth.limits.http_header_timeout_secs = 1;
            c.auth.limits.http_body_limit = 4 * 1024;
        })
        .start()
        .await
        .unwrap()
}

const GET_JWKS: &[u8] = b"GET /jwks.json HTTP/1.1\r\nHost: x\r\n\r\n";

/// Reads one response from `stream`: its head, then as many body bytes as its
/// `content-length` says.
async fn response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut byte = [0u8; 1];
    while !received.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "closed mid-head");
        received.push(byte[0]);
    }
    let head = String::from_utf8(received).unwrap().to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |n| n.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    head
}

async fn connect(stack: &TestStack) -> TcpStream {
    let url = stack.url("/");
    TcpStream::connect((url.host_str().unwrap(), url.port().unwrap())).await.unwrap()
}

/// Reads until the server closes the connection (or `patience` runs out, which
/// fails the test): what it sent before closing.
async fn until_closed(stream: &mut TcpStream, patience: Duration) -> String {
    let mut received = Vec::new();
    tokio::time::timeout(patience, stream.read_to_end(&mut received))
        .await
        .expect("the server kept the connection open")
        .expect("read");
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_413_without_being_processed() {
    let stack = stack().await;
    let big = "x".repeat(8 * 1024);
    let reply = reqwest::Client::new()
        .post(stack.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=client_credentials&pad={big}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 413);
}

#[tokio::test]
async fn headers_sent_too_slowly_get_the_connection_closed() {
    let stack = stack().await;
    let mut slow = connect(&stack).await;
    // Half a request line, then nothing (slowloris).
    slow.write_all(b"GET /jwks.json HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let answer = until_closed(&mut slow, Duration::from_secs(10)).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer:?}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let stack = stack().await;
    let mut idle = connect(&stack).await;
    idle.write_all(b"GET /jwks.json HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // One full answer, then the connection waits for a next request that never
    // comes, and is closed after the header timeout.
    let answer = until_closed(&mut idle, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

#[tokio::test]
async fn one_address_past_its_requests_in_hand_waits_for_a_place() {
    let stack = TestStack::builder()
        .tweak(|c| c.auth.limits.http_requests_per_address = 1)
        .start()
        .await
        .unwrap();
    // The address's one place is taken by a request whose body is still
    // arriving.
    let mut slow = connect(&stack).await;
    let body = "grant_type=client_credentials";
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body.as_bytes()[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Another request from the same address is read but not handled.
    let mut other = connect(&stack).await;
    other.write_all(GET_JWKS).await.unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), other.read(&mut byte)).await;
    assert!(early.is_err(), "handled while the address's one place was taken");
    // Once the first request is whole and answered, the waiting one is.
    slow.write_all(&body.as_bytes()[5..]).await.unwrap();
    assert!(response(&mut slow).await.starts_with("http/1.1 401"));
    let served = tokio::time::timeout(Duration::from_secs(5), response(&mut other)).await;
    assert!(served.expect("handled once the place was free").starts_with("http/1.1 200"));
}

#[tokio::test]
async fn a_request_that_waits_too_long_for_a_place_is_answered_429_not_dropped() {
    let stack = TestStack::builder()
        .tweak(|c| {
            c.auth.limits.http_requests_per_address = 1;
            // A place is waited for at most half of this.
            c.auth.limits.http_header_timeout_secs = 1;
        })
        .start()
        .await
        .unwrap();
    let mut slow = connect(&stack).await;
    slow.write_all(
        b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 100\r\n\r\ngrant",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut other = connect(&stack).await;
    other.write_all(GET_JWKS).await.unwrap();
    // Not left to the header timeout's close (a reset, with the request
    // unanswered): told to come back, and the connection closed cleanly.
    let answer = until_closed(&mut other, Duration::from_secs(5)).await.to_lowercase();
    assert!(answer.starts_with("http/1.1 429"), "{answer}");
    assert!(answer.contains("retry-after: 1") && answer.contains("connection: close"), "{answer}");
    assert!(answer.contains("temporarily_unavailable"), "{answer}");
}
