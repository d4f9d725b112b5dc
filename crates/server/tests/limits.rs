//! The HTTP limits on real sockets: idle and half-sent connections are closed after the
//! header-read timeout, and connections over the server's or a peer's cap are answered with
//! ECS's throttling error instead of hanging, while other clients are still served.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use server::http::{serve, HttpLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn start(limits: HttpLimits) -> (tempfile::TempDir, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let app = common::serve(common::store(dir.path()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, app, limits, std::future::pending()));
    (dir, addr)
}

/// A connection to `addr` from the loopback address `from` (every 127.x is this host).
async fn connect(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Sends a signed `DescribeRegions` and reads the whole answer (the server closes).
async fn describe_regions(stream: &mut TcpStream) -> String {
    let uri = common::signed(&[("Action", "DescribeRegions")]);
    let request = format!("GET {uri} HTTP/1.1\r\nhost: stockade\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut out)).await;
    out
}

/// Whether the server closes the connection within `wait` (reads end of stream).
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    matches!(
        tokio::time::timeout(wait, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn idle_and_half_sent_connections_are_closed_after_the_header_timeout() {
    let (_dir, addr) = start(HttpLimits {
        header_read_timeout: Duration::from_millis(500),
        ..HttpLimits::default()
    })
    .await;
    let mut idle = connect([127, 0, 0, 1], addr).await;
    let mut half = connect([127, 0, 0, 1], addr).await;
    half.write_all(b"GET / HTTP/1.1\r\nhost: stock")
        .await
        .unwrap();
    assert!(
        closed_within(&mut idle, Duration::from_secs(10)).await,
        "idle connection kept open"
    );
    assert!(
        closed_within(&mut half, Duration::from_secs(10)).await,
        "half-sent request kept open"
    );
    let mut fresh = connect([127, 0, 0, 1], addr).await;
    assert!(describe_regions(&mut fresh)
        .await
        .starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn connections_over_a_cap_are_answered_with_throttling_and_others_still_served() {
    let (_dir, addr) = start(HttpLimits {
        header_read_timeout: Duration::from_secs(30),
        max_connections: 3,
        max_connections_per_peer: 2,
    })
    .await;
    // A hostile peer holds its two connections idle.
    let _held: Vec<TcpStream> = vec![
        connect([127, 0, 0, 2], addr).await,
        connect([127, 0, 0, 2], addr).await,
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = connect([127, 0, 0, 2], addr).await;
    let answer = describe_regions(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"Code\":\"Throttling.User\""), "{answer}");
    assert!(
        answer.contains("\"RequestId\""),
        "an ECS error body: {answer}"
    );
    // Another client takes the third and last place.
    let mut other = connect([127, 0, 0, 1], addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Now the server is full: everyone else is told so.
    let mut over = connect([127, 0, 0, 4], addr).await;
    let answer = describe_regions(&mut over).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"Code\":\"Throttling\""), "{answer}");
    assert!(describe_regions(&mut other)
        .await
        .starts_with("HTTP/1.1 200"));
}

/// Sends raw bytes and reads the whole answer.
async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = connect([127, 0, 0, 1], addr).await;
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test]
async fn requests_the_http_parser_refuses_still_get_ecs_error_bodies() {
    let (_dir, addr) = start(HttpLimits::default()).await;
    let long_uri = format!(
        "GET /?Action={} HTTP/1.1\r\nhost: s\r\n\r\n",
        "x".repeat(70_000)
    );
    let huge_headers = format!(
        "GET / HTTP/1.1\r\nhost: s\r\nx-big: {}\r\n\r\n",
        "y".repeat(600_000)
    );
    for (request, status) in [
        (long_uri.as_bytes(), "414"),
        (huge_headers.as_bytes(), "431"),
        (&b"NOT HTTP AT ALL\r\n\r\n"[..], "400"),
    ] {
        let answer = raw(addr, request).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{answer}"
        );
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let body: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|_| panic!("an ECS body: {answer}"));
        assert_eq!(body["Code"], "InvalidParameter", "{answer}");
        for field in ["RequestId", "HostId", "Message", "Recommend"] {
            assert!(body[field].is_string(), "{field}: {answer}");
        }
    }
    // Normal answers are untouched.
    let mut ok = connect([127, 0, 0, 1], addr).await;
    assert!(describe_regions(&mut ok).await.starts_with("HTTP/1.1 200"));
}
