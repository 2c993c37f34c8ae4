//! MusicGen benchmark: Maestro's native MusicGen beside transformers' `generate()` on the same weights,
//! in one run, 2 threads, the same prompt, sampling with top-k 250 and guidance 3.
//!
//! - overhead-bound: the tiny fixture model, steps per second (whole generate: text, steps, audio);
//! - bandwidth-bound: a musicgen-small-shaped random checkpoint (made by `scripts/make_reference.py
//!   --small-shape` into `~/.cache/maestro/` on first use), f32 and with the decoder in f16: steps per
//!   second, time to the first 0.5 s of audio, and the memory-bandwidth floor measured now (decoder bytes
//!   read per step ÷ the bandwidth of a matrix–vector product over a matrix of that size).
//!
//! Further tables: where each small-shape run's time went (text encoding, decoding per step, codec),
//! what a 10 s audio prompt costs on the small shape (EnCodec encode, then the decoder's prefill) and
//! what a 30 s melody's chroma costs,
//! the CPU matrix-vector kernel beside libtorch's `linear` on the decoder's matrices, and the kernel
//! in passes of up to 16 rows beside libtorch on T5's matrices at a prompt's row counts.
//!
//! The small shape runs in rounds (f32, then f16, with the bandwidth floor measured around them);
//! the main table gives medians over the rounds.
//!
//! Environment: `MAESTRO_BENCH_TINY_STEPS` (250), `MAESTRO_BENCH_SMALL_STEPS` (100),
//! `MAESTRO_BENCH_ROUNDS` (3), `MAESTRO_BENCH_SKIP_SMALL=1` to run the tiny model only.

use std::ops::ControlFlow;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

mod common;
#[path = "common/run.rs"]
mod run;
#[path = "common/stats.rs"]
mod stats;

use common::{python, repo, small_shape_dir};
use maestro::chroma::{ChromaConfig, ChromaExtractor};
use maestro::musicgen::{kernels, AudioEncoder, DType, MusicGen};
use run::{maestro, matvec_bandwidth, Run, PROMPT};
use tch::{Device, Kind, Tensor};

const THREADS: i32 = 2;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn transformers(dir: &Path, steps: usize) -> f64 {
    let out = Command::new(python())
        .arg(repo().join("scripts/bench_transformers.py"))
        .arg(dir)
        .args(["--steps", &steps.to_string(), "--threads", &THREADS.to_string()])
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let parsed: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|_| panic!("bench_transformers.py failed: {}", String::from_utf8_lossy(&out.stderr)));
    parsed["steps_per_s"].as_f64().expect("steps_per_s")
}

struct Table(Vec<[String; 5]>);

impl Table {
    fn row(&mut self, what: &str, ours: String, theirs: String, ratio: String, target: &str) {
        self.0.push([what.into(), ours, theirs, ratio, target.into()]);
    }

    fn print(&self) {
        println!("| measurement | Maestro | baseline | ratio | target |");
        println!("|---|---|---|---|---|");
        for r in &self.0 {
            println!("| {} | {} | {} | {} | {} |", r[0], r[1], r[2], r[3], r[4]);
        }
    }
}

fn main() {
    tch::set_num_threads(THREADS);
    let _guard = tch::no_grad_guard();
    let mut table = Table(Vec::new());
    let tiny_steps = env_usize("MAESTRO_BENCH_TINY_STEPS", 250);
    let tiny_dir = repo().join("tests/fixtures/musicgen-tiny");
    let tiny = MusicGen::load(&tiny_dir, Device::Cpu, DType::F32).expect("tiny fixture loads");
    let ours = maestro(&tiny, tiny_steps);
    let theirs = transformers(&tiny_dir, tiny_steps);
    table.row(
        "tiny, steps/s (transformers baseline)",
        format!("{:.0}", ours.steps_per_s),
        format!("{theirs:.0}"),
        format!("{:.1}x", ours.steps_per_s / theirs),
        "≥ 5x",
    );
    if std::env::var("MAESTRO_BENCH_SKIP_SMALL").is_err() {
        small_shape(&mut table, env_usize("MAESTRO_BENCH_SMALL_STEPS", 100));
    }
    table.print();
    if !kernels::supported() {
        // Every path above then ran through libtorch; there is no kernel to set beside it.
        println!("\nThe native kernels were not built, so their tables are skipped.");
        return;
    }
    kernel_vs_libtorch();
    blocked_vs_libtorch();
}

