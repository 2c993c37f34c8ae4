//! Test harness: starts the real server in-process on `127.0.0.1:0` and hands back connected
//! generated clients plus a shutdown handle (no fixed ports), a scripted sampler, and
//! [`eventually`] for waiting on what the server does in the background.
#![allow(dead_code)]

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use maestro::{
    app::App,
    config::Config,
    monitor::sampler::{Reading, Sampler},
    monitor::snapshot::{GpuDevice, GpuStats, HostStats, ProcessStats},
    shutdown::{Signals, Trigger},
};
use maestro_proto::{
    generation_service_client::GenerationServiceClient, resource_service_client::ResourceServiceClient,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

/// A running server and clients connected to it.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where `/metrics` is served.
    pub metrics_addr: SocketAddr,
    /// A channel to it (clone for more clients).
    pub channel: Channel,
    /// ResourceService client.
    pub resources: ResourceServiceClient<Channel>,
    /// GenerationService client.
    pub generation: GenerationServiceClient<Channel>,
    /// Health client.
    pub health: HealthClient<Channel>,
    /// The plaintext health port, when `--health-listen` is on.
    pub health_addr: Option<SocketAddr>,
    stop: Trigger,
    join: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The embedded defaults with test-friendly endpoints and a short drain deadline.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.metrics_listen = "127.0.0.1:0".parse().unwrap();
    config.server.drain_deadline = Duration::from_secs(5);
    // No clients to move away in a test: stop accepting at once.
    config.server.drain_grace = Duration::ZERO;
    // Whatever hub cache the machine running the tests has is none of theirs.
    config.models.hub_cache = maestro::config::HubCache::Off;
    config
}

/// [`test_config`] serving the repository's `models/` (the tiny random model).
pub fn model_config() -> Config {
    let mut config = test_config();
    config.models.roots = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models")];
    config
}

/// Starts a server with `config` on an ephemeral port, sampling the real machine.
pub async fn start_server(config: Config) -> TestServer {
    start_server_with(config, Box::new(maestro::monitor::sampler::SystemSampler::new())).await
}

/// A scripted GPU at NVML `index` with `total` bytes, `free` of them free, compute capability `cc`,
/// every sensor answering.
pub fn scripted_gpu(index: u32, total: u64, free: u64, cc: (u32, u32)) -> GpuDevice {
    GpuDevice {
        index,
        name: format!("Scripted GPU {index}"),
        uuid: format!("GPU-5c819fed-0000-0000-0000-00000000000{index}"),
        memory_total_bytes: Some(total),
        memory_used_bytes: Some(total - free),
        memory_free_bytes: Some(free),
        utilization_gpu_percent: Some(0.0),
        utilization_memory_percent: Some(0.0),
        temperature_celsius: Some(40.0),
        power_watts: Some(60.0),
        power_limit_watts: Some(300.0),
        compute_capability: cc,
        process_memory_used_bytes: Some(0),
        pci_bus_id: format!("00000000:{:02X}:00.0", 0x17 + index),
        ..GpuDevice::default()
    }
}

/// Starts a server over `sampler`'s scripted GPUs through the executor seam: work is placed on them
/// (leases, cache, verdicts, out-of-memory handling as on a GPU host) and computed on the CPU.
pub async fn start_server_on_scripted_gpus(config: Config, sampler: ScriptedSampler) -> TestServer {
    start_scripted_on(config, sampler, TcpListener::bind("127.0.0.1:0").await.unwrap()).await
}

/// [`start_server_on_scripted_gpus`] serving gRPC on `listener`: a port chosen up front, say to
/// restart a server where its clients expect it.
pub async fn start_scripted_on(
    config: Config,
    sampler: ScriptedSampler,
    listener: TcpListener,
) -> TestServer {
    let compute = maestro::inventory::Compute::cpu_stand_in(sampler.bus_ids());
    start_on(App::build_on(config, Box::new(sampler), compute).await.unwrap(), listener).await
}

