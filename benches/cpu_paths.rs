//! The CPU kernel paths side by side on the musicgen-small shape, in one run, 2 threads: for every
//! path this CPU runs (`kernels::Path`: avx512_vnni, avx512, avx2_vnni, avx2, generic; a path it
//! lacks is printed with the reason; the VNNI paths only for int8 and int4, the dtypes they change) and
//! every decoder dtype (f32, f16, int8, int4), one sampled, guided generation (T5, decoding,
//! EnCodec), with the memory-bandwidth floor measured in the same run: decoder bytes per step ÷ the
//! bandwidth of streaming that many f32 bytes (`run::matvec_bandwidth`: the faster of a two-row
//! `linear` and a plain sum), measured before each dtype's runs.
//!
//! The path is chosen per thread with `kernels::PathGuard`, so only Maestro's kernels change path;
//! libtorch's own ops (T5 beyond 12 tokens, EnCodec's convolutions) keep the CPU's best. To cap
//! them too, run the server with `--cpu-isa`.
//!
//! First the int8 and int4 kernels alone (`kernels::gemv_i8_on`, `gemv_i4_on`) on every path over
//! musicgen-small's decoder matrices, the VNNI paths (int8 activations quantised per row, int32
//! products) beside the f32-activation paths in the same run; then EnCodec's LSTM pieces for one 0.5 s chunk (the input projection on
//! the permuted window and on a contiguous copy, the recurrence with f32 and f16 weights);
//! `MAESTRO_BENCH_KERNELS_ONLY=1` stops after them.
//!
//! Then the same speed at every load: the model loaded `MAESTRO_BENCH_LOADS` times (3) in f16 and in
//! int8 on the best path, one generation per load, and the spread between the loads' decode speeds
//! (the step weights sit in one huge-page-advised arena, `decoder::arena`).
//!
//! Last, the same speed beside a busy neighbour: f16 and int8 on the best path, quiet and with
//! another process spinning on core 1, the kernels' loops on the persistent thread team
//! (`csrc/team.h`) and through libtorch's `at::parallel_for` (`kernels::use_thread_team`).
//!
//! Environment: `MAESTRO_BENCH_PATH_STEPS` (103: 2 s of audio; 503 for 10 s), `MAESTRO_BENCH_LOADS`,
//! `MAESTRO_BENCH_KERNELS_ONLY`, `MAESTRO_BENCH_DTYPES` (a comma list: f32,f16,int8,int4).

mod common;
// The per-part timings of `run::Run` are the MusicGen benchmark's; this one reads the speeds.
#[path = "common/busy.rs"]
mod busy;
#[allow(dead_code)]
#[path = "common/run.rs"]
mod run;
#[path = "common/stats.rs"]
mod stats;

