//! Unary RPC throughput: `ValidateModel` and `GetStatus` beside health `Check` (the cheapest RPC, the
//! ceiling) on one real `maestro-server` process, 64 concurrent clients over loopback.
//!
//! `cargo bench --bench rpc [-- CLIENTS SECONDS]` (defaults 64, 10); part of `make bench`. The load
//! generator's 64 client tasks run on one runtime thread (`MAESTRO_BENCH_CLIENT_THREADS` sets more),
//! so on a two-core machine the server's two runtime threads are not time-sliced against two more.

#[path = "common/client.rs"]
mod client;
#[path = "common/stats.rs"]
mod stats;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use maestro_proto::{resource_service_client::ResourceServiceClient, StatusRequest, ValidateRequest};
use tonic::transport::Channel;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

const BIN: &str = env!("CARGO_BIN_EXE_maestro-server");
const CONNECTIONS: usize = 8;

#[derive(Clone, Copy, Debug)]
enum Rpc {
    Health,
    Status,
    Validate,
}

impl Rpc {
    fn name(self) -> &'static str {
        match self {
            Rpc::Health => "grpc.health.v1.Health/Check (ceiling)",
            Rpc::Status => "ResourceService/GetStatus",
            Rpc::Validate => "ResourceService/ValidateModel",
        }
    }

    async fn call(self, channel: &Channel) -> bool {
        match self {
            Rpc::Health => HealthClient::new(channel.clone())
                .check(HealthCheckRequest { service: String::new() })
                .await
                .is_ok(),
            Rpc::Status => {
                ResourceServiceClient::new(channel.clone()).get_status(StatusRequest {}).await.is_ok()
            }
            Rpc::Validate => ResourceServiceClient::new(channel.clone())
                .validate_model(ValidateRequest {
                    model: "facebook/musicgen-small".into(),
                    batch_size: 1,
                    duration_s: 10.0,
                    device: "cpu".into(),
                    dtype: String::new(),
                    audio_prompt_s: 0.0,
                })
                .await
                .is_ok(),
        }
    }
}

struct Result_ {
    calls: usize,
    errors: usize,
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn load(rpc: Rpc, channels: &[Channel], clients: usize, seconds: u64) -> Result_ {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for i in 0..clients {
        let channel = channels[i % channels.len()].clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            while Instant::now() < deadline {
                let t = Instant::now();
                if rpc.call(&channel).await {
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (lat, e) = t.await.unwrap();
        all.extend(lat);
        errors += e;
    }
    Result_ {
        calls: all.len(),
        errors,
        per_s: all.len() as f64 / seconds as f64,
        p50_ms: stats::percentile(&all, 50.0),
        p99_ms: stats::percentile(&all, 99.0),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let clients: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(64);
    let seconds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Command::new(BIN)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            "127.0.0.1:0",
            "--log-level",
            "warn",
        ])
        .stderr(Stdio::null())
        .spawn()
        .expect("start maestro-server");
    let runtime = client::runtime();
    runtime.block_on(async {
        let mut channels = Vec::new();
        for _ in 0..CONNECTIONS {
            let channel = loop {
                match Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await {
                    Ok(c) => break c,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            };
            channels.push(channel);
        }
        load(Rpc::Health, &channels, clients, 2).await; // warm-up
        println!(
            "\n## Unary RPCs: {clients} concurrent clients, {CONNECTIONS} connections, {seconds} s each\n"
        );
        println!("| RPC | calls | errors | calls/s | vs ceiling | p50 ms | p99 ms |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        let mut ceiling = None;
        for rpc in [Rpc::Health, Rpc::Status, Rpc::Validate] {
            let r = load(rpc, &channels, clients, seconds).await;
            let base = *ceiling.get_or_insert(r.per_s);
            println!(
                "| {} | {} | {} | {:.0} | {:.0} % | {:.2} | {:.2} |",
                rpc.name(),
                r.calls,
                r.errors,
                r.per_s,
                r.per_s / base * 100.0,
                r.p50_ms,
                r.p99_ms
            );
        }
    });
    let _ = server.kill();
    let _ = server.wait();
}
