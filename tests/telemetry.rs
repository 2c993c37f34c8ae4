//! Live telemetry through the real gRPC server: scripted memory climbs raise and resolve alerts once,
//! readiness follows the health level, streams fan out and end, `/metrics` is Prometheus text.

mod common;

use std::time::Duration;

use common::{
    eventually, scrape, start_server, start_server_with, test_config, ScriptedSampler, Step,
    PAUSED_REQUEST_TIMEOUT, WITHIN,
};
use futures::StreamExt;
use maestro_proto::{self as pb, alert_event::Kind};
use tonic::Code;
use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};

fn fast_config() -> maestro::config::Config {
    let mut config = test_config();
    config.monitor.sample_interval = Duration::from_millis(100);
    config.server.request_timeout = PAUSED_REQUEST_TIMEOUT;
    // No automatic cleanup: its measuring reads would take the scripted steps meant for the schedule.
    config.resources.cleanup_threshold = 100.0;
    config
}

#[tokio::test(start_paused = true)]
async fn a_memory_climb_raises_and_resolves_each_alert_once_and_flips_readiness() {
    let sampler = ScriptedSampler::new(50.0);
    let mut server = start_server_with(fast_config(), Box::new(sampler.clone())).await;
    let mut alerts =
        server.resources.watch_alerts(pb::WatchAlertsRequest::default()).await.unwrap().into_inner();
    let mut ready = server
        .health
        .watch(HealthCheckRequest { service: "maestro.v1.GenerationService".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ready.next().await.unwrap().unwrap().status(), ServingStatus::Serving);

    sampler.push_memory(&[85.0, 85.0, 95.0, 95.0, 50.0, 50.0]);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let e = alerts.next().await.unwrap().unwrap();
        let kind = e.kind();
        let a = e.alert.unwrap();
        assert_eq!((a.rule.as_str(), a.resource.as_str()), ("host_memory", "host"));
        assert!(!a.recommendations.is_empty() && a.message.contains('%'));
        seen.push((kind, a.severity()));
    }
    use pb::Severity::{Critical, Warning};
    assert_eq!(
        seen,
        vec![
            (Kind::Raised, Warning),
            (Kind::Resolved, Warning),
            (Kind::Raised, Critical),
            (Kind::Resolved, Critical)
        ]
    );
    // Readiness: lost at CRITICAL, back after recovery.
    assert_eq!(ready.next().await.unwrap().unwrap().status(), ServingStatus::NotServing);
    assert_eq!(ready.next().await.unwrap().unwrap().status(), ServingStatus::Serving);

    // Nothing more happens while memory stays low (virtual time runs ahead freely).
    assert!(tokio::time::timeout(Duration::from_secs(30), alerts.next()).await.is_err());
    let log =
        server.resources.list_alerts(pb::ListAlertsRequest::default()).await.unwrap().into_inner().alerts;
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|a| !a.active && a.resolved_at.is_some()));
    let status = server.resources.get_status(pb::StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.health(), pb::HealthLevel::Healthy);
}

#[tokio::test(start_paused = true)]
async fn watch_alerts_replays_active_alerts_first_and_filters_by_severity() {
    let sampler = ScriptedSampler::new(85.0);
    let mut server = start_server_with(fast_config(), Box::new(sampler.clone())).await;
    let mut all =
        server.resources.watch_alerts(pb::WatchAlertsRequest::default()).await.unwrap().into_inner();
    assert_eq!(all.next().await.unwrap().unwrap().kind(), Kind::Raised);
    // A later watcher sees the active alert replayed; a CRITICAL-only watcher does not.
    let mut late =
        server.resources.watch_alerts(pb::WatchAlertsRequest::default()).await.unwrap().into_inner();
    let replay = late.next().await.unwrap().unwrap();
    assert_eq!(replay.kind(), Kind::Active);
    assert_eq!(replay.alert.unwrap().severity(), pb::Severity::Warning);
    let req = pb::WatchAlertsRequest { min_severity: pb::Severity::Critical as i32 };
    let mut critical = server.resources.watch_alerts(req).await.unwrap().into_inner();
    sampler.push_memory(&[95.0, 95.0]);
    let first = critical.next().await.unwrap().unwrap();
    assert_eq!(first.kind(), Kind::Raised);
    assert_eq!(first.alert.unwrap().severity(), pb::Severity::Critical);
    let bad = server.resources.watch_alerts(pb::WatchAlertsRequest { min_severity: 9 }).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("min_severity"), "{}", bad.message());
}