use busy::Busy;
use common::small_shape_dir;
use maestro::musicgen::{
    kernels::{self, PathGuard},
    DType, MusicGen,
};
use tch::{Device, Kind, Tensor};

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
    println!("small shape, {steps} steps, guidance 3, {THREADS} threads, {}", common::host());
    quantised_kernels(&paths);
    codec_lstm();
    if std::env::var_os("MAESTRO_BENCH_KERNELS_ONLY").is_some() {
        return;
    }
    println!("\n| path | dtype | GB/step | decode steps/s | floor steps/s | of floor | end-to-end steps/s | first 0.5 s | vs {} |", paths[0]);
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let dtypes: Vec<DType> = match std::env::var("MAESTRO_BENCH_DTYPES") {
        Ok(list) => list.split(',').map(|d| DType::parse(d.trim()).expect("MAESTRO_BENCH_DTYPES")).collect(),
        Err(_) => vec![DType::F32, DType::F16, DType::Int8, DType::Int4],
    };
    for &dtype in &dtypes {
        // The VNNI paths differ from their width's only in int8 and int4 products.
        let paths: Vec<_> =
            paths.iter().filter(|p| dtype.is_quantised() || !p.quantises_activations()).collect();
        let model = MusicGen::load(&dir, Device::Cpu, dtype).expect("small shape loads");
        let bytes = model.decoder_step_bytes();
        let floor = run::matvec_bandwidth(bytes) / bytes as f64;
        let mut best: Option<f64> = None;
        for path in paths {
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
    loads(&dir, steps, env_usize("MAESTRO_BENCH_LOADS", 3), &dtypes);
    neighbour(&dir, steps, &dtypes);
}

/// Decode and end-to-end steps/s on the best path, quiet and beside a busy neighbour (another
/// process spinning on core 1, `taskset -c 1`), with the kernels' loops on the thread team and
/// through libtorch's `at::parallel_for`, all in this run.
fn neighbour(dir: &std::path::Path, steps: usize, dtypes: &[DType]) {
    println!("\n| dtype | loops on | quiet: decode, end to end | busy neighbour: decode, end to end | busy / quiet (decode) |");
    println!("|---|---|---|---|---:|");
    for &dtype in dtypes.iter().filter(|d| matches!(d, DType::F16 | DType::Int8)) {
        let model = MusicGen::load(dir, Device::Cpu, dtype).expect("loads");
        for (team, name) in [(true, "thread team"), (false, "at::parallel_for")] {
            kernels::use_thread_team(team);
            let quiet = run::maestro(&model, steps);
            let Some(busy) = Busy::start() else {
                println!("| {dtype} | {name} | no busy neighbour: `taskset` did not start |||");
                continue;
            };
            let loaded = run::maestro(&model, steps);
            drop(busy);
            println!(
                "| {dtype} | {name} | {:.1}, {:.1} | {:.1}, {:.1} | {:.2}x |",
                quiet.decode_steps_per_s,
                quiet.steps_per_s,
                loaded.decode_steps_per_s,
                loaded.steps_per_s,
                loaded.decode_steps_per_s / quiet.decode_steps_per_s
            );
        }
        kernels::use_thread_team(true);
    }
}

/// Decode steps/s of one generation after each of `n` loads, per dtype, on the best path.
fn loads(dir: &std::path::Path, steps: usize, n: usize, dtypes: &[DType]) {
    println!("\n| dtype | loads | decode steps/s per load | spread (max / min) | huge pages after each load, MiB |");
    println!("|---|---:|---|---:|---|");
    for &dtype in dtypes.iter().filter(|d| matches!(d, DType::F16 | DType::Int8)) {
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

/// GB/s of the int8 and int4 products on every path over musicgen-small's decoder matrices (24
/// layers: 3072×1024 fused QKV, 3 × 1024×1024, 4096×1024, 1024×4096) with 2, 4 and 8 rows, best of 7
/// passes, and each path's ratio to the first (the best this CPU has) in the same run.
fn quantised_kernels(paths: &[kernels::Path]) {
    let (h, f) = (1024, 4096);
    let mut shapes = vec![[3 * h, h], [f, h], [h, f]];
    shapes.extend([[h, h]; 3]);
    let shapes: Vec<[i64; 2]> = (0..24).flat_map(|_| shapes.clone()).collect();
    let int8: Vec<(Tensor, Tensor)> = shapes
        .iter()
        .map(|&s| {
            let w = Tensor::randint_low(-127, 128, s, (Kind::Int8, Device::Cpu));
            let scale = Tensor::rand([s[0]], (Kind::Float, Device::Cpu)) * 0.01;
            let scales = kernels::int8_scales(&w, &scale);
            (w, scales)
        })
        .collect();
    let bytes = |ws: &mut dyn Iterator<Item = &Tensor>| ws.map(|w| w.numel()).sum::<usize>() as f64;
    kernel_table("int8", bytes(&mut int8.iter().map(|(w, _)| w)), &shapes, paths, |path, i, x| {
        kernels::gemv_i8_on(path, x, &int8[i].0, &int8[i].1)
    });
    drop(int8);
    let int4: Vec<Tensor> = shapes
        .iter()
        .map(|&s| kernels::pack_int4(&(Tensor::randn(s, (Kind::Float, Device::Cpu)) * 0.05)))
        .collect();
    kernel_table("int4", bytes(&mut int4.iter()), &shapes, paths, |path, i, x| {
        kernels::gemv_i4_on(path, x, &int4[i])
    });
}

/// One kernel table: `product(path, i, x)` over every matrix `i` of `shapes` (`bytes` in all).
fn kernel_table(
    name: &str,
    bytes: f64,
    shapes: &[[i64; 2]],
    paths: &[kernels::Path],
    product: impl Fn(kernels::Path, usize, &Tensor) -> Option<Tensor>,
) {
    println!("\n| {name} kernel path | rows | GB | GB/s | vs {} |", paths[0]);
    println!("|---|---:|---:|---:|---:|");
    for rows in [2, 4, 8] {
        let inputs: Vec<Tensor> =
            shapes.iter().map(|s| Tensor::randn([rows, s[1]], (Kind::Float, Device::Cpu))).collect();
        let mut first = None;
        for path in paths {
            let best = (0..7)
                .map(|_| {
                    let start = std::time::Instant::now();
                    for (i, x) in inputs.iter().enumerate() {
                        drop(product(*path, i, x).expect("the kernel applies"));
                    }
                    start.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min);
            let gbs = bytes / best / 1e9;
            let base = *first.get_or_insert(gbs);
            println!("| {path} | {rows} | {:.2} | {gbs:.1} | {:.2}x |", bytes / 1e9, gbs / base);
        }
    }
}

/// EnCodec's LSTM (32 kHz codec: 1024 wide) over one 0.5 s chunk of 25 frames, best of 20, alone:
/// the input projection through libtorch's `linear` on the permuted window the LSTM receives and on
/// a contiguous copy (what `encodec::lstm` does), and the recurrence (`kernels::lstm_layer`, best
/// path) with f32 and with f16 hidden-to-hidden weights.
fn codec_lstm() {
    let (dim, frames) = (1024, 25);
    let best = |f: &dyn Fn()| {
        (0..20)
            .map(|_| {
                let start = std::time::Instant::now();
                f();
                start.elapsed().as_secs_f64() * 1e3
            })
            .fold(f64::INFINITY, f64::min)
    };
    let w_ih = Tensor::randn([4 * dim, dim], (Kind::Float, Device::Cpu)) * 0.03;
    let bias = Tensor::randn([4 * dim], (Kind::Float, Device::Cpu));
    // The codec's (batch, dim, frames), seen as (frames, batch, dim).
    let window = Tensor::randn([1, dim, frames], (Kind::Float, Device::Cpu)).permute([2, 0, 1]);
    println!("\n| EnCodec LSTM, one chunk ({frames} frames, {dim} wide) | ms |");
    println!("|---|---:|");
    let permuted = best(&|| drop(window.linear(&w_ih, Some(&bias))));
    println!("| input projection, `linear` on the permuted window | {permuted:.2} |");
    let contiguous = best(&|| drop(window.contiguous().linear(&w_ih, Some(&bias))));
    println!("| input projection, `linear` on a contiguous copy | {contiguous:.2} |");
    let gates = Tensor::randn([frames, 1, 4 * dim], (Kind::Float, Device::Cpu));
    let state = Tensor::zeros([1, dim], (Kind::Float, Device::Cpu));
    let w_hh = Tensor::randn([4 * dim, dim], (Kind::Float, Device::Cpu)) * 0.03;
    for kind in [Kind::Float, Kind::Half] {
        let w = w_hh.to_kind(kind);
        let ms =
            best(&|| drop(kernels::lstm_layer(&gates, &w, &state, &state).expect("the LSTM kernel applies")));
        println!(
            "| recurrence, {kind:?} weights ({} MB), per frame | {:.3} |",
            (w.numel() * w.kind().elt_size_in_bytes()) >> 20,
            ms / frames as f64
        );
    }
}
