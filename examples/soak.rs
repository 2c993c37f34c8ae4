//! Soak test: a mixed workload against a real `maestro-server` process for a configurable time, then
//! checks that nothing leaked. `make soak` (default 600 s) or
//! `cargo run --release --example soak -- SECONDS`.
//!
//! Workload: 50 snapshot subscribers, unary telemetry and validation calls, generations with random
//! cancellation, allocate / release, and a forced cleanup every 30 s. At the end: zero leases, zero
//! in-flight requests, server RSS growth after warm-up ≤ 5 %, and no status code outside the expected
//! set. Exits 1 when a check fails.

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use maestro_proto::{
    self as pb, generation_service_client::GenerationServiceClient,
    resource_service_client::ResourceServiceClient,
};
use tonic::{transport::Channel, Code};

type Codes = Arc<Mutex<BTreeMap<String, u64>>>;

fn count(codes: &Codes, what: &str, code: Code) {
    *codes.lock().unwrap().entry(format!("{what} {code:?}")).or_default() += 1;
}

/// A small xorshift generator: the soak needs variety, not statistics.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

async fn generations(channel: Channel, codes: Codes, until: Instant, seed: u64) {
    let mut rng = Rng(seed);
    let mut client = GenerationServiceClient::new(channel);
    while Instant::now() < until {
        let req = pb::GenerateRequest {
            model: "maestro/musicgen-tiny".into(),
            prompt: "soak".into(),
            duration_s: 0.5 + (rng.next() % 4) as f64 * 0.5,
            seed: Some(rng.next()),
            chunk_ms: 100,
            ..Default::default()
        };
        let cancel_after = if rng.next() % 3 == 0 { Some(rng.next() % 5) } else { None };
        match client.generate(req).await {
            Err(e) => {
                if std::env::var_os("SOAK_VERBOSE").is_some() {
                    eprintln!("Generate refused: {e:?}");
                }
                count(&codes, "Generate", e.code());
                // A refused client backs off instead of spinning on the full queue.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(stream) => {
                let mut stream = stream.into_inner();
                let mut seen = 0;
                let mut code = Code::Ok;
                while let Some(item) = stream.next().await {
                    if let Err(e) = item {
                        if std::env::var_os("SOAK_VERBOSE").is_some() {
                            eprintln!("Generate failed: {e:?}");
                        }
                        code = e.code();
                        break;
                    }
                    seen += 1;
                    if cancel_after.is_some_and(|n| seen > n) {
                        code = Code::Cancelled;
                        break;
                    }
                }
                count(&codes, "Generate", code);
            }
        }
    }
}

