//! The HTTP port through the real server: a client that sends no complete request head is dropped,
//! unknown paths are 404, and `/metrics` parses as Prometheus text with HELP on every series and
//! passes `promtool check metrics` (promtool must be on PATH: `scripts/provision-tools.sh`).

mod common;

use std::{
    collections::HashSet,
    io::Write,
    net::SocketAddr,
    process::{Command, Stdio},
    time::Duration,
};

use common::{eventually, start_server, start_server_with, test_config, ScriptedSampler, TestServer};
use futures::StreamExt;
use maestro_proto as pb;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Generous bound on anything the server should do soon; only a hang reaches it.
const DEADLINE: Duration = Duration::from_secs(60);

/// An HTTP response as read off the socket.
struct Response {
    status: u16,
    head: String,
    body: String,
}

/// Sends one `GET path` that asks the server to close afterwards, and reads the whole response.
async fn get(addr: SocketAddr, path: &str) -> Response {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: maestro\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(DEADLINE, socket.read_to_end(&mut raw)).await.expect("response in time").unwrap();
    let raw = String::from_utf8(raw).expect("a UTF-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no end of head in {raw:?}"));
    let status =
        head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad head {head}"));
    Response { status, head: head.to_string(), body: body.to_string() }
}

/// Waits until the server closes `socket` (EOF or reset); returns what it sent before.
async fn closed_by_server(mut socket: TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 1024];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept a connection open that never sent a request head");
    seen
}

#[tokio::test]
async fn a_client_that_sends_nothing_is_dropped_and_blocks_nobody() {
    let server = start_server(test_config()).await;
    let silent = TcpStream::connect(server.metrics_addr).await.unwrap();
    // Served while the silent connection is still open.
    assert_eq!(get(server.metrics_addr, "/metrics").await.status, 200);
    let sent = closed_by_server(silent).await;
    assert!(sent.is_empty() || sent.starts_with(b"HTTP/1.1 408"), "{}", String::from_utf8_lossy(&sent));
}

#[tokio::test]
async fn a_client_that_stops_inside_its_request_head_is_dropped() {
    let server = start_server(test_config()).await;
    let mut slow = TcpStream::connect(server.metrics_addr).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: maestro\r\n").await.unwrap();
    let sent = closed_by_server(slow).await;
    assert!(!sent.starts_with(b"HTTP/1.1 200"), "answered a request whose head never ended");
}

#[tokio::test]
async fn unknown_paths_are_404_and_no_prefix_matches() {
    let server = start_server(test_config()).await;
    for path in ["/nope", "/metricsx", "/metrics/x", "/app.js/x", "/dashboard.jsonx"] {
        let r = get(server.metrics_addr, path).await;
        assert_eq!(r.status, 404, "{path}: {}", r.head);
    }
    // `/` is the dashboard.
    assert_eq!(get(server.metrics_addr, "/").await.status, 200);
}

#[tokio::test]
async fn metrics_parse_and_every_family_has_help_text() {
    let mut server = start_server(test_config()).await;
    server.resources.get_status(pb::StatusRequest {}).await.unwrap();
    let r = get(server.metrics_addr, "/metrics").await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{}", r.head);
    let lines = r.body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
    let names: HashSet<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for want in ["maestro_host_memory_total_bytes", "maestro_process_threads", "maestro_rpc_requests_total"] {
        assert!(names.contains(want), "{want} missing");
    }
    for name in &names {
        let help = scrape.docs.get(*name).map(String::as_str).unwrap_or_default();
        assert!(!help.is_empty(), "{name} has no HELP text");
    }
}

#[tokio::test]
async fn promtool_finds_nothing_to_lint_in_a_busy_servers_metrics() {
    let sampler = ScriptedSampler::with_total(16_000_000_000, 95.0);
    let mut config = test_config();
    config.monitor.sample_interval = Duration::from_millis(100);
    config.models.roots = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models")];
    let mut server = start_server_with(config, Box::new(sampler.clone())).await;
    exercise(&mut server, &sampler).await;
    // The stream ends at the summary; the worker gives the queue slot back just after, so the
    // idle gauges settle a moment later.
    let metrics_addr = server.metrics_addr;
    let body = eventually("the generation's queue slot given back", DEADLINE, async || {
        let body = get(metrics_addr, "/metrics").await.body;
        body.contains("maestro_generations_in_flight 0").then_some(body)
    })
    .await;
    for family in ["maestro_alert_events_total", "maestro_cleanups_total", "maestro_rpc_requests_total"] {
        assert!(body.contains(family), "{family} missing: the check would not cover it");
    }
    // The autoscaling signals: gauges an idle server exports as 0, histograms with real buckets.
    for series in [
        "maestro_generation_queue_depth 0",
        "maestro_generations_in_flight 0",
        "maestro_generations_running 0",
        "maestro_memory_pressure_percent{device=\"cpu\"}",
        "maestro_generation_queue_wait_seconds_bucket{",
        "maestro_generation_real_time_factor_bucket{",
        "maestro_generation_time_to_first_chunk_seconds_bucket{",
    ] {
        assert!(body.contains(series), "{series} missing:\n{body}");
    }
    let (code, output) = promtool_check_metrics(&body);
    assert!(code == Some(0) && output.is_empty(), "promtool check metrics: exit {code:?}\n{output}");
}

/// Records every kind of series the server has: an alert raised (the sampler starts at 95 %, then
/// memory falls back so the generation has room), RPCs, a cleanup and, with libtorch, a generation.
async fn exercise(server: &mut TestServer, sampler: &ScriptedSampler) {
    let mut alerts =
        server.resources.watch_alerts(pb::WatchAlertsRequest::default()).await.unwrap().into_inner();
    let raised = tokio::time::timeout(DEADLINE, alerts.next()).await.expect("an alert in time");
    assert!(raised.unwrap().is_ok());
    sampler.push_memory(&[40.0]);
    // The generation's fit reads the published sample: wait for the one at 40 %.
    let resources = server.resources.clone();
    eventually("a sample at 40 % memory", DEADLINE, async || {
        let s = resources.clone().get_status(pb::StatusRequest {}).await.unwrap().into_inner();
        (s.host?.memory_used_percent < 50.0).then_some(())
    })
    .await;
    server.resources.cleanup(pb::CleanupRequest { force: false, dry_run: true }).await.unwrap();
    #[cfg(feature = "torch")]
    {
        let request = pb::GenerateRequest {
            model: "maestro/musicgen-tiny".into(),
            prompt: "a calm piano".into(),
            duration_s: 0.2,
            seed: Some(1),
            ..Default::default()
        };
        let mut stream = server.generation.generate(request).await.unwrap().into_inner();
        while let Some(item) = stream.next().await {
            item.unwrap();
        }
    }
}

/// Runs `promtool check metrics` on `text`; returns its exit code and everything it printed.
fn promtool_check_metrics(text: &str) -> (Option<i32>, String) {
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = spawned.unwrap_or_else(|e| {
        panic!("cannot run promtool ({e}): it must be on PATH; scripts/provision-tools.sh installs it")
    });
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), printed)
}
