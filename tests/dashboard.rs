//! The dashboard in a real browser: headless Chromium (Debian's), driven by Playwright through
//! `tests/dashboard/drive.py`, opens the page a real server serves on loopback and follows it live:
//! the host memory matches `GetStatus`, `sampled-at` advances without a reload, an alert raised
//! through the scripted sampler appears, and after the server restarts on the same ports the page
//! reconnects by itself. A screenshot lands in `target/dashboard.png`. With tokens on telemetry the
//! page asks for one; browser pages reach no state-changing RPC, and CORS answers only the HTTP
//! port's own pages.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use browser::Driver;
use common::{scripted_gpu, start_scripted_on, test_config, ScriptedSampler, TestServer};
use maestro_proto as pb;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tonic::{Code, Request};

const GIB: u64 = 1 << 30;

/// Two loopback ports free now: the server comes back on them after its restart.
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

async fn serve(grpc: u16, http: u16, sampler: ScriptedSampler) -> TestServer {
    serve_with(test_config(), grpc, http, sampler).await
}

async fn serve_with(
    mut config: maestro::config::Config,
    grpc: u16,
    http: u16,
    sampler: ScriptedSampler,
) -> TestServer {
    config.server.metrics_listen = format!("127.0.0.1:{http}").parse().unwrap();
    let listener = TcpListener::bind(("127.0.0.1", grpc)).await.unwrap();
    start_scripted_on(config, sampler, listener).await
}

fn sampler() -> ScriptedSampler {
    ScriptedSampler::new(50.0).with_gpu(scripted_gpu(0, 24 * GIB, 16 * GIB, (8, 0)))
}

#[tokio::test]
async fn the_dashboard_follows_a_live_server_in_chromium() {
    let (grpc, http) = free_ports();
    let first = sampler();
    let mut server = serve(grpc, http, first.clone()).await;
    let screenshot = concat!(env!("CARGO_MANIFEST_DIR"), "/target/dashboard.png");
    let mut driver = Driver::start("drive.py", &format!("http://127.0.0.1:{http}/"), &[screenshot]);

    let shown = driver.expect("host-memory").await;
    let shown: u64 = shown[0].parse().unwrap();
    let status = server.resources.get_status(pb::StatusRequest {}).await.unwrap().into_inner();
    let actual = status.host.unwrap().memory_used_bytes;
    let off = (shown as f64 - actual as f64).abs() / actual as f64;
    assert!(off <= 0.10, "the page shows {shown} bytes, GetStatus {actual}");
    let times = driver.expect("sampled-at").await;
    assert!(times[1] > times[0], "sampled-at advanced: {times:?}");
    driver.expect("panels").await;

    first.push_memory(&[95.0; 4]);
    driver.tell("alert");
    assert_eq!(driver.expect("alert-shown").await, ["True"], "a critical host_memory alert");
    driver.expect("screenshot").await;

    driver.expect("ready-for-restart").await;
    server.shutdown().await.unwrap();
    driver.expect("disconnected").await;
    let _server = serve(grpc, http, sampler()).await;
    driver.tell("restarted");
    driver.expect("reconnected").await;
    driver.finish().await;
    assert!(std::fs::metadata(screenshot).unwrap().len() > 10_000, "a screenshot of the page");
}

#[tokio::test]
async fn with_tokens_on_telemetry_the_page_asks_for_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, "page-token\n").unwrap();
    let mut config = test_config();
    config.server.auth_token_file = Some(file);
    config.server.public_telemetry = false;
    let (grpc, http) = free_ports();
    let _server = serve_with(config, grpc, http, sampler()).await;
    let mut driver =
        Driver::start("drive.py", &format!("http://127.0.0.1:{http}/"), &["--token", "page-token"]);
    driver.expect("asked").await;
    assert_eq!(driver.expect("connected").await, ["True"], "the form goes once the token works");
    driver.finish().await;
}

#[tokio::test]
async fn an_action_asks_for_a_token_with_its_role() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, "gen-token,page,generate\nadmin-token,ops,admin\n").unwrap();
    let mut config = test_config();
    config.server.auth_token_file = Some(file);
    let (grpc, http) = free_ports();
    let _server = serve_with(config, grpc, http, sampler()).await;
    let url = format!("http://127.0.0.1:{http}/");
    let mut driver = Driver::start("drive.py", &url, &["--action", "gen-token", "admin-token"]);
    let asked = driver.expect("asked").await.join(" ");
    assert!(asked.contains("Clean up needs a token"), "{asked}");
    assert_eq!(driver.expect("refused").await, ["needs-token"], "a generate token is not enough");
    let done = driver.expect("done-action").await;
    assert!(done.join(" ").starts_with("cleaned up:"), "{done:?}");
    assert_eq!(done.last().map(String::as_str), Some("True"), "the form goes once the action ran");
    driver.finish().await;
}

