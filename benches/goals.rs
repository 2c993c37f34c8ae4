//! The CPU engine's speed goals, measured in one run: musicgen-small-shaped random weights, the
//! decoder in int8 (and int4 for its own goal), 10 s of audio (503 steps), guidance 3, 0.5 s chunks,
//! a warm model, 2 threads.
//!
//! - **Through the service**: a real `maestro-server` (`--torch-threads 2`), `LoadModel` int8 on the
//!   CPU, `Generate` timed by the client: steps/s of the whole call (T5, every step, sampling,
//!   EnCodec, the stream) and the time to the first chunk (the first 0.5 s of audio), with the
//!   server's own decoding rate from its summary beside them. Quiet, beside a
//!   busy neighbour (a busy loop pinned to core 1), and on a second server capped with
//!   `--cpu-isa avx2` (libtorch's own kernels capped too). Then `LoadModel` int4 on the first server,
//!   quiet.
//! - **ONNX Runtime's decoder loop alone**, int8 and fp32, on the same weights: `scripts/bench_onnx.py`
//!   in the venv `scripts/provision-onnx.sh` makes (about 7 GB, once); `MAESTRO_BENCH_ONNX=0` skips it.
//! - **In process**, for where the time goes: one generation's parts in int8 and int4
//!   (`GenerationStats`: text, decoding, codec, the rest) and the floor of every byte the step reads
//!   at the bandwidth measured here: the weights, and the self-attention cache averaged over the 503
//!   steps. Then the decoding rate that 60 steps/s end to end would need beside this run's text
//!   encoding and EnCodec, against that floor.
//!
//! Then each goal with its target, what was measured and whether it is met. Each configuration runs
//! `MAESTRO_BENCH_GOAL_RUNS` requests (3) and the best counts, since noise on a shared host only ever
//! slows a run; every run is printed.
//!
//! `source scripts/env.sh && cargo bench --bench goals`; part of `make bench`.

use std::{path::Path, process::Command};

mod common;
#[allow(dead_code)]
#[path = "common/run.rs"]
mod run;
// `Timed`'s frames and batch are the generation benchmark's.
#[path = "common/busy.rs"]
mod busy;
#[allow(dead_code)]
#[path = "common/server.rs"]
mod server;
#[path = "common/stats.rs"]
mod stats;

use busy::Busy;
use common::{repo, small_shape_dir};
use maestro::musicgen::{DType, MusicGen};
use server::{generate, request, Server, Timed};
use tonic::transport::Channel;

/// 10 s of audio: 500 frames and the delay pattern's 3 steps.
const SECONDS: f64 = 10.0;

/// The best and every run of one configuration.
struct Runs(Vec<Timed>);

impl Runs {
    async fn measure(channel: &Channel, n: usize) -> Self {
        let mut runs = Vec::new();
        for i in 0..n {
            runs.push(generate(channel.clone(), request(SECONDS, 1 + i as u64)).await);
        }
        Self(runs)
    }

    fn steps_per_s(&self) -> f64 {
        self.0.iter().map(|t| t.steps_per_s).fold(0.0, f64::max)
    }

    fn first_chunk_s(&self) -> f64 {
        self.0.iter().map(|t| t.first_chunk_s).fold(f64::MAX, f64::min)
    }

    fn each(&self) -> String {
        let runs: Vec<String> = self
            .0
            .iter()
            .map(|t| format!("{:.1} ({:.2} s; {:.1})", t.steps_per_s, t.first_chunk_s, t.decode_steps_per_s))
            .collect();
        runs.join(", ")
    }
}

/// ONNX Runtime's figures (`bench_onnx.py --json`): steps/s of every run per engine.
struct Onnx {
    int8: f64,
    fp32: f64,
    line: String,
}

