//! Generation through the service: time to first chunk and steps/s over gRPC against in-process
//! generation on the same weights (the service's overhead), and aggregate frames/s for 1, 2 and 4
//! concurrent requests (dynamic batching), on the musicgen-small-shaped random checkpoint.
//!
//! `source scripts/env.sh && cargo bench --bench generation [-- SECONDS]` (default 2 s of audio per
//! request); part of `make bench`. The checkpoint is made once into `~/.cache/maestro/` by
//! `scripts/make_reference.py --small-shape` (the musicgen benchmark makes the same one).

use std::{ops::ControlFlow, path::Path, time::Instant};

mod common;
#[path = "common/server.rs"]
mod server;

use common::small_shape_dir;
use maestro::musicgen::{DType, MusicGen};
use server::{generate, request, Server, PROMPT};
use tonic::transport::Channel;

const MODEL: &str = common::SMALL_SHAPE;

/// (time to first chunk, steps/s) of one in-process generation.
fn in_process(dir: &Path, seconds: f64) -> (f64, f64) {
    tch::set_num_threads(2);
    let model = MusicGen::load(dir, tch::Device::Cpu, DType::F32).expect("load");
    let mut req = model.request(PROMPT, seconds);
    req.seed = 1;
    req.chunk_frames = (model.frame_rate() / 2.0).round() as usize;
    let mut warm = req.clone();
    warm.frames = 4;
    model.generate(&[warm], |_| ControlFlow::Continue(())).expect("warm-up");
    let start = Instant::now();
    let mut first = None;
    let stats = model
        .generate(&[req], |_| {
            first.get_or_insert_with(|| start.elapsed());
            ControlFlow::Continue(())
        })
        .expect("generate");
    let total = start.elapsed().as_secs_f64();
    (first.unwrap_or_default().as_secs_f64(), stats[0].steps as f64 / total)
}

/// Aggregate frames/s of 1, 2 and 4 concurrent requests, printed as a table.
async fn aggregate(channel: &Channel, seconds: f64, dtype: &str) {
    println!("\n## Aggregate throughput, concurrent requests (dynamic batching), decoder {dtype}\n");
    println!("| concurrent | batch seen | wall s | frames | aggregate frames/s | vs 1 |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut single = None;
    for n in [1usize, 2, 4] {
        let start = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|i| tokio::spawn(generate(channel.clone(), request(seconds, 10 + i as u64))))
            .collect();
        let (mut frames, mut batch) = (0, 0);
        for t in tasks {
            let timed = t.await.unwrap();
            frames += timed.frames;
            batch = batch.max(timed.batch);
        }
        let wall = start.elapsed().as_secs_f64();
        let rate = f64::from(frames) / wall;
        let base = *single.get_or_insert(rate);
        println!("| {n} | {batch} | {wall:.1} | {frames} | {rate:.1} | {:.2}x |", rate / base);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let seconds: f64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(2.0);
    let dir = small_shape_dir();
    let (ip_first, ip_steps) = in_process(&dir, seconds);

    let server = Server::start(&[]);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let channel = server.channel().await;
        generate(channel.clone(), request(0.1, 0)).await; // loads the model, warms up
        let timed = generate(channel.clone(), request(seconds, 1)).await;
        let (g_first, g_steps) = (timed.first_chunk_s, timed.steps_per_s);
        println!("\n## Service overhead ({MODEL}, f32, 2 threads, {seconds} s of audio)\n");
        println!("| path | time to first chunk s | steps/s |");
        println!("|---|---:|---:|");
        println!("| in-process `MusicGen::generate` | {ip_first:.2} | {ip_steps:.2} |");
        println!("| gRPC `Generate` (client-timed) | {g_first:.2} | {g_steps:.2} |");
        println!("| the server's decoding alone (its summary) | | {:.2} |", timed.decode_steps_per_s);
        println!(
            "| overhead | {:+.1} % | {:+.1} % |",
            (g_first / ip_first - 1.0) * 100.0,
            (1.0 - g_steps / ip_steps) * 100.0
        );

        aggregate(&channel, seconds, "f32").await;
        // The same requests with the decoder in bf16: on a CPU with AMX a bf16 product of 8 rows costs
        // what one of 2 rows does, where f32's grows with the rows (BENCHMARKS.md).
        server::load(&channel, "bf16").await;
        aggregate(&channel, seconds, "bf16").await;
    });
}