/// GB/s of `musicgen::kernels::gemv` beside libtorch's `linear` over musicgen-small's decoder
/// matrices (24 layers: 3072×1024 fused QKV, 3 × 1024×1024, 4096×1024, 1024×4096), with the 2 rows
/// of one guided step and the 8 of four, best of 5 passes over all of them.
fn kernel_vs_libtorch() {
    let (h, f) = (1024, 4096);
    let mut shapes = vec![[3 * h, h], [f, h], [h, f]];
    shapes.extend([[h, h]; 3]);
    println!("\n| dtype | rows | bytes | kernel GB/s | libtorch linear GB/s | ratio |");
    println!("|---|---:|---:|---:|---:|---:|");
    for kind in [Kind::Float, Kind::Half, Kind::BFloat16] {
        let weights: Vec<Tensor> = (0..24)
            .flat_map(|_| shapes.iter().map(|s| Tensor::randn(*s, (Kind::Float, Device::Cpu)).to_kind(kind)))
            .collect();
        let bytes: i64 = weights.iter().map(|w| w.numel() as i64 * kind.elt_size_in_bytes() as i64).sum();
        for rows in [2, 8] {
            let inputs: Vec<Tensor> = weights
                .iter()
                .map(|w| Tensor::randn([rows, w.size()[1]], (Kind::Float, Device::Cpu)).to_kind(kind))
                .collect();
            let ours = best_pass(&weights, &inputs, &|x, w| kernels::gemv(x, w).expect("the kernel applies"));
            let theirs = best_pass(&weights, &inputs, &|x, w| x.linear::<Tensor>(w, None));
            let gbs = |s: f64| bytes as f64 / s / 1e9;
            println!(
                "| {kind:?} | {rows} | {:.2} GB | {:.1} | {:.1} | {:.2}x |",
                bytes as f64 / 1e9,
                gbs(ours),
                gbs(theirs),
                theirs / ours
            );
        }
    }
}

/// One round of the small shape: an f32 run and an f16 run back to back, with the f32 bandwidth
/// measured before and after them.
struct Round {
    f32: Run,
    f16: Run,
    /// Bytes per second of the floor's matrix-vector product, averaged over before and after.
    bandwidth: f64,
}

impl Round {
    fn run(&self, f16: bool) -> &Run {
        if f16 {
            &self.f16
        } else {
            &self.f32
        }
    }
}

