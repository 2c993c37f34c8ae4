//! Test harness: starts the real Maestro server in-process on `127.0.0.1:0` (on a scripted machine
//! whose figures are fixed) and runs the real `maestro` binary against it.
#![allow(dead_code)]

use std::{net::SocketAddr, path::PathBuf, process::Stdio, time::Duration};

use maestro::{
    app::App,
    config::Config,
    monitor::{
        sampler::{Reading, Sampler},
        snapshot::{GpuDevice, GpuStats, HostStats, ProcessStats},
    },
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::TcpListener,
    process::Command,
    task::JoinHandle,
};

/// How long one `maestro` run may take before the test fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// A machine whose readings never change.
#[derive(Clone, Debug)]
pub struct Machine {
    /// Host memory size.
    pub total_bytes: u64,
    /// Host memory in use, in percent.
    pub used_percent: f64,
    /// One GPU of this many bytes at 50 % memory, 40 % busy, 61 °C (none when 0).
    pub gpu_bytes: u64,
}

/// 64 GB, 20 % used, no GPU: everything small fits.
pub const ROOMY: Machine = Machine { total_bytes: 64_000_000_000, used_percent: 20.0, gpu_bytes: 0 };

/// 1 GB, 95 % used (a critical host-memory alert), and one 80 GB GPU.
pub const PRESSED: Machine =
    Machine { total_bytes: 1_000_000_000, used_percent: 95.0, gpu_bytes: 80_000_000_000 };

impl Sampler for Machine {
    fn sample(&mut self) -> Reading {
        let used = (self.total_bytes as f64 * self.used_percent / 100.0) as u64;
        let host = HostStats {
            memory_total_bytes: self.total_bytes,
            memory_available_bytes: self.total_bytes - used,
            memory_used_bytes: used,
            cpu_percent: 37.0,
            cpu_per_core_percent: vec![30.0, 44.0],
            load_average: Some([0.5, 0.4, 0.3]),
            ..HostStats::default()
        };
        let process = ProcessStats {
            pid: 4242,
            rss_bytes: 150 * 1024 * 1024,
            threads: Some(9),
            ..ProcessStats::default()
        };
        Reading { host: Ok(host), container: Ok(None), process: Ok(process), gpu: Ok(self.gpus()) }
    }
}

impl Machine {
    fn gpus(&self) -> GpuStats {
        if self.gpu_bytes == 0 {
            return GpuStats { unavailable_reason: "scripted: no GPU".into(), ..GpuStats::default() };
        }
        let device = GpuDevice {
            index: 0,
            name: "Scripted H100".into(),
            uuid: "GPU-scripted".into(),
            memory_total_bytes: Some(self.gpu_bytes),
            memory_used_bytes: Some(self.gpu_bytes / 2),
            memory_free_bytes: Some(self.gpu_bytes / 2),
            utilization_gpu_percent: Some(40.0),
            utilization_memory_percent: Some(10.0),
            temperature_celsius: Some(61.0),
            power_watts: Some(120.0),
            power_limit_watts: Some(700.0),
            process_memory_used_bytes: Some(0),
            compute_capability: (9, 0),
            ..GpuDevice::default()
        };
        GpuStats {
            available: true,
            driver_version: "scripted".into(),
            devices: vec![device],
            ..GpuStats::default()
        }
    }
}

/// The root crate's test fixtures, served as a model root (`musicgen-tiny` is a real tiny model).
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// The embedded defaults with ephemeral ports, fast sampling and the fixture models.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.metrics_listen = "127.0.0.1:0".parse().unwrap();
    config.server.drain_deadline = Duration::from_secs(5);
    config.server.drain_grace = Duration::ZERO;
    config.monitor.sample_interval = Duration::from_millis(100);
    config.models.roots = vec![fixtures()];
    config
}

/// A running server; dropping it shuts it down.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<maestro::shutdown::Trigger>,
    join: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    /// The `--addr` value for it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Shuts the server down and waits until it no longer listens.
    pub async fn stop(mut self) {
        self.stop.take().unwrap().request();
        self.join.take().unwrap().await.unwrap().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.request();
        }
    }
}

/// Starts a server on `machine` with [`test_config`] on an ephemeral port.
pub async fn start(machine: Machine) -> Server {
    start_on("127.0.0.1:0".parse().unwrap(), machine).await
}

/// Starts a server on `machine` listening on `addr` (a restart reuses the port it had).
pub async fn start_on(addr: SocketAddr, machine: Machine) -> Server {
    start_with(addr, test_config(), machine).await
}

/// Starts a server with `config` (its listen address aside) on `machine`, listening on `addr`.
pub async fn start_with(addr: SocketAddr, config: Config, machine: Machine) -> Server {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = App::build_with(config, Box::new(machine)).await.unwrap();
    let (stop, signals) = maestro::shutdown::Signals::channel();
    let join = tokio::spawn(app.serve(listener, signals));
    Server { addr, stop: Some(stop), join: Some(join) }
}

/// What one `maestro` run did.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Standard output parsed as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// Asserts the exit code, showing the whole run when it differs.
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(self.code, code, "unexpected exit code: {self:?}");
        self
    }
}

/// `maestro --addr <addr> <args>`, blind to the caller's `MAESTRO_ADDR` and `MAESTRO_TOKEN`.
fn command(addr: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_maestro"));
    cmd.env_remove("MAESTRO_ADDR").env_remove("MAESTRO_TOKEN");
    cmd.arg("--addr").arg(addr).args(args).kill_on_drop(true);
    cmd
}

/// Runs `maestro --addr <addr> <args>` to completion.
pub async fn maestro(addr: &str, args: &[&str]) -> Run {
    maestro_env(addr, &[], args).await
}

/// Runs `maestro --addr <addr> <args>` to completion with the environment variables `env` set.
pub async fn maestro_env(addr: &str, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut command = command(addr, args);
    command.envs(env.iter().copied());
    let output = tokio::time::timeout(RUN_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("maestro {args:?} did not finish"))
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs a streaming `maestro` command and returns its first `n` lines of output, then kills it.
pub async fn first_lines(addr: &str, args: &[&str], n: usize) -> Vec<String> {
    let mut child = command(addr, args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = Vec::new();
    while out.len() < n {
        let line = tokio::time::timeout(RUN_TIMEOUT, lines.next_line()).await;
        match line.unwrap_or_else(|_| panic!("maestro {args:?} printed {out:?} and then nothing")).unwrap() {
            Some(l) => out.push(l),
            None => panic!("maestro {args:?} ended after {out:?}"),
        }
    }
    child.kill().await.unwrap();
    out
}
