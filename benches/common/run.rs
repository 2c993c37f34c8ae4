//! One timed Maestro generation, and the memory-bandwidth floor, for the MusicGen benchmarks.

use std::ops::ControlFlow;
use std::time::Instant;

use maestro::musicgen::MusicGen;
use tch::{Device, Kind, Tensor};

use super::stats;

/// The prompt every benchmark generation uses.
pub const PROMPT: &str = "80s pop track with bassy drums and synth";

/// One Maestro generation, timed.
pub struct Run {
    pub steps_per_s: f64,
    pub decode_steps_per_s: f64,
    pub first_chunk_s: f64,
    /// First-chunk time over the decoding time of the steps that chunk needed.
    pub first_chunk_ratio: f64,
    /// Where the time went (`GenerationStats`): text encoding, decoding per step, the codec.
    pub text_ms: f64,
    pub step_ms: f64,
    pub codec_ms: f64,
    pub total_s: f64,
}

/// One sampled, guided generation of `steps` decoding steps (after an 8-frame warm-up), chunks of 0.5 s.
pub fn maestro(model: &MusicGen, steps: usize) -> Run {
    let frames = steps + 1 - model.num_codebooks();
    let mut req = model.request(PROMPT, 1.0);
    req.sampling.greedy = false;
    req.sampling.top_k = 250.min(model.codebook_size() as i64);
    req.sampling.top_p = 1.0;
    req.sampling.temperature = 1.0;
    req.guidance_scale = 3.0;
    req.chunk_frames = (model.frame_rate() / 2.0).round() as usize;
    let mut warm = req.clone();
    warm.frames = 8;
    model.generate(&[warm], |_| ControlFlow::Continue(())).expect("warm-up generation");
    req.frames = frames;
    let start = Instant::now();
    let stats = model.generate(&[req], |_| ControlFlow::Continue(())).expect("generation").remove(0);
    let seconds = start.elapsed().as_secs_f64();
    let step_s = stats.decode.as_secs_f64() / stats.steps as f64;
    let first = stats.first_chunk.map_or(f64::NAN, |d| d.as_secs_f64());
    let first_steps = stats.first_chunk_steps.unwrap_or(stats.steps) as f64;
    Run {
        steps_per_s: stats.steps as f64 / seconds,
        decode_steps_per_s: 1.0 / step_s,
        first_chunk_s: first,
        first_chunk_ratio: first / (first_steps * step_s),
        text_ms: stats.text_encode.as_secs_f64() * 1e3,
        step_ms: step_s * 1e3,
        codec_ms: stats.codec.as_secs_f64() * 1e3,
        total_s: seconds,
    }
}

/// Bytes per second this host streams `bytes` of f32 weights at: the faster of f32 `linear` with two
/// input rows (guidance's batch) and a plain sum over the same bytes. `linear` alone is no floor:
/// libtorch's two-row product reads well below what the memory delivers on some hosts (7.5 GB/s
/// where Maestro's kernels stream 23–27 GB/s), and a figure "above its floor" says nothing.
pub fn matvec_bandwidth(bytes: u64) -> f64 {
    let cols = 1024i64;
    let rows = (bytes / (cols as u64 * 4)) as i64;
    let w = Tensor::randn([rows, cols], (Kind::Float, Device::Cpu));
    let x = Tensor::randn([2, cols], (Kind::Float, Device::Cpu));
    let median = |op: &dyn Fn() -> Tensor| {
        let times: Vec<f64> = (0..7)
            .map(|_| {
                let start = Instant::now();
                let _ = op();
                start.elapsed().as_secs_f64()
            })
            .collect();
        stats::percentile(&times, 50.0)
    };
    let linear = median(&|| x.linear::<Tensor>(&w, None));
    let sum = median(&|| w.sum(Kind::Float));
    bytes as f64 / linear.min(sum)
}
