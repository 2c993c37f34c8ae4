//! Telemetry benchmark: the sampler's cost per tick, and snapshot fan-out to many `WatchSnapshots`
//! subscribers of a real `maestro-server` process (delivery lag after each tick, server RSS and CPU).
//!
//! `make bench` or `cargo bench --bench telemetry [-- SUBSCRIBERS SECONDS]` (defaults 10000, 20).
//! `MAESTRO_BENCH_SERVER=PATH` measures another `maestro-server` build (an A/B in one session);
//! `MAESTRO_BENCH_CLIENT_THREADS` sets the load generator's threads (default 1).

#[path = "common/client.rs"]
mod client;
#[path = "common/stats.rs"]
mod stats;

use std::{
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use futures::StreamExt;
use maestro::monitor::sampler::{Sampler, SystemSampler};
use maestro_proto::WatchSnapshotsRequest;
use stats::percentile;
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_maestro-server");

/// The server to measure: `MAESTRO_BENCH_SERVER` (another build, for an A/B in one run) or this
/// build's.
fn server_binary() -> String {
    std::env::var("MAESTRO_BENCH_SERVER").unwrap_or_else(|_| BIN.to_string())
}
/// Streams per HTTP/2 connection (below the server's default concurrent-stream limit).
const STREAMS_PER_CONNECTION: usize = 100;

fn sampler_cost() -> (f64, f64) {
    let mut sampler = SystemSampler::new();
    let mut times = Vec::new();
    for _ in 0..300 {
        let start = Instant::now();
        let reading = sampler.sample();
        times.push(start.elapsed().as_secs_f64() * 1e6);
        assert!(reading.host.is_ok());
        std::thread::sleep(Duration::from_millis(5));
    }
    (percentile(&times, 50.0), percentile(&times, 99.0))
}

/// (RSS bytes, CPU seconds) of a process, from /proc.
fn proc_usage(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (rss_kib * 1024, ticks / hz)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Fanout {
    subscribers: usize,
    opened: usize,
    lags_ms: Vec<f64>,
    rss_before: u64,
    rss_after: u64,
    cpu_percent: f64,
    client_cpu_percent: f64,
}

async fn fanout(subscribers: usize, seconds: u64) -> Fanout {
    let port = free_port();
    let mut server = Command::new(server_binary())
        .args(["--listen", &format!("127.0.0.1:{port}"), "--metrics-listen", "127.0.0.1:0"])
        .args(["--max-streams", &(subscribers + 10).to_string(), "--log-level", "warn"])
        .stderr(Stdio::null())
        .spawn()
        .expect("start maestro-server");
    let pid = server.id();
    let addr = format!("http://127.0.0.1:{port}");
    let mut channels = Vec::new();
    for _ in 0..subscribers.div_ceil(STREAMS_PER_CONNECTION) {
        let channel = loop {
            match Channel::from_shared(addr.clone()).unwrap().connect().await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        channels.push(channel);
    }
    let (rss_before, _) = proc_usage(pid);
    let lags = Arc::new(Mutex::new(Vec::new()));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    let mut opened = 0;
    for i in 0..subscribers {
        let Ok(stream) = watch_stamps(channels[i / STREAMS_PER_CONNECTION].clone()).await else {
            continue;
        };
        opened += 1;
        let (lags, measuring) = (lags.clone(), measuring.clone());
        tasks.push(tokio::spawn(async move {
            // Each subscriber keeps its own lags and hands them over once, so the load generator
            // never serialises its streams on one lock.
            let mut mine = Vec::new();
            let mut stream = stream.into_inner();
            let mut started = false;
            while let Some(Ok(stamp)) = stream.next().await {
                let now = measuring.load(std::sync::atomic::Ordering::Relaxed);
                if started && !now {
                    break;
                }
                started |= now;
                if !now {
                    continue;
                }
                let sampled = stamp
                    .sampled_at
                    .map(|t| SystemTime::UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos as u32));
                if let Some(lag) = sampled.and_then(|t| SystemTime::now().duration_since(t).ok()) {
                    mine.push(lag.as_secs_f64() * 1e3);
                }
            }
            lags.lock().unwrap().extend(mine);
        }));
    }
    // Let every stream deliver its first snapshot, then measure.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, cpu_start) = proc_usage(pid);
    let (_, client_start) = proc_usage(std::process::id());
    let t0 = Instant::now();
    measuring.store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    measuring.store(false, std::sync::atomic::Ordering::Relaxed);
    let (rss_after, cpu_end) = proc_usage(pid);
    let (_, client_end) = proc_usage(std::process::id());
    let cpu_percent = (cpu_end - cpu_start) / t0.elapsed().as_secs_f64() * 100.0;
    let client_cpu_percent = (client_end - client_start) / t0.elapsed().as_secs_f64() * 100.0;
    // Each subscriber stops at its first snapshot after the window and reports its lags.
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let _ = server.kill();
    let _ = server.wait();
    let lags_ms = lags.lock().unwrap().clone();
    Fanout { subscribers, opened, lags_ms, rss_before, rss_after, cpu_percent, client_cpu_percent }
}

/// The one field of `Snapshot` the load generator reads: decoding the rest would be the client's
/// work, not the server's, on the same two cores.
#[derive(Clone, PartialEq, prost::Message)]
struct Stamp {
    #[prost(message, optional, tag = "1")]
    sampled_at: Option<prost_types::Timestamp>,
}

/// `WatchSnapshots(interval_ms = 1000)` on `channel`, decoding only `sampled_at`.
async fn watch_stamps(channel: Channel) -> Result<tonic::Response<tonic::Streaming<Stamp>>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static("/maestro.v1.ResourceService/WatchSnapshots");
    let codec = tonic_prost::ProstCodec::<WatchSnapshotsRequest, Stamp>::default();
    grpc.server_streaming(tonic::Request::new(WatchSnapshotsRequest { interval_ms: 1000 }), path, codec).await
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let subscribers: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let seconds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20);

    let (median, p99) = sampler_cost();
    println!("\n## Sampler cost (SystemSampler::sample, 300 ticks)\n");
    println!("| median µs | p99 µs | CPU share of one core at 1 Hz |");
    println!("|---:|---:|---:|");
    println!("| {median:.0} | {p99:.0} | {:.3} % |", median / 1e6 * 100.0);

    let runtime = client::runtime();
    println!(
        "\n## Snapshot fan-out (WatchSnapshots at 1 s, real maestro-server process, {seconds} s measured)\n"
    );
    println!("| subscribers | streams open | deliveries | lag p50 ms | lag p99 ms | server RSS before → after | server CPU % | client CPU % |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in [100, 1000, subscribers] {
        let f = runtime.block_on(fanout(n, seconds));
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.0} MB → {:.0} MB | {:.1} | {:.1} |",
            f.subscribers,
            f.opened,
            f.lags_ms.len(),
            percentile(&f.lags_ms, 50.0),
            percentile(&f.lags_ms, 99.0),
            f.rss_before as f64 / 1e6,
            f.rss_after as f64 / 1e6,
            f.cpu_percent,
            f.client_cpu_percent
        );
    }
}