fn onnx(dir: &Path, runs: usize) -> Option<Onnx> {
    if std::env::var("MAESTRO_BENCH_ONNX").is_ok_and(|v| v == "0") {
        return None;
    }
    let provision = Command::new(repo().join("scripts/provision-onnx.sh")).output().ok()?;
    if !provision.status.success() {
        eprintln!("scripts/provision-onnx.sh failed: {}", String::from_utf8_lossy(&provision.stderr));
        return None;
    }
    let python = String::from_utf8_lossy(&provision.stdout).trim().to_string();
    let json = std::env::temp_dir().join(format!("maestro-goals-onnx-{}.json", std::process::id()));
    let status = Command::new(python)
        .arg(repo().join("scripts/bench_onnx.py"))
        .arg(dir)
        .args(["--steps", "503", "--runs", &runs.to_string(), "--json"])
        .arg(&json)
        .status()
        .ok()?;
    let text = std::fs::read_to_string(&json);
    let _ = std::fs::remove_file(&json);
    let text = text.ok().filter(|_| status.success())?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let best =
        |name: &str| v[name].as_array().map(|r| r.iter().filter_map(|x| x.as_f64()).fold(0.0, f64::max));
    let runs = |name: &str| {
        let each: Vec<String> = v[name]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_f64())
            .map(|x| format!("{x:.1}"))
            .collect();
        each.join(", ")
    };
    Some(Onnx {
        int8: best("int8")?,
        fp32: best("fp32")?,
        line: format!(
            "ONNX Runtime {}: int8 {}; fp32 {}",
            v["version"].as_str().unwrap_or("?"),
            runs("int8"),
            runs("fp32")
        ),
    })
}

