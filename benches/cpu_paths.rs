//! The CPU kernel paths side by side on the musicgen-small shape, in one run, 2 threads: for every
//! path this CPU runs (`kernels::Path`: avx512, avx2, generic; a path it lacks is printed with the
//! reason) and every decoder dtype (f32, f16, int8), one sampled, guided generation (T5, decoding,
//! EnCodec), with the memory-bandwidth floor measured in the same run: decoder bytes per step ÷ the
//! bandwidth of an f32 matrix-vector product over that many bytes, measured before each dtype's runs.
//!
//! The path is chosen per thread with `kernels::PathGuard`, so only Maestro's kernels change path;
//! libtorch's own ops (T5 beyond 12 tokens, EnCodec's convolutions) keep the CPU's best. To cap
//! them too, run the server with `--cpu-isa`.
//!
//! Then the same speed at every load: the model loaded `MAESTRO_BENCH_LOADS` times (3) in f16 and in
//! int8 on the best path, one generation per load, and the spread between the loads' decode speeds
//! (the step weights sit in one huge-page-advised arena, `decoder::arena`).
//!
//! Environment: `MAESTRO_BENCH_PATH_STEPS` (103: 2 s of audio; 503 for 10 s), `MAESTRO_BENCH_LOADS`.

mod common;
// The per-part timings of `run::Run` are the MusicGen benchmark's; this one reads the speeds.
#[allow(dead_code)]
#[path = "common/run.rs"]
mod run;
#[path = "common/stats.rs"]
mod stats;

use common::small_shape_dir;
use maestro::musicgen::{
    kernels::{self, PathGuard},
    DType, MusicGen,
};
use tch::Device;

const THREADS: i32 = 2;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    tch::set_num_threads(THREADS);
    let _guard = tch::no_grad_guard();
    let steps = env_usize("MAESTRO_BENCH_PATH_STEPS", 103);
    let dir = small_shape_dir();
    let paths = kernels::paths_here();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!("small shape, {steps} steps, guidance 3, {THREADS} threads, {cpu}");
    println!("\n| path | dtype | GB/step | decode steps/s | floor steps/s | of floor | end-to-end steps/s | first 0.5 s | vs {} |", paths[0]);
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for dtype in [DType::F32, DType::F16, DType::Int8] {
        let model = MusicGen::load(&dir, Device::Cpu, dtype).expect("small shape loads");
        let bytes = model.decoder_step_bytes();
        let floor = run::matvec_bandwidth(bytes) / bytes as f64;
        let mut best: Option<f64> = None;
        for path in &paths {
            let r = {
                let _path = PathGuard::new(*path);
                run::maestro(&model, steps)
            };
            let first = *best.get_or_insert(r.steps_per_s);
            println!(
                "| {path} | {dtype} | {:.2} | {:.1} | {floor:.1} | {:.0} % | {:.1} | {:.2} s | {:.2}x |",
                bytes as f64 / 1e9,
                r.decode_steps_per_s,
                100.0 * r.decode_steps_per_s / floor,
                r.steps_per_s,
                r.first_chunk_s,
                r.steps_per_s / first
            );
        }
    }
    loads(&dir, steps, env_usize("MAESTRO_BENCH_LOADS", 3));
}

/// Decode steps/s of one generation after each of `n` loads, per dtype, on the best path.
fn loads(dir: &std::path::Path, steps: usize, n: usize) {
    println!("\n| dtype | loads | decode steps/s per load | spread (max / min) | huge pages after each load, MiB |");
    println!("|---|---:|---|---:|---|");
    for dtype in [DType::F16, DType::Int8] {
        let (mut speeds, mut huge) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let model = MusicGen::load(dir, Device::Cpu, dtype).expect("loads");
            huge.push(format!("{:.0}", huge_page_mib()));
            speeds.push(run::maestro(&model, steps).decode_steps_per_s);
        }
        let (lo, hi) = speeds.iter().fold((f64::MAX, 0f64), |(lo, hi), s| (lo.min(*s), hi.max(*s)));
        let each: Vec<String> = speeds.iter().map(|s| format!("{s:.1}")).collect();
        println!("| {dtype} | {n} | {} | {:.2}x | {} |", each.join(", "), hi / lo, huge.join(", "));
    }
}

/// This process's anonymous memory in transparent huge pages (`/proc/self/smaps_rollup`), MiB.
fn huge_page_mib() -> f64 {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    let line = text.lines().find(|l| l.starts_with("AnonHugePages:")).unwrap_or("");
    line.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
}