/// Starts a server that reads resources from `sampler`.
pub async fn start_server_with(config: Config, sampler: Box<dyn Sampler>) -> TestServer {
    start(App::build_with(config, sampler).await.unwrap()).await
}

async fn start(app: App) -> TestServer {
    start_on(app, TcpListener::bind("127.0.0.1:0").await.unwrap()).await
}

async fn start_on(app: App, listener: TcpListener) -> TestServer {
    let addr = listener.local_addr().unwrap();
    let metrics_addr = app.metrics_addr();
    let (stop, signals) = Signals::channel();
    let health_addr = app.health_addr();
    let join = tokio::spawn(app.serve(listener, signals));
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    TestServer {
        addr,
        metrics_addr,
        resources: ResourceServiceClient::new(channel.clone()),
        generation: GenerationServiceClient::new(channel.clone()),
        health: HealthClient::new(channel.clone()),
        channel,
        health_addr,
        stop,
        join: Some(join),
    }
}

impl TestServer {
    /// Triggers the shutdown and waits for the server to return.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop.request();
        self.join.take().unwrap().await?
    }

    /// Sends one shutdown request (a SIGTERM) without waiting: the drain begins.
    pub fn request_shutdown(&self) {
        self.stop.request();
    }

    /// Waits for the server to return after [`TestServer::request_shutdown`].
    pub async fn stopped(mut self) -> anyhow::Result<()> {
        self.join.take().unwrap().await?
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self.join.is_some() {
            self.stop.request();
        }
    }
}

/// How long background work may take before a test waiting on it with [`eventually`] fails.
pub const WITHIN: Duration = Duration::from_secs(60);

/// The request deadline for tests on a paused clock: the longest the server allows. Paused time
/// auto-advances whenever the runtime idles, and it idles while the monitor waits for its sampler
/// (a real thread) to answer: on a loaded host a few milliseconds of that wait let the clock jump
/// through 300 of the 100 ms sampling ticks and past the default 30 s deadline, failing the call
/// in flight. 3600 s takes 36 000 such jumps.
pub const PAUSED_REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);

/// Pause between two checks of [`eventually`].
const POLL_EVERY: Duration = Duration::from_millis(25);

/// Runs `check` until it gives a value and returns it; panics naming `what` once `deadline` has
/// passed without one. For state the server reaches in the background (an expiry, an eviction, a
/// freed slot); the deadline only bounds a failing test, it asserts nothing about speed.
pub async fn eventually<T>(what: &str, deadline: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let give_up = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < give_up, "{what}: still not the case after {deadline:?}");
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The whole HTTP response (head and body) of one `GET /metrics` on `addr`.
pub async fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// RSS the scripted process starts at.
const SCRIPTED_RSS: u64 = 100_000_000;

/// A sampler that replays host-memory percentages pushed by the test, then holds the last one.
/// Memory is out of 1000 MB unless given; there is no GPU unless [`ScriptedSampler::with_gpu`]
/// adds one, and the process's RSS is constant unless [`ScriptedSampler::rss_falling_by`] makes it
/// drop.
#[derive(Clone)]
pub struct ScriptedSampler {
    queue: Arc<Mutex<VecDeque<Step>>>,
    last: Arc<Mutex<Step>>,
    total: u64,
    rss: Arc<AtomicU64>,
    rss_step: u64,
    gpus: Arc<Mutex<Vec<GpuDevice>>>,
    stalled: Arc<std::sync::atomic::AtomicBool>,
}

/// One scripted reading.
#[derive(Clone, Debug)]
pub enum Step {
    /// Host memory used, in percent.
    Memory(f64),
    /// The host source fails to read.
    HostError,
}

impl ScriptedSampler {
    /// Starts at `percent` host memory.
    pub fn new(percent: f64) -> Self {
        Self::with_total(1_000_000_000, percent)
    }

    /// A machine with `total` bytes of host memory, starting at `percent` used.
    pub fn with_total(total: u64, percent: f64) -> Self {
        Self {
            queue: Arc::default(),
            last: Arc::new(Mutex::new(Step::Memory(percent))),
            total,
            rss: Arc::new(AtomicU64::new(SCRIPTED_RSS)),
            rss_step: 0,
            gpus: Arc::default(),
            stalled: Arc::default(),
        }
    }

