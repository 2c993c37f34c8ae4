//! The gRPC port's connections, as a careless or hostile client uses them: more sockets than
//! `--max-connections` (one more is closed at accept, counted, and the clients already connected
//! are served on), HTTP/2 header lists over 16 KiB and HTTP/1.1 heads over hyper's limit (refused,
//! the server serving on), an HTTP/1.1 head that never ends (closed by the header read timeout) and
//! a socket that sends nothing (closed after 10 s).

mod common;

use std::time::Duration;

use common::{eventually, scrape, start_server, test_config};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tonic_health::pb::HealthCheckRequest;

fn check() -> HealthCheckRequest {
    HealthCheckRequest { service: String::new() }
}

/// Reads until the peer closes (`Ok(0)` or an error) or `within` passes; whether it closed.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = vec![0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read).await.is_ok()
}

#[tokio::test]
async fn a_connection_beyond_the_cap_is_closed_and_the_others_are_served() {
    let mut config = test_config();
    config.server.max_connections = 3;
    let mut s = start_server(config).await;
    // The test's own client holds one connection; two idle sockets take the other slots.
    s.health.check(check()).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(s.addr).await.unwrap());
    }
    let mut extra = TcpStream::connect(s.addr).await.unwrap();
    assert!(closed_within(&mut extra, Duration::from_secs(20)).await, "the fourth connection is closed");
    // Those already connected are still served.
    s.health.check(check()).await.unwrap();
    let metrics = scrape(s.metrics_addr).await;
    assert!(metrics.contains("maestro_connections_refused_total 1"), "{metrics}");
    // A slot given back is taken by the next client.
    drop(held);
    eventually("a new client connects once a slot is free", Duration::from_secs(20), async || {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", s.addr)).ok()?;
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel.connect().await.ok()?);
        client.check(check()).await.ok()
    })
    .await;
}

#[tokio::test]
async fn oversized_headers_are_refused_on_both_protocols() {
    let mut s = start_server(test_config()).await;
    // HTTP/2: a header list over 16 KiB.
    let mut request = tonic::Request::new(check());
    request.metadata_mut().insert("x-padding", "x".repeat(20 * 1024).parse().unwrap());
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", s.addr)).unwrap();
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel.connect().await.unwrap());
    assert!(client.check(request).await.is_err(), "a 20 KiB header list is refused");
    // HTTP/1.1: a head far over hyper's buffer gets 431 or a closed connection, never a hang.
    let mut raw = TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST /grpc.health.v1.Health/Check HTTP/1.1\r\nhost: x\r\ncontent-type: application/grpc-web\r\nx-padding: {}\r\n\r\n",
        "x".repeat(1 << 20)
    );
    let _ = raw.write_all(head.as_bytes()).await;
    let mut answer = vec![0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(20), raw.read(&mut answer)).await;
    let answer = match read {
        Ok(Ok(n)) => String::from_utf8_lossy(&answer[..n]).into_owned(),
        Ok(Err(_)) => String::new(),
        Err(_) => panic!("a 1 MiB HTTP/1.1 head left the connection hanging"),
    };
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    // The server serves on.
    s.health.check(check()).await.unwrap();
}

/// An HTTP/1.1 client that starts a request head and never finishes it is closed by hyper's header
/// read timeout (30 s, on because tonic gives hyper a timer), so slow-loris sockets cannot pile up
/// past `--max-connections` for long.
#[tokio::test]
async fn an_unfinished_http1_head_is_closed() {
    let mut s = start_server(test_config()).await;
    let mut raw = TcpStream::connect(s.addr).await.unwrap();
    raw.write_all(b"POST /grpc.health.v1.Health/Check HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    assert!(closed_within(&mut raw, Duration::from_secs(60)).await, "an unfinished head is closed");
    s.health.check(check()).await.unwrap();
}

/// A socket that sends nothing at all (no request, no preface, no TLS hello) is closed after
/// `FIRST_BYTES_TIMEOUT` (10 s), so idle sockets cannot hold the `--max-connections` slots.
#[tokio::test]
async fn a_silent_connection_is_closed() {
    let mut s = start_server(test_config()).await;
    let mut raw = TcpStream::connect(s.addr).await.unwrap();
    assert!(closed_within(&mut raw, Duration::from_secs(60)).await, "a silent connection is closed");
    s.health.check(check()).await.unwrap();
}