/// Seconds of the fastest of 5 passes of `f` over every (input, weight) pair.
fn best_pass(weights: &[Tensor], inputs: &[Tensor], f: &dyn Fn(&Tensor, &Tensor) -> Tensor) -> f64 {
    (0..5)
        .map(|_| {
            let start = Instant::now();
            weights.iter().zip(inputs).for_each(|(w, x)| drop(f(x, w)));
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// The kernel in passes of up to 16 rows beside libtorch's f32 `linear` on t5-base's encoder matrices
/// (12 layers: 2304×768 fused QKV, 768×768, 3072×768, 768×3072), at the row counts of prompts: the
/// evidence for `kernels::MAX_BLOCKED_ROWS`.
fn blocked_vs_libtorch() {
    let (d, f) = (768, 3072);
    let shapes = [[3 * d, d], [d, d], [f, d], [d, f]];
    let weights: Vec<Tensor> =
        (0..12).flat_map(|_| shapes.map(|s| Tensor::randn(s, (Kind::Float, Device::Cpu)))).collect();
    println!("\n| T5 rows | kernel in passes of ≤ 16 rows, ms | libtorch linear, ms | ratio |");
    println!("|---:|---:|---:|---:|");
    for rows in [8, 12, 16, 24, 32] {
        let inputs: Vec<Tensor> =
            weights.iter().map(|w| Tensor::randn([rows, w.size()[1]], (Kind::Float, Device::Cpu))).collect();
        let blocked = best_pass(&weights, &inputs, &|x, w| kernels::gemv_blocked(x, w).expect("applies"));
        let torch = best_pass(&weights, &inputs, &|x, w| x.linear::<Tensor>(w, None));
        println!("| {rows} | {:.1} | {:.1} | {:.2}x |", blocked * 1e3, torch * 1e3, torch / blocked);
    }
}

fn small_shape(table: &mut Table, steps: usize) {
    let dir = small_shape_dir();
    let f32_model = MusicGen::load(&dir, Device::Cpu, DType::F32).expect("small shape loads");
    let f16_model = MusicGen::load(&dir, Device::Cpu, DType::F16).expect("small shape loads in f16");
    let (f32_bytes, f16_bytes) = (f32_model.decoder_step_bytes(), f16_model.decoder_step_bytes());
    // The machine's memory bandwidth drifts by tens of percent between minutes on a shared host: the
    // two precisions alternate, each round's floor is measured right around its runs, and the table
    // reports medians over the rounds (ratios per round, so each compares runs seconds apart). The
    // f16 floor is the same bandwidth over half the bytes: measured with f32's `linear`, because
    // libtorch's f16 `linear` streams at less than half of it on this CPU.
    let rounds: Vec<Round> = (0..env_usize("MAESTRO_BENCH_ROUNDS", 3).max(1))
        .map(|_| {
            let before = matvec_bandwidth(f32_bytes);
            let (f32, f16) = (maestro(&f32_model, steps), maestro(&f16_model, steps));
            let bandwidth = (before + matvec_bandwidth(f32_bytes)) / 2.0;
            Round { f32, f16, bandwidth }
        })
        .collect();
    drop(f16_model);
    audio_prompt(&dir, &f32_model, med_step_ms(&rounds));
    drop(f32_model);
    let theirs = transformers(&dir, steps);
    let med = |f: &dyn Fn(&Round) -> f64| stats::percentile(&rounds.iter().map(f).collect::<Vec<_>>(), 50.0);
    let floor = |bytes: u64| med(&|r| r.bandwidth) / bytes as f64;
    let x = |a: f64, b: f64| format!("{:.2}x", a / b);
    let f32_steps = med(&|r| r.f32.steps_per_s);
    table.row(
        "small f32, steps/s (transformers baseline)",
        format!("{f32_steps:.2}"),
        format!("{theirs:.2}"),
        x(f32_steps, theirs),
        "≥ 1.2x",
    );
    let gb = |bytes: u64| bytes as f64 / 1e9;
    for (name, f16, bytes, target) in [("f32", false, f32_bytes, "≥ 85 %"), ("f16", true, f16_bytes, "")] {
        table.row(
            &format!("small {name}, decode steps/s vs bandwidth floor ({:.2} GB/step)", gb(bytes)),
            format!("{:.2}", med(&|r| r.run(f16).decode_steps_per_s)),
            format!("{:.2}", floor(bytes)),
            format!("{:.0} %", 100.0 * med(&|r| r.run(f16).decode_steps_per_s * bytes as f64 / r.bandwidth)),
            target,
        );
    }
    table.row(
        "small f16 decoder, steps/s (Maestro f32 baseline)",
        format!("{:.2}", med(&|r| r.f16.steps_per_s)),
        format!("{f32_steps:.2}"),
        format!("{:.2}x", med(&|r| r.f16.steps_per_s / r.f32.steps_per_s)),
        "≥ 1.7x",
    );
    table.row(
        "small f16 decoder, decode steps/s only (Maestro f32 baseline)",
        format!("{:.2}", med(&|r| r.f16.decode_steps_per_s)),
        format!("{:.2}", med(&|r| r.f32.decode_steps_per_s)),
        format!("{:.2}x", med(&|r| r.f16.decode_steps_per_s / r.f32.decode_steps_per_s)),
        "",
    );
    for (name, f16) in [("f32", false), ("f16", true)] {
        table.row(
            &format!("small {name}, first 0.5 s of audio (s; vs its steps' decode time)"),
            format!("{:.2}", med(&|r| r.run(f16).first_chunk_s)),
            "".into(),
            format!("{:.2}x", med(&|r| r.run(f16).first_chunk_ratio)),
            "≤ 1.15x",
        );
    }
    println!("\n| small run | round | steps | text ms | decode ms/step | codec ms | total s | f16 vs f32 |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (i, r) in rounds.iter().enumerate() {
        for (name, run) in [("f32", &r.f32), ("f16 decoder", &r.f16)] {
            let (text, step, codec, total) = (run.text_ms, run.step_ms, run.codec_ms, run.total_s);
            let ratio = if name == "f32" { String::new() } else { x(r.f16.steps_per_s, r.f32.steps_per_s) };
            println!(
                "| {name} | {} | {steps} | {text:.0} | {step:.1} | {codec:.0} | {total:.2} | {ratio} |",
                i + 1
            );
        }
    }
}

fn med_step_ms(rounds: &[Round]) -> f64 {
    stats::percentile(&rounds.iter().map(|r| r.f32.step_ms).collect::<Vec<_>>(), 50.0)
}

/// A 10 s clip continued on the small shape (f32): the EnCodec encode, then the prefill, which
/// feeds the clip's 500 frames to the decoder in one call. A continuation of one frame decodes the
/// prefill and the delay pattern's three single steps; those are taken off at the per-step time the
/// runs above measured, and the prefill is set beside 500 single steps.
fn audio_prompt(dir: &Path, model: &MusicGen, step_ms: f64) {
    let encoder = AudioEncoder::load(dir, Device::Cpu).expect("the encoder loads");
    let samples = 10 * model.sample_rate() as i64;
    let t = Tensor::arange(samples, (Kind::Float, Device::Cpu)) / f64::from(model.sample_rate());
    let clip = ((t * (2.0 * std::f64::consts::PI * 220.0)).sin() * 0.3).view([1, samples]);
    let started = Instant::now();
    let codes = encoder.encode(&clip).expect("the clip encodes");
    let encode_ms = started.elapsed().as_secs_f64() * 1e3;
    let prompt = codes[0].len();
    let mut req = model.request(PROMPT, 1.0);
    (req.frames, req.prompt_codes, req.sampling.greedy) = (1, codes, true);
    let stats = model.generate(&[req], |_| ControlFlow::Continue(())).expect("the continuation runs");
    let delay_steps = (model.num_codebooks() / model.channels() - 1) as f64;
    let prefill_ms = stats[0].decode.as_secs_f64() * 1e3 - delay_steps * step_ms;
    let stepwise_ms = prompt as f64 * step_ms;
    println!("\n| 10 s audio prompt, small shape f32 | ms |");
    println!("|---|---:|");
    println!("| EnCodec encode + RVQ ({samples} samples) | {encode_ms:.0} |");
    println!("| decoder prefill ({prompt} frames in one call) | {prefill_ms:.0} |");
    println!(
        "| {prompt} single decode steps ({step_ms:.1} ms each, from the runs above) | {stepwise_ms:.0} |"
    );
    println!("| prefill vs single steps | {:.2}x faster |", stepwise_ms / prefill_ms.max(1e-9));
    // A melody checkpoint's audio in: the chroma of a 30 s melody with the published extractor.
    let extractor = ChromaExtractor::new(ChromaConfig::default()).expect("the published settings");
    let rate = extractor.config().sampling_rate as usize;
    let melody: Vec<f32> = (0..30 * rate).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
    let started = Instant::now();
    let frames = extractor.one_hot(&melody).len();
    let chroma_ms = started.elapsed().as_secs_f64() * 1e3;
    println!("| chroma of a 30 s melody (n_fft 16384, hop 4096: {frames} frames) | {chroma_ms:.0} |");
}