#[tokio::test(start_paused = true)]
async fn stale_host_figures_are_marked_and_raise_nothing() {
    let sampler = ScriptedSampler::new(50.0);
    let mut server = start_server_with(fast_config(), Box::new(sampler.clone())).await;
    let mut alerts =
        server.resources.watch_alerts(pb::WatchAlertsRequest::default()).await.unwrap().into_inner();
    let mut snaps =
        server.resources.watch_snapshots(pb::WatchSnapshotsRequest::default()).await.unwrap().into_inner();
    sampler.push([Step::HostError]);
    loop {
        let s = snaps.next().await.unwrap().unwrap();
        if s.stale_sources.contains(&"host".to_string()) {
            assert_eq!(s.host.unwrap().memory_total_bytes, 1_000_000_000, "last good figures are kept");
            break;
        }
    }
    assert!(tokio::time::timeout(Duration::from_secs(30), alerts.next()).await.is_err());
}

#[tokio::test]
async fn get_status_and_history_read_the_real_machine() {
    let mut server = start_server(fast_config()).await;
    let s = server.resources.get_status(pb::StatusRequest {}).await.unwrap().into_inner();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert_eq!(s.host.unwrap().memory_total_bytes, kib * 1024);
    assert!(s.sampled_at.is_some());
    assert_eq!(s.process.unwrap().pid, std::process::id());
    let gpu = s.gpu.unwrap();
    assert!(gpu.gpu_available || !gpu.unavailable_reason.is_empty());

    let h =
        server.resources.get_history(pb::HistoryRequest { window_seconds: 60 }).await.unwrap().into_inner();
    assert!(!h.samples.is_empty());
    let rss = h.stats.iter().find(|m| m.metric == "process_rss_bytes").unwrap();
    assert!(rss.min <= rss.mean && rss.mean <= rss.max && rss.p95 <= rss.max && rss.count >= 1);
    for window in [0, 301, u32::MAX] {
        let err =
            server.resources.get_history(pb::HistoryRequest { window_seconds: window }).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains("window_seconds") && err.message().contains("300"),
            "{}",
            err.message()
        );
    }
}

fn check_sequence(snaps: &[pb::Snapshot]) {
    for pair in snaps.windows(2) {
        assert!(pair[1].sequence > pair[0].sequence);
        assert_eq!(
            pair[1].skipped,
            pair[1].sequence - pair[0].sequence - 1,
            "skipped counts what was missed"
        );
    }
}

#[tokio::test]
async fn three_subscribers_at_different_intervals_and_a_stalled_one() {
    let mut config = test_config();
    config.monitor.sample_interval = Duration::from_millis(50);
    let server = start_server(config).await;
    let open = |ms: u32| {
        let mut c = server.resources.clone();
        async move { c.watch_snapshots(pb::WatchSnapshotsRequest { interval_ms: ms }).await.unwrap().into_inner() }
    };
    let (mut every, mut slower, mut slowest, _stalled) =
        (open(0).await, open(100).await, open(250).await, open(50).await);
    let mut got = (Vec::new(), Vec::new(), Vec::new());
    // Read until the slowest subscriber has 4 snapshots; the stalled one is never read and delays no one.
    while got.2.len() < 4 {
        tokio::select! {
            Some(s) = every.next() => got.0.push(s.unwrap()),
            Some(s) = slower.next() => got.1.push(s.unwrap()),
            Some(s) = slowest.next() => got.2.push(s.unwrap()),
        }
    }
    for snaps in [&got.0, &got.1, &got.2] {
        check_sequence(snaps);
    }
    assert!(
        got.0.len() > got.1.len() && got.1.len() > got.2.len(),
        "{} {} {}",
        got.0.len(),
        got.1.len(),
        got.2.len()
    );
    assert!(got.2[1..].iter().all(|s| s.skipped >= 1), "a 250 ms subscriber skips 50 ms samples");

    for bad in [1, 49, 60_001, u32::MAX] {
        let err = server
            .resources
            .clone()
            .watch_snapshots(pb::WatchSnapshotsRequest { interval_ms: bad })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "interval {bad}");
        assert!(
            err.message().contains("interval_ms") && err.message().contains("60000"),
            "{}",
            err.message()
        );
    }
}

#[tokio::test]
async fn open_watches_are_capped_and_a_disconnect_frees_the_slot() {
    let mut config = fast_config();
    config.server.max_watches = 2;
    let mut server = start_server(config).await;
    let first =
        server.resources.watch_snapshots(pb::WatchSnapshotsRequest::default()).await.unwrap().into_inner();
    let _second =
        server.resources.watch_alerts(pb::WatchAlertsRequest::default()).await.unwrap().into_inner();
    let err = server.resources.watch_snapshots(pb::WatchSnapshotsRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(err.message(), "too many open watch streams: limit 2 reached (--max-watches)");
    drop(first);
    // The server frees the slot when it sees the stream reset.
    let mut reopened = eventually("the disconnect freeing its stream slot", WITHIN, async || {
        match server.resources.watch_snapshots(pb::WatchSnapshotsRequest::default()).await {
            Ok(s) => Some(s.into_inner()),
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                None
            }
        }
    })
    .await;
    assert!(reopened.next().await.unwrap().is_ok());
}

