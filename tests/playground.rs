//! The dashboard's playground in a real browser (Debian's Chromium through Playwright, driven by
//! `tests/dashboard/playground.py`) against a real server serving the tiny random model: the music
//! starts playing before the generation ends, the samples handed to Web Audio are the stream's (the
//! same request over a Rust gRPC client, by checksum), the WAV and FLAC downloads hold them too, a
//! clip the browser decodes is sent and continued, Stop cancels the generation on the server (its
//! lease and queue slot back, seen in `GetReport`), and a `read` token is told that Generate needs
//! `generate`. A screenshot of the playground lands in `target/playground.png`.
#![cfg(feature = "torch")]

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::time::Duration;

use browser::Driver;
use common::{model_config, start_server, TestServer};
use maestro_proto as pb;
use tokio_stream::StreamExt;

const MODEL: &str = "maestro/musicgen-tiny";
/// What the driver types into the prompt box.
const PROMPT: &str = "a calm piano over soft rain";

/// FNV-1a, 32 bits, as the page computes its checksum.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// The server's f32 → 16-bit rule (`src/audio_out/pcm.rs`), which the page's WAV follows.
fn to_i16(x: f32) -> i16 {
    if x.is_nan() {
        0
    } else {
        (x.clamp(-1.0, 1.0) * 32767.0).round() as i16
    }
}

/// The page's request, sent by a native client: its f32 samples, interleaved.
async fn stream_samples(s: &mut TestServer, seed: u64, duration_s: f64, chunk_ms: u32) -> (u32, Vec<f32>) {
    let request = pb::GenerateRequest {
        model: MODEL.into(),
        prompt: PROMPT.into(),
        duration_s,
        seed: Some(seed),
        chunk_ms,
        format: pb::AudioFormat::PcmF32le as i32,
        ..Default::default()
    };
    let mut stream = s.generation.generate(request).await.unwrap().into_inner();
    let (mut rate, mut bytes) = (0, Vec::new());
    while let Some(message) = stream.next().await {
        match message.unwrap().payload.unwrap() {
            pb::generate_response::Payload::Header(h) => rate = h.sample_rate,
            pb::generate_response::Payload::Chunk(c) => bytes.extend(c.data),
            pb::generate_response::Payload::Summary(_) => {}
        }
    }
    let samples = bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    (rate, samples)
}

/// `got` equals `expected`, or a failure naming the first difference (not a dump of both).
fn same_samples(got: &[i16], expected: &[i16], what: &str) {
    let first = got.iter().zip(expected).position(|(a, b)| a != b);
    assert!(
        got.len() == expected.len() && first.is_none(),
        "{what}: {} samples, expected {}; first difference at {first:?}: {:?} vs {:?}",
        got.len(),
        expected.len(),
        first.map(|i| got[i]),
        first.map(|i| expected[i]),
    );
}

fn page(s: &TestServer) -> String {
    format!("http://{}/", s.metrics_addr)
}