async fn last_generation(channel: Channel) -> bool {
    let req = pb::GenerateRequest {
        model: "maestro/musicgen-tiny".into(),
        duration_s: 0.5,
        seed: Some(1),
        ..Default::default()
    };
    let Ok(stream) = GenerationServiceClient::new(channel).generate(req).await else { return false };
    let mut stream = stream.into_inner();
    while let Some(item) = stream.next().await {
        match item.map(|i| i.payload) {
            Ok(Some(pb::generate_response::Payload::Summary(_))) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

async fn unary(channel: Channel, codes: Codes, until: Instant, seed: u64) {
    let mut rng = Rng(seed);
    let mut r = ResourceServiceClient::new(channel);
    let mut last_cleanup = Instant::now();
    while Instant::now() < until {
        let code = |res: Result<(), tonic::Status>| res.err().map_or(Code::Ok, |e| e.code());
        count(&codes, "GetStatus", code(r.get_status(pb::StatusRequest {}).await.map(drop)));
        let v = pb::ValidateRequest {
            model: "facebook/musicgen-small".into(),
            batch_size: 1 + (rng.next() % 4) as u32,
            duration_s: 10.0,
            device: "auto".into(),
            dtype: String::new(),
            audio_prompt_s: 0.0,
        };
        count(&codes, "ValidateModel", code(r.validate_model(v).await.map(drop)));
        count(&codes, "GetReport", code(r.get_report(pb::ReportRequest {}).await.map(drop)));
        let a = pb::AllocateRequest {
            owner: "soak".into(),
            cpu_memory_bytes: 1_000_000 + rng.next() % 100_000_000,
            gpu_memory_bytes: 0,
            gpu_index: None,
            ttl_seconds: 1 + (rng.next() % 5) as u32,
        };
        match r.allocate(a).await {
            Ok(lease) => {
                count(&codes, "Allocate", Code::Ok);
                if rng.next() % 2 == 0 {
                    let rel = pb::ReleaseRequest { lease_id: lease.into_inner().lease_id };
                    count(&codes, "Release", code(r.release(rel).await.map(drop)));
                }
            }
            Err(e) => count(&codes, "Allocate", e.code()),
        }
        if last_cleanup.elapsed() > Duration::from_secs(30) {
            last_cleanup = Instant::now();
            let c = pb::CleanupRequest { force: true, dry_run: false };
            count(&codes, "Cleanup", code(r.cleanup(c).await.map(drop)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn subscriber(channel: Channel, codes: Codes, until: Instant) {
    let mut r = ResourceServiceClient::new(channel);
    match r.watch_snapshots(pb::WatchSnapshotsRequest::default()).await {
        Err(e) => count(&codes, "WatchSnapshots", e.code()),
        Ok(s) => {
            let mut s = s.into_inner();
            while Instant::now() < until {
                match tokio::time::timeout(Duration::from_secs(5), s.next()).await {
                    Ok(Some(Ok(_))) => {}
                    Ok(Some(Err(e))) => return count(&codes, "WatchSnapshots", e.code()),
                    _ => return count(&codes, "WatchSnapshots", Code::DeadlineExceeded),
                }
            }
            count(&codes, "WatchSnapshots", Code::Ok);
        }
    }
}

fn main() {
    let seconds: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(600);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/maestro-server");
    let mut server = Command::new(bin)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--metrics-listen", "127.0.0.1:0"])
        .args(["--model-root", models.to_str().unwrap(), "--log-level", "warn", "--queue-capacity", "4"])
        .stderr(Stdio::null())
        .spawn()
        .expect("start target/release/maestro-server (make build first)");
    let pid = server.id();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let ok = rt.block_on(async move {
        let channel = loop {
            match Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let start = Instant::now();
        let until = start + Duration::from_secs(seconds);
        let codes: Codes = Arc::default();
        let mut tasks = Vec::new();
        for _ in 0..50 {
            tasks.push(tokio::spawn(subscriber(channel.clone(), codes.clone(), until)));
        }
        for i in 0..2 {
            tasks.push(tokio::spawn(generations(channel.clone(), codes.clone(), until, 11 + i)));
        }
        tasks.push(tokio::spawn(unary(channel.clone(), codes.clone(), until, 7)));
        tokio::time::sleep(Duration::from_secs(seconds / 5)).await;
        let warm = rss(pid);
        for t in tasks {
            let _ = t.await;
        }
        // Let lease expiry (1 s ticks) and the last cancellations settle.
        tokio::time::sleep(Duration::from_secs(7)).await;
        let end = rss(pid);
        // The queue drained: one more generation runs to its summary.
        let drained = last_generation(channel.clone()).await;
        let report =
            ResourceServiceClient::new(channel).get_report(pb::ReportRequest {}).await.unwrap().into_inner();
        let in_flight: u32 = report.cached_models.iter().map(|m| m.in_flight).sum();
        let growth = (end as f64 / warm.max(1) as f64 - 1.0) * 100.0;
        let codes = codes.lock().unwrap().clone();
        let expected = ["Ok", "Cancelled", "ResourceExhausted"];
        let unexpected: Vec<_> = codes.keys().filter(|k| !expected.iter().any(|e| k.ends_with(e))).collect();
        println!("\n## Soak: {seconds} s\n\n| call and status | count |\n|---|---:|");
        for (k, v) in &codes {
            println!("| {k} | {v} |");
        }
        println!("\n| check | value | verdict |\n|---|---|---|");
        println!("| leases at the end | {} | {} |", report.leases.len(), report.leases.is_empty());
        println!("| in-flight requests at the end | {in_flight} | {} |", in_flight == 0);
        println!(
            "| server RSS after warm-up → end | {:.1} MB → {:.1} MB ({growth:+.1} %) | {} |",
            warm as f64 / 1e6,
            end as f64 / 1e6,
            growth <= 5.0
        );
        println!("| unexpected status codes | {unexpected:?} | {} |", unexpected.is_empty());
        println!("| a generation after the soak runs | {drained} | {drained} |");
        report.leases.is_empty() && in_flight == 0 && growth <= 5.0 && unexpected.is_empty() && drained
    });
    let _ = server.kill();
    let _ = server.wait();
    std::process::exit(if ok { 0 } else { 1 });
}