#[tokio::test]
async fn one_connection_holds_at_most_its_share_of_the_watches() {
    let mut config = fast_config();
    config.server.max_watches_per_connection = 2;
    let mut server = start_server(config).await;
    let first =
        server.resources.watch_snapshots(pb::WatchSnapshotsRequest::default()).await.unwrap().into_inner();
    let _second =
        server.resources.watch_report(pb::WatchReportRequest::default()).await.unwrap().into_inner();
    let err = server.resources.watch_alerts(pb::WatchAlertsRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(
        err.message(),
        "too many open watch streams on this connection: limit 2 reached (--max-watches-per-connection)"
    );
    // Another connection has a share of its own.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut other = pb::resource_service_client::ResourceServiceClient::new(channel);
    let mut theirs = other.watch_snapshots(pb::WatchSnapshotsRequest::default()).await.unwrap().into_inner();
    assert!(theirs.next().await.unwrap().is_ok());
    // The share comes back when a stream ends.
    drop(first);
    eventually("the connection's share back", WITHIN, async || {
        server.resources.watch_alerts(pb::WatchAlertsRequest::default()).await.ok().map(drop)
    })
    .await;
}

#[tokio::test]
async fn shutdown_ends_open_streams_within_the_deadline() {
    let mut config = fast_config();
    // A deadline far beyond the test's patience: only ending the streams lets the server return.
    config.server.drain_deadline = Duration::from_secs(3600);
    let mut server = start_server(config).await;
    let mut snaps =
        server.resources.watch_snapshots(pb::WatchSnapshotsRequest::default()).await.unwrap().into_inner();
    let mut alerts =
        server.resources.watch_alerts(pb::WatchAlertsRequest::default()).await.unwrap().into_inner();
    assert!(snaps.next().await.unwrap().is_ok());
    let done = tokio::time::timeout(Duration::from_secs(60), server.shutdown()).await;
    assert!(done.expect("server returned before the deadline").is_ok());
    while let Some(item) = snaps.next().await {
        assert!(item.is_ok() || item.unwrap_err().code() == Code::Unavailable);
    }
    assert!(alerts.next().await.is_none_or(|r| r.is_err()));
}

/// Checks the Prometheus text format line by line; returns the metric names.
fn parse_prometheus(body: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in body.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix('#') {
            let kind = rest.split_whitespace().next().unwrap();
            assert!(kind == "HELP" || kind == "TYPE", "bad comment {line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value in {line}"));
        assert!(value.parse::<f64>().is_ok(), "bad value in {line}");
        let name = series.split('{').next().unwrap();
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "bad name {name}");
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "bad labels {line}"
            );
        }
        names.push(name.to_string());
    }
    names
}

#[tokio::test]
async fn metrics_endpoint_serves_prometheus_text() {
    let mut server = start_server(fast_config()).await;
    server.resources.get_status(pb::StatusRequest {}).await.unwrap();
    let _ = server.resources.get_history(pb::HistoryRequest { window_seconds: 0 }).await;
    let response = scrape(server.metrics_addr).await;
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let names = parse_prometheus(body);
    for want in [
        "maestro_host_memory_used_bytes",
        "maestro_host_memory_total_bytes",
        "maestro_memory_used_percent",
        "maestro_process_resident_memory_bytes",
        "maestro_gpu_available",
        "maestro_alerts_active",
        "maestro_rpc_requests_total",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing");
    }
    assert!(
        body.contains("method=\"/maestro.v1.ResourceService/GetHistory\"")
            && body.contains("code=\"INVALID_ARGUMENT\"")
    );
}

/// Made-up paths on the gRPC port (HTTP/1.1 POSTs, as a scanner sends them) add at most one
/// `unknown` series to `/metrics`, however many there are.
#[tokio::test]
async fn made_up_paths_add_at_most_one_series() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start_server(fast_config()).await;
    for i in 0..200 {
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let request = format!(
            "POST /scan/{i}/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let _ = tcp.read_to_end(&mut Vec::new()).await;
    }
    let body = scrape(server.metrics_addr).await;
    let series: Vec<&str> = body.lines().filter(|l| l.starts_with("maestro_rpc_requests_total{")).collect();
    assert!(series.iter().all(|l| !l.contains("/scan/")), "a made-up path became a label: {series:?}");
    let unknown = series.iter().filter(|l| l.contains("method=\"unknown\"")).count();
    assert!(unknown <= 1, "{series:?}");
}