/// The response head of a raw HTTP/1.1 request.
async fn http_head(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0; 16 * 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
    String::from_utf8_lossy(&buf[..n]).to_lowercase()
}

/// `msg` as a browser page from `origin` sends it.
fn from_origin<T>(msg: T, origin: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("origin", origin.parse().unwrap());
    r
}

fn preflight(host: &str, origin: &str) -> String {
    format!(
        "OPTIONS /maestro.v1.ResourceService/GetStatus HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n\
         Access-Control-Request-Method: POST\r\n\
         Access-Control-Request-Headers: authorization,content-type,x-grpc-web\r\nConnection: close\r\n\r\n"
    )
}

#[tokio::test]
async fn browser_pages_call_from_allowed_origins_only() {
    let (grpc, http) = free_ports();
    let mut config = test_config();
    config.server.cors_origins = vec!["https://ui.example.com".into()];
    let mut server = serve_with(config, grpc, http, sampler()).await;
    // The HTTP port serves the page and tells it where the gRPC port is.
    let http_addr: SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    let page = http_head(http_addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(page.starts_with("http/1.1 200") && page.contains("content-security-policy"), "{page}");
    let info =
        http_head(http_addr, "GET /dashboard.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(info.contains(&format!("\"port\":{grpc}")), "{info}");
    // CORS: the page's origin (the host the request was sent to, on the HTTP port) and the listed
    // origins may call with a token; no other origin.
    let grpc_addr: SocketAddr = format!("127.0.0.1:{grpc}").parse().unwrap();
    let allowed = [
        (format!("127.0.0.1:{grpc}"), format!("http://127.0.0.1:{http}")),
        (format!("maestro.internal:{grpc}"), format!("http://maestro.internal:{http}")),
        (format!("maestro.internal:{grpc}"), "https://ui.example.com".to_string()),
    ];
    for (host, origin) in &allowed {
        let head = http_head(grpc_addr, &preflight(host, origin)).await;
        assert!(head.contains(&format!("access-control-allow-origin: {origin}")), "{origin}: {head}");
        assert!(head.contains("authorization"), "{head}");
    }
    let host = format!("127.0.0.1:{grpc}");
    let evil = format!("http://evil.example:{http}");
    for origin in [
        evil.as_str(),
        "http://evil.example",
        "http://127.0.0.1:1",
        &format!("http://127.0.0.1:{grpc}"),
        "http://ui.example.com",
    ] {
        let head = http_head(grpc_addr, &preflight(&host, origin)).await;
        assert!(!head.contains("access-control-allow-origin"), "{origin} allowed: {head}");
    }
    // Without a token file, an allowed origin may call what any client may; any other origin reads
    // (its browser keeps the answer from it) but changes nothing.
    let own = format!("http://127.0.0.1:{http}");
    server.resources.get_status(from_origin(pb::StatusRequest {}, &evil)).await.unwrap();
    let req = pb::AllocateRequest {
        owner: "page".into(),
        cpu_memory_bytes: 1_000_000,
        ttl_seconds: 10,
        ..Default::default()
    };
    for refused in [evil.as_str(), "null"] {
        let err = server.resources.allocate(from_origin(req.clone(), refused)).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{refused}: {err:?}");
        assert!(err.message().contains("--cors-origin"), "{}", err.message());
        let cleanup = from_origin(pb::CleanupRequest { dry_run: true, ..Default::default() }, refused);
        assert_eq!(server.resources.cleanup(cleanup).await.unwrap_err().code(), Code::PermissionDenied);
    }
    let lease = server.resources.allocate(from_origin(req.clone(), &own)).await.unwrap().into_inner();
    let release = from_origin(pb::ReleaseRequest { lease_id: lease.lease_id }, &own);
    server.resources.release(release).await.unwrap();
    let cleanup = from_origin(pb::CleanupRequest { dry_run: true, ..Default::default() }, &own);
    server.resources.cleanup(cleanup).await.unwrap();
    // Without an Origin (a native client) it works as well.
    let lease = server.resources.allocate(req).await.unwrap().into_inner();
    server.resources.release(pb::ReleaseRequest { lease_id: lease.lease_id }).await.unwrap();
}