#[tokio::test]
async fn the_playground_plays_the_stream_while_it_is_generated() {
    // Long enough that the rest of the generation after its first chunk outlasts the page's 50 ms
    // scheduling lead on a fast machine too (the tiny model makes 20 s in about 1.4 s on two cores).
    let (seed, duration, chunk_ms) = (4242_u64, 20.0, 200_u32);
    let mut s = start_server(model_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let args = ["--play", &seed.to_string(), &duration.to_string(), &chunk_ms.to_string(), out];
    let mut driver = Driver::start("playground.py", &page(&s), &args);
    let played = driver.expect("played").await;
    let [first_audio_ms, done_ms, checksum, received] =
        [0, 1, 2, 3].map(|i| played[i].parse::<f64>().unwrap_or_else(|_| panic!("{played:?}")));
    assert_eq!(played[4], "running", "the AudioContext played: {played:?}");
    eprintln!("first sound {first_audio_ms} ms after the click, summary after {done_ms} ms");
    assert!(first_audio_ms < done_ms, "playback began ({first_audio_ms} ms) before the end ({done_ms} ms)");

    let (rate, samples) = stream_samples(&mut s, seed, duration, chunk_ms).await;
    let bytes: Vec<u8> = samples.iter().flat_map(|x| x.to_le_bytes()).collect();
    assert_eq!(checksum as u32, fnv1a(&bytes), "the samples played are the stream's");
    assert!((received - samples.len() as f64 / f64::from(rate)).abs() < 1e-9, "{received} s received");

    // The WAV the page builds and the FLAC the server encodes hold the same samples at 16 bits.
    let expected: Vec<i16> = samples.iter().copied().map(to_i16).collect();
    let files = driver.expect("downloads").await;
    std::fs::copy(&files[0], concat!(env!("CARGO_MANIFEST_DIR"), "/target/playground.png")).unwrap();
    let wav = hound::WavReader::open(&files[1]).unwrap();
    assert_eq!(wav.spec().sample_rate, rate);
    let wav: Vec<i16> = wav.into_samples::<i16>().map(Result::unwrap).collect();
    same_samples(&wav, &expected, "the WAV download");
    let mut flac = claxon::FlacReader::open(&files[2]).unwrap();
    let flac: Vec<i16> = flac.samples().map(|x| x.unwrap() as i16).collect();
    same_samples(&flac, &expected, "the FLAC download");

    // A clip the browser decodes (that FLAC) goes as PCM at 48 kHz, which the server converts.
    let continued = driver.expect("continued").await.join(" ");
    assert!(continued.starts_with("done "), "{continued}");
    assert!(continued.contains("resampled from 48000 Hz"), "{continued}");
    eprintln!("continued: {continued}");
    driver.finish().await;
}

/// Whether a generation holds a lease or a queue slot now, and the last one's outcome.
async fn generation_state(s: &mut TestServer) -> (bool, bool, Option<String>) {
    let report = s.resources.get_report(pb::ReportRequest {}).await.unwrap().into_inner();
    let leased = report.leases.iter().any(|l| l.kind == "generation");
    let outcome = report.recent_generations.first().map(|g| g.outcome.clone());
    (leased, !report.queue.is_empty(), outcome)
}

#[tokio::test]
async fn stop_cancels_the_generation_on_the_server() {
    let mut s = start_server(model_config()).await;
    // The longest generation the server allows, in small chunks: still running when Stop is pressed.
    let mut driver = Driver::start("playground.py", &page(&s), &["--stop", "120", "20"]);
    driver.expect("running").await;
    let (leased, queued, _) = generation_state(&mut s).await;
    assert!(leased && queued, "the generation holds a lease ({leased}) and a queue slot ({queued})");
    driver.tell("stop");
    let received: f64 = driver.expect("stopped").await[0].parse().unwrap();
    assert!(received < 120.0, "the stream ended early: {received} s");
    let outcome =
        common::eventually("lease and queue slot given back", Duration::from_secs(30), async || {
            let (leased, queued, outcome) = generation_state(&mut s).await;
            (!leased && !queued).then_some(outcome)
        })
        .await;
    assert_eq!(outcome.as_deref(), Some("cancelled"), "the server cancelled it");
    driver.finish().await;
}

#[tokio::test]
async fn a_read_token_is_told_that_generate_needs_its_role() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, "read-token,viewer,read\ngen-token,player,generate\n").unwrap();
    let mut config = model_config();
    config.server.auth_token_file = Some(file);
    let s = start_server(config).await;
    let mut driver = Driver::start("playground.py", &page(&s), &["--tokens", "read-token", "gen-token"]);
    let asked = driver.expect("asked").await.join(" ");
    assert!(asked.contains("generate role"), "{asked}");
    let refused = driver.expect("refused").await;
    assert_eq!(refused[0], "PermissionDenied", "{refused:?}");
    assert!(refused[1..].join(" ").contains("generate"), "the server's message names the role: {refused:?}");
    let generated = driver.expect("generated").await;
    assert!(generated[0].parse::<f64>().unwrap() > 0.0, "{generated:?}");
    assert_eq!(generated[1], "True", "the token form goes once Generate runs");
    driver.finish().await;
}