fn main() {
    let runs: usize = std::env::var("MAESTRO_BENCH_GOAL_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let dir = small_shape_dir();
    if std::env::var_os("MAESTRO_BENCH_GOALS_IN_PROCESS").is_some() {
        // Only the in-process part, `runs` times for each dtype of `MAESTRO_BENCH_DTYPES` (int8
        // unless set): for profiling and A/B runs of one change.
        let list = std::env::var("MAESTRO_BENCH_DTYPES").unwrap_or_else(|_| "int8".into());
        for name in list.split(',').map(str::trim) {
            let dtype = DType::parse(name).expect("MAESTRO_BENCH_DTYPES");
            for _ in 0..runs {
                in_process(&dir, dtype).print(name);
            }
        }
        return;
    }
    println!(
        "small shape, int8 and int4, {SECONDS} s of audio (503 steps), guidance 3, 2 threads, {}",
        common::host()
    );
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (quiet, busy, int4) = rt.block_on(async {
        let server = Server::start(&[]);
        let channel = server.channel().await;
        server::load(&channel, "int8").await;
        let quiet = Runs::measure(&channel, runs).await;
        let busy = match Busy::start() {
            Some(neighbour) => {
                let busy = Runs::measure(&channel, runs).await;
                drop(neighbour);
                Some(busy)
            }
            None => None,
        };
        server::load(&channel, "int4").await;
        let int4 = Runs::measure(&channel, runs).await;
        (quiet, busy, int4)
    });
    let ort = onnx(&dir, runs);
    let avx2 = rt.block_on(async {
        let server = Server::start(&["--cpu-isa", "avx2"]);
        let channel = server.channel().await;
        server::load(&channel, "int8").await;
        Runs::measure(&channel, runs).await
    });
    let (int8_parts, int4_parts) = (in_process(&dir, DType::Int8), in_process(&dir, DType::Int4));

    println!("\n| configuration | steps/s (first 0.5 s; the server's decoding alone, steps/s) per run |");
    println!("|---|---|");
    println!("| service, int8, quiet | {} |", quiet.each());
    if let Some(b) = &busy {
        println!("| service, int8, busy neighbour on core 1 | {} |", b.each());
    }
    println!("| service, int8, `--cpu-isa avx2` | {} |", avx2.each());
    println!("| service, int4, quiet | {} |", int4.each());
    match &ort {
        Some(o) => println!("| {} | |", o.line),
        None => println!("| ONNX Runtime: not run (`MAESTRO_BENCH_ONNX=0` or its venv failed) | |"),
    }
    println!();
    int8_parts.print("int8");
    int4_parts.print("int4");
    let needed = int8_parts.needed_for(60.0);
    println!(
        "60 steps/s end to end leaves int8's 503 steps {:.2} s beside text and EnCodec ({:.2} s here): \
         decoding at {needed:.1} steps/s, {:.0} % of its floor.",
        503.0 / needed,
        int8_parts.other_s,
        100.0 * needed / int8_parts.floor
    );

    let (e2e, first) = (quiet.steps_per_s(), quiet.first_chunk_s());
    println!("\n| goal | target | measured | |");
    println!("|---|---|---|---|");
    goal("end to end through the service", "≥ 60 steps/s", format!("{e2e:.1} steps/s"), e2e >= 60.0);
    goal("first 0.5 s of audio", "≤ 0.6 s", format!("{first:.2} s"), first <= 0.6);
    if let Some(o) = &ort {
        let r = e2e / o.int8;
        goal(
            "against ONNX Runtime int8's decoder loop",
            "≥ 1.2x",
            format!("{r:.2}x ({:.1} steps/s; its fp32 {:.1})", o.int8, o.fp32),
            r >= 1.2,
        );
    }
    if let Some(o) = &ort {
        let r = int4.steps_per_s() / o.int8;
        let measured = format!("{r:.2}x ({:.1} steps/s)", int4.steps_per_s());
        goal("int4 against ONNX Runtime int8's decoder loop", "≥ 1.5x", measured, r >= 1.5);
    }
    let r = avx2.steps_per_s() / e2e;
    goal("`--cpu-isa avx2` against the best path", "≥ 0.7x", format!("{r:.2}x"), r >= 0.7);
    if let Some(b) = &busy {
        let r = b.steps_per_s() / e2e;
        goal("beside a busy neighbour against quiet", "≥ 0.5x", format!("{r:.2}x"), r >= 0.5);
    }
}

fn goal(what: &str, target: &str, measured: String, met: bool) {
    println!("| {what} | {target} | {measured} | {} |", if met { "met" } else { "**not met**" });
}

/// One in-process generation of 503 steps and the floors of its step, in steps/s.
struct InProcess {
    /// The generation's parts, printed.
    parts: String,
    /// Decoding steps per second (passes and sampling).
    decoding: f64,
    /// Text encoding, EnCodec and the rest, seconds: what 503 steps share the end-to-end time with.
    other_s: f64,
    /// The weights' floor: their bytes at the bandwidth measured here.
    weights_floor: f64,
    /// Every byte's floor: the weights plus the self-attention cache, averaged over the 503 steps.
    floor: f64,
    /// Megabytes a step reads: weights, and the cache on average.
    weights_mb: f64,
    cache_mb: f64,
}

/// The `dtype` step's floors and one in-process generation's parts.
fn in_process(dir: &Path, dtype: DType) -> InProcess {
    tch::set_num_threads(2);
    let _guard = tch::no_grad_guard();
    let model = MusicGen::load(dir, tch::Device::Cpu, dtype).expect("small shape loads");
    let weights = model.decoder_step_bytes();
    // A guided request is two rows; position p reads p + 1 cached positions, 252 on average.
    let cache = model.decoder_cache_bytes(2, (1..=503u64).sum::<u64>()) / 503;
    let bandwidth = run::matvec_bandwidth(weights);
    let r = run::maestro(&model, 503);
    let decode_ms = r.step_ms * 503.0;
    let other = r.total_s * 1e3 - r.text_ms - decode_ms - r.codec_ms;
    let parts = format!(
        "{:.1} steps/s end to end, {:.1} decoding; text {:.0} ms, decoding {:.0} ms ({:.2} ms/step), \
         codec {:.0} ms, the rest {:.0} ms",
        r.steps_per_s, r.decode_steps_per_s, r.text_ms, decode_ms, r.step_ms, r.codec_ms, other
    );
    InProcess {
        parts,
        decoding: r.decode_steps_per_s,
        other_s: (r.text_ms + r.codec_ms + other) / 1e3,
        weights_floor: bandwidth / weights as f64,
        floor: bandwidth / (weights + cache) as f64,
        weights_mb: weights as f64 / 1e6,
        cache_mb: cache as f64 / 1e6,
    }
}

impl InProcess {
    fn print(&self, dtype: &str) {
        println!(
            "In process, {dtype}, one generation: {}. A step reads {:.0} MB of weights and {:.0} MB of \
             cache on average: floor {:.1} steps/s (the weights alone {:.1}); decoding runs at {:.0} % of it.",
            self.parts,
            self.weights_mb,
            self.cache_mb,
            self.floor,
            self.weights_floor,
            100.0 * self.decoding / self.floor
        );
    }

    /// The decoding rate 60 steps/s end to end needs beside this run's text encoding and EnCodec.
    fn needed_for(&self, end_to_end: f64) -> f64 {
        503.0 / (503.0 / end_to_end - self.other_s)
    }
}
