//! A rolling update, as Kubernetes does it: three `maestro-server` replicas on loopback behind a
//! client that balances across them and follows each one's health (`Watch` on
//! `maestro.v1.GenerationService`, the way clients use a headless Service: tonic's balanced channel,
//! an endpoint in while SERVING, out otherwise). Under a steady Generate load one replica gets SIGTERM:
//! not one call fails, calls keep flowing to the other two, and the replica exits 0.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

mod common;

use common::{eventually, scrape, WITHIN};
use futures::StreamExt;
use maestro_proto::{self as pb, generation_service_client::GenerationServiceClient};
use tonic::transport::{channel::Change, Channel, Endpoint};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

const BIN: &str = env!("CARGO_BIN_EXE_maestro-server");
const TINY: &str = "maestro/musicgen-tiny";
/// Concurrent callers of the steady load.
const CALLERS: usize = 4;

/// A replica process; dropping it kills it, so a failing test leaves none behind.
struct Replica {
    child: Option<Child>,
    grpc: String,
    metrics: std::net::SocketAddr,
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts a replica and waits until it serves.
async fn replica() -> Replica {
    let (port, metrics) = (free_port(), free_port());
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut child = Command::new(BIN)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .args(["--model-root", models.to_str().unwrap(), "--torch-threads", "1", "--warm-model", TINY])
        .args(["--drain-grace-s", "2", "--drain-deadline-s", "30"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let up = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stderr).lines();
        let up = lines.by_ref().map_while(Result::ok).any(|l| l.contains("serving gRPC"));
        // Keep reading so the replica never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        up
    });
    assert!(up.await.unwrap(), "a replica did not start");
    Replica {
        child: Some(child),
        grpc: format!("http://127.0.0.1:{port}"),
        metrics: format!("127.0.0.1:{metrics}").parse().unwrap(),
    }
}

/// What a replica's health watch told the client, in order.
type Heard = Arc<Mutex<Vec<(usize, &'static str)>>>;

/// Keeps replica `id` in the balanced channel while its generation service is SERVING, noting what
/// the watch said in `heard`.
async fn follow(
    id: usize,
    address: String,
    balance: tokio::sync::mpsc::Sender<Change<usize, Endpoint>>,
    serving: Arc<Mutex<BTreeSet<usize>>>,
    heard: Heard,
) {
    let endpoint = Endpoint::from_shared(address).unwrap();
    let Ok(channel) = endpoint.connect().await else { return };
    let request = HealthCheckRequest { service: "maestro.v1.GenerationService".into() };
    let Ok(watch) = HealthClient::new(channel).watch(request).await else { return };
    let mut watch = watch.into_inner();
    let ended = loop {
        let update = match watch.next().await {
            Some(Ok(update)) => update,
            Some(Err(_)) => break "watch failed",
            None => break "watch ended with OK",
        };
        if update.status() == ServingStatus::Serving {
            let _ = balance.send(Change::Insert(id, endpoint.clone())).await;
            serving.lock().unwrap().insert(id);
        } else {
            heard.lock().unwrap().push((id, "NOT_SERVING"));
            let _ = balance.send(Change::Remove(id)).await;
            serving.lock().unwrap().remove(&id);
        }
    };
    heard.lock().unwrap().push((id, ended));
    // The watch ended (the replica stopped accepting) or failed: out for good.
    let _ = balance.send(Change::Remove(id)).await;
    serving.lock().unwrap().remove(&id);
}

/// Generations the replica at `metrics` has completed, from its `/metrics`.
async fn completed(metrics: std::net::SocketAddr) -> u64 {
    scrape(metrics)
        .await
        .lines()
        .filter(|l| l.starts_with("maestro_generations_total{") && l.contains("outcome=\"OK\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_sigtermed_under_load_fails_no_call_and_exits_0() {
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica().await);
    }
    let (channel, balance) = Channel::balance_channel::<usize>(8);
    let serving = Arc::new(Mutex::new(BTreeSet::new()));
    let heard = Heard::default();
    for (id, r) in replicas.iter().enumerate() {
        tokio::spawn(follow(id, r.grpc.clone(), balance.clone(), serving.clone(), heard.clone()));
    }
    eventually("every replica SERVING (warm)", WITHIN, async || {
        (serving.lock().unwrap().len() == 3).then_some(())
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
    let mut callers = Vec::new();
    for caller in 0..CALLERS {
        let (client, stop, ok, failed) =
            (GenerationServiceClient::new(channel.clone()), stop.clone(), ok.clone(), failed.clone());
        callers.push(tokio::spawn(async move {
            let mut client = client;
            let mut seed = caller as u64;
            while !stop.load(Ordering::SeqCst) {
                seed += CALLERS as u64;
                let req = pb::GenerateRequest {
                    model: TINY.into(),
                    prompt: "a steady beat".into(),
                    duration_s: 0.3,
                    seed: Some(seed),
                    ..Default::default()
                };
                match generate(&mut client, req).await {
                    Ok(()) => ok.fetch_add(1, Ordering::SeqCst),
                    Err(status) => {
                        failed.lock().unwrap().push(status.to_string());
                        0
                    }
                };
            }
        }));
    }
    eventually("calls flowing", WITHIN, async || (ok.load(Ordering::SeqCst) >= 12).then_some(())).await;

    let others_before = [completed(replicas[1].metrics).await, completed(replicas[2].metrics).await];
    let calls_before = ok.load(Ordering::SeqCst);
    let mut victim = replicas.remove(0);
    let mut child = victim.child.take().unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let exit = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    // Calls go on after it left.
    let after_exit = ok.load(Ordering::SeqCst);
    eventually("calls keep flowing after the replica left", WITHIN, async || {
        (ok.load(Ordering::SeqCst) >= after_exit + 12).then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for c in callers {
        c.await.unwrap();
    }

    assert_eq!(exit.code(), Some(0), "the SIGTERM'd replica exits 0");
    // The client moved away on NOT_SERVING, before the replica stopped accepting and ended the watch.
    let heard: Vec<&str> = heard.lock().unwrap().iter().filter(|(id, _)| *id == 0).map(|(_, h)| *h).collect();
    assert_eq!(heard, ["NOT_SERVING", "watch ended with OK"], "what replica 0's health watch said");
    let failed = failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "{} calls failed during the update: {failed:?}", failed.len());
    let others_after = [completed(replicas[0].metrics).await, completed(replicas[1].metrics).await];
    for (i, (before, after)) in others_before.iter().zip(others_after).enumerate() {
        assert!(after > *before, "replica {} served nothing after the SIGTERM ({before} → {after})", i + 1);
    }
    assert!(ok.load(Ordering::SeqCst) > calls_before);
}

/// One whole generation: its stream read to the summary.
async fn generate(
    client: &mut GenerationServiceClient<Channel>,
    req: pb::GenerateRequest,
) -> Result<(), tonic::Status> {
    let mut stream = client.generate(req).await?.into_inner();
    while let Some(item) = stream.next().await {
        if let Some(pb::generate_response::Payload::Summary(_)) = item?.payload {
            return Ok(());
        }
    }
    Err(tonic::Status::internal("the stream ended without a summary"))
}