    /// From now on a reading does not return (a wedged sensor read) until [`ScriptedSampler::resume`].
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    /// Readings return again.
    pub fn resume(&self) {
        self.stalled.store(false, Ordering::SeqCst);
    }

    /// Every reading reports `device` as the one GPU, as it stands when read.
    pub fn with_gpu(self, device: GpuDevice) -> Self {
        self.with_gpus(vec![device])
    }

    /// Every reading reports `devices` as the GPUs, as they stand when read.
    pub fn with_gpus(self, devices: Vec<GpuDevice>) -> Self {
        *self.gpus.lock().unwrap() = devices;
        self
    }

    /// Changes the first GPU for the readings from now on (a sensor that stops answering: `None`).
    pub fn set_gpu(&self, change: impl FnOnce(&mut GpuDevice)) {
        self.set_gpu_at(0, change);
    }

    /// Changes GPU `index` (its position) for the readings from now on.
    pub fn set_gpu_at(&self, index: usize, change: impl FnOnce(&mut GpuDevice)) {
        change(self.gpus.lock().unwrap().get_mut(index).expect("a scripted GPU (with_gpus)"));
    }

    /// The scripted GPUs' PCI addresses, as libtorch would list them (in reverse: CUDA's order need
    /// not be NVML's).
    pub fn bus_ids(&self) -> Vec<String> {
        self.gpus.lock().unwrap().iter().rev().map(|d| d.pci_bus_id.clone()).collect()
    }

    fn gpus(&self) -> GpuStats {
        let devices = self.gpus.lock().unwrap().clone();
        if devices.is_empty() {
            return GpuStats { unavailable_reason: "scripted: no GPU".into(), ..GpuStats::default() };
        }
        GpuStats { available: true, driver_version: "scripted".into(), devices, ..GpuStats::default() }
    }

    /// Each reading's RSS is `step` bytes below the one before: whatever two readings a cleanup
    /// compares, it measures a drop of a whole number of steps.
    pub fn rss_falling_by(mut self, step: u64) -> Self {
        self.rss_step = step;
        self
    }

    /// The RSS for the next reading.
    fn next_rss(&self) -> u64 {
        let step = self.rss_step;
        let fall = |rss: u64| Some(rss.saturating_sub(step));
        self.rss.fetch_update(Ordering::SeqCst, Ordering::SeqCst, fall).expect("fall always gives a value")
    }

    /// Queues readings; each sample takes the next one.
    pub fn push(&self, steps: impl IntoIterator<Item = Step>) {
        self.queue.lock().unwrap().extend(steps);
    }

    /// Queues host-memory percentages.
    pub fn push_memory(&self, percents: &[f64]) {
        self.push(percents.iter().map(|p| Step::Memory(*p)));
    }
}

impl Sampler for ScriptedSampler {
    fn sample(&mut self) -> Reading {
        while self.stalled.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let step = match self.queue.lock().unwrap().pop_front() {
            Some(step) => {
                *self.last.lock().unwrap() = step.clone();
                step
            }
            None => self.last.lock().unwrap().clone(),
        };
        let host = match step {
            Step::Memory(p) => Ok(HostStats {
                memory_total_bytes: self.total,
                memory_available_bytes: ((100.0 - p) / 100.0 * self.total as f64) as u64,
                memory_used_bytes: (p / 100.0 * self.total as f64) as u64,
                cpu_per_core_percent: vec![0.0, 0.0],
                load_average: Some([0.0; 3]),
                ..HostStats::default()
            }),
            Step::HostError => Err("injected host read failure".to_string()),
        };
        Reading {
            host,
            container: Ok(None),
            process: Ok(ProcessStats {
                pid: 1,
                rss_bytes: self.next_rss(),
                threads: Some(4),
                ..ProcessStats::default()
            }),
            gpu: Ok(self.gpus()),
        }
    }
}
