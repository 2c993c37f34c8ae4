//! Out of memory from libtorch itself, through the real server: with fault injection a request whose
//! prompt contains `maestro:fault:oom` makes a decoding step ask libtorch's allocator for 256 PiB on
//! the worker's device (the CPU here, CUDA's caching allocator on a GPU host), which really fails. A lone request fails with RESOURCE_EXHAUSTED naming the device and the bytes
//! and the worker serves the next one; a batch that fails before any request streamed is retried at
//! half size; a request that already streamed fails alone while the others are retried.

mod common;

use common::{model_config, start_server, TestServer};
use futures::StreamExt;
use maestro_proto::{self as pb, generate_response::Payload};
use tonic::{codec::Streaming, Code};

const TINY: &str = "maestro/musicgen-tiny";
const OOM: &str = "maestro:fault:oom";
/// The step the injected failure strikes at (the default of `--fault-oom-step`).
const STEP: usize = 10;
/// What the injected allocation asks for.
const ASKED: &str = "288230376151711744 bytes";

fn config(max_batch: usize, oom_min_batch: usize) -> maestro::config::Config {
    let mut c = model_config();
    c.generation.fault_injection = true;
    c.generation.max_batch = max_batch;
    c.generation.fault_oom_min_batch = oom_min_batch;
    assert_eq!(c.generation.fault_oom_step, STEP);
    c
}

/// 0.4 s of the tiny model (20 frames, 23 steps: the failure at step 10 strikes mid-way) in chunks of
/// `chunk_ms`: 20 ms streams from the first frames on, 1000 ms only at the end.
fn request(prompt: &str, chunk_ms: u32, seed: u64) -> pb::GenerateRequest {
    pb::GenerateRequest {
        model: TINY.into(),
        prompt: prompt.into(),
        duration_s: 0.4,
        seed: Some(seed),
        chunk_ms,
        ..Default::default()
    }
}

/// What a stream delivered: the device its header named, audio chunks, then its summary or the
/// status it ended with.
struct Outcome {
    device: String,
    chunks: usize,
    end: Result<pb::Summary, tonic::Status>,
}

async fn finish(mut stream: Streaming<pb::GenerateResponse>) -> Outcome {
    let (mut device, mut chunks) = (String::new(), 0);
    while let Some(item) = stream.next().await {
        let end = match item {
            Err(status) => Err(status),
            Ok(r) => match r.payload.unwrap() {
                Payload::Header(h) => {
                    device = h.device;
                    continue;
                }
                Payload::Chunk(_) => {
                    chunks += 1;
                    continue;
                }
                Payload::Summary(s) => Ok(s),
            },
        };
        return Outcome { device, chunks, end };
    }
    panic!("stream ended without a summary or an error")
}

/// Checks that `err` is the injected out-of-memory, named with the device the request ran on, the
/// bytes asked for, the bytes free and libtorch's own words for that device.
fn assert_out_of_memory(err: &tonic::Status, device: &str) {
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let m = err.message();
    assert!(m.starts_with(&format!("out of memory while generating with {TINY} on {device}: ")), "{m}");
    assert!(m.contains(&format!("libtorch asked for 288230376.15 GB ({ASKED}) with ")), "{m}");
    // The CPU allocator's message gives no free figure; the CUDA allocator's does.
    let (free, words) = match device {
        "cpu" => (" free (the monitor's latest reading); ", "libtorch: DefaultCPUAllocator: "),
        _ => (" free; ", "libtorch: CUDA out of memory. Tried to allocate "),
    };
    assert!(m.contains(free) && m.contains(words), "{m}");
}

async fn run(s: &mut TestServer, req: pb::GenerateRequest) -> Outcome {
    finish(s.generation.generate(req).await.expect("admitted").into_inner()).await
}

/// Occupies the worker inside a long generation whose stream nobody reads, so that the requests sent
/// meanwhile queue up and start together as one batch once it is dropped.
async fn blocker(s: &mut TestServer) -> Streaming<pb::GenerateResponse> {
    let long = pb::GenerateRequest { duration_s: 20.0, ..request("a calm piano", 20, 99) };
    let mut blocked = s.generation.generate(long).await.unwrap().into_inner();
    assert!(blocked.next().await.unwrap().is_ok(), "header");
    assert!(matches!(blocked.next().await.unwrap().unwrap().payload, Some(Payload::Chunk(_))));
    blocked
}

/// Sends `requests` while the worker is held by a blocker, then lets them run as one batch.
async fn batched(s: &mut TestServer, requests: Vec<pb::GenerateRequest>) -> Vec<Outcome> {
    let blocked = blocker(s).await;
    let mut streams = Vec::new();
    for r in requests {
        // Admitted (and queued on the worker) once the call returns.
        streams.push(s.generation.generate(r).await.expect("admitted").into_inner());
    }
    drop(blocked);
    futures::future::join_all(streams.into_iter().map(finish)).await
}

#[tokio::test]
async fn a_lone_request_out_of_memory_names_device_and_bytes_and_the_worker_serves_the_next() {
    let mut s = start_server(config(4, 1)).await;
    let failed = run(&mut s, request(&format!("{OOM} strings"), 1000, 1)).await;
    assert_out_of_memory(&failed.end.expect_err("the allocation fails"), &failed.device);
    let next = run(&mut s, request("a calm piano", 1000, 1)).await;
    let summary = next.end.expect("the worker serves the next request");
    assert_eq!((summary.frames, summary.batch_size), (20, 1));
}

#[tokio::test]
async fn a_batch_out_of_memory_before_any_audio_is_retried_at_half_size() {
    // Only batches of 3 or more fail: the four requests fail together, then succeed in two pairs.
    let mut s = start_server(config(4, 3)).await;
    let requests: Vec<_> = (0..4).map(|i| request(&format!("{OOM} drums {i}"), 1000, i)).collect();
    for (i, outcome) in batched(&mut s, requests).await.into_iter().enumerate() {
        let summary = outcome.end.unwrap_or_else(|e| panic!("request {i} failed: {e:?}"));
        assert_eq!((summary.frames, summary.batch_size), (20, 2), "request {i} ran in a half batch");
        assert_eq!(outcome.chunks, 1, "request {i}: one chunk of 20 frames");
    }
}

#[tokio::test]
async fn a_request_that_streamed_fails_alone_and_the_others_are_retried() {
    let mut s = start_server(config(4, 2)).await;
    // The first streams a chunk per frame from step 3 on, so it has streamed by step 10; the second
    // streams only at its end.
    let streaming = request(&format!("{OOM} cello"), 20, 1);
    let quiet = request("a slow cello line", 1000, 2);
    let mut outcomes = batched(&mut s, vec![streaming, quiet]).await.into_iter();
    let (streamed, retried) = (outcomes.next().unwrap(), outcomes.next().unwrap());
    assert_out_of_memory(&streamed.end.expect_err("the request that streamed fails"), &streamed.device);
    assert!(streamed.chunks > 0 && streamed.chunks < 20, "{} chunks before the failure", streamed.chunks);
    let summary = retried.end.expect("the request that had not streamed is retried");
    assert_eq!((summary.frames, summary.batch_size), (20, 1));
}
