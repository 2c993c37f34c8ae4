//! Melody conditioning through the real server on the tiny melody checkpoint: a melody sent as
//! raw f32 PCM at the model's rate gives transformers' greedy audio (`melody.safetensors`); one at
//! another rate and channel count is converted and says so; what a melody checkpoint cannot do is
//! refused naming the field, and a text-only checkpoint refuses a melody naming the type it needs.
#![cfg(feature = "torch")]

mod common;

use common::{eventually, start_server, test_config, TestServer, WITHIN};
use futures::StreamExt;
use maestro_proto::{self as pb, generate_response::Payload};
use tonic::Code;

const MELODY: &str = "musicgen-melody-tiny";

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn reference() -> std::collections::HashMap<String, tch::Tensor> {
    let path = fixtures().join(MELODY).join("melody.safetensors");
    tch::Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

fn f32_bytes(t: &tch::Tensor) -> Vec<u8> {
    Vec::<f32>::try_from(&t.flatten(0, -1)).unwrap().iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn input(data: Vec<u8>, encoding: pb::AudioEncoding, rate: u32, channels: u32) -> Option<pb::AudioInput> {
    Some(pb::AudioInput { data, encoding: encoding as i32, sample_rate: rate, channels })
}

/// 17 frames (transformers' 20 steps less the delay), greedy, guided 3, f32 out.
fn request(model: &str, melody: Option<pb::AudioInput>) -> pb::GenerateRequest {
    pb::GenerateRequest {
        model: model.into(),
        prompt: "calm piano".into(),
        duration_s: 0.34,
        greedy: true,
        guidance_scale: Some(3.0),
        format: pb::AudioFormat::PcmF32le as i32,
        melody,
        ..Default::default()
    }
}

async fn run(s: &mut TestServer, req: pb::GenerateRequest) -> Result<(pb::Header, Vec<f32>), tonic::Status> {
    let mut stream = s.generation.generate(req).await?.into_inner();
    let (mut header, mut audio) = (None, Vec::new());
    while let Some(item) = stream.next().await {
        match item?.payload.unwrap() {
            Payload::Header(h) => header = Some(h),
            Payload::Chunk(c) => {
                audio.extend(c.data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())))
            }
            Payload::Summary(_) => return Ok((header.unwrap(), audio)),
        }
    }
    panic!("no summary")
}

fn server_config() -> maestro::config::Config {
    let mut config = test_config();
    config.models.roots = vec![fixtures()];
    config
}

#[tokio::test]
async fn a_melody_over_the_wire_gives_transformers_audio() {
    let r = reference();
    let mut s = start_server(server_config()).await;
    let melody = input(f32_bytes(&r["clip.audio"]), pb::AudioEncoding::PcmF32le, 32_000, 1);
    let (header, audio) = run(&mut s, request(MELODY, melody)).await.unwrap();
    assert!(header.input_conversions.is_empty(), "{:?}", header.input_conversions);
    let want = Vec::<f32>::try_from(&r["melody.audio"].flatten(0, -1)).unwrap();
    assert_eq!(audio.len(), want.len());
    let diff = audio.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff <= 1e-4, "the melody's audio differs from transformers' by {diff}");
    // The null chroma: text alone on the same checkpoint.
    let (_, text) = run(&mut s, request(MELODY, None)).await.unwrap();
    let want = Vec::<f32>::try_from(&r["text.audio"].flatten(0, -1)).unwrap();
    let diff = text.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff <= 1e-4, "text alone differs from transformers' by {diff}");
}

#[tokio::test]
async fn a_melody_at_another_rate_and_channel_count_is_converted() {
    let mut s = start_server(server_config()).await;
    let samples: Vec<u8> = (0..8_000)
        .flat_map(|i| {
            let v = ((2.0 * std::f32::consts::PI * 261.63 * i as f32 / 16_000.0).sin() * 8000.0) as i16;
            [v, v / 2].into_iter().flat_map(i16::to_le_bytes)
        })
        .collect();
    let melody = input(samples, pb::AudioEncoding::PcmS16le, 16_000, 2);
    let (header, audio) = run(&mut s, request(MELODY, melody)).await.unwrap();
    assert_eq!(
        header.input_conversions,
        ["melody: 2 channels made 1", "melody: resampled from 16000 Hz to 32000 Hz"]
    );
    assert_eq!(audio.len() as u64, header.expected_samples);
}

#[tokio::test]
async fn what_a_checkpoint_cannot_do_with_a_melody_is_refused_and_nothing_is_lost() {
    let mut s = start_server(server_config()).await;
    let melody = || input(vec![0; 4_000], pb::AudioEncoding::PcmS16le, 32_000, 1);
    let err = run(&mut s, request("musicgen-tiny", melody())).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("musicgen-tiny is text-only") && err.message().contains("musicgen_melody")
    );
    let long = pb::GenerateRequest { duration_s: 31.0, ..request(MELODY, melody()) };
    let err = run(&mut s, long).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("duration_s: a melody checkpoint generates one window: at most 30 s"));
    let clip = pb::GenerateRequest { audio_prompt: melody(), ..request(MELODY, None) };
    let err = run(&mut s, clip).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("audio_prompt: model musicgen-melody-tiny is a melody checkpoint"));
    let silent = input(vec![0; 6], pb::AudioEncoding::PcmS16le, 32_000, 0);
    let err = run(&mut s, request(MELODY, silent)).await.unwrap_err();
    assert!(err.message().contains("melody: channels must be 1..=8, got 0"), "{err:?}");
    eventually("nothing held", WITHIN, async || {
        let r = s.resources.get_report(pb::ReportRequest {}).await.unwrap().into_inner();
        let idle = r.cached_models.iter().all(|m| m.in_flight == 0);
        (r.leases.is_empty() && idle && r.queue.is_empty()).then_some(())
    })
    .await;
    run(&mut s, request(MELODY, melody())).await.unwrap();
}

#[tokio::test]
async fn a_melody_checkpoint_is_listed_sized_and_validated() {
    let mut s = start_server(server_config()).await;
    let list = s.generation.list_models(pb::ListModelsRequest {}).await.unwrap().into_inner().models;
    let listed = list.iter().find(|m| m.model == MELODY).expect("listed");
    assert!(listed.weights_present, "{listed:?}");
    let ask = |model: &str| pb::ValidateRequest {
        model: model.into(),
        batch_size: 1,
        duration_s: 5.0,
        device: "cpu".into(),
        ..Default::default()
    };
    let melody = s.resources.validate_model(ask(MELODY)).await.unwrap().into_inner();
    let text = s.resources.validate_model(ask("musicgen-tiny")).await.unwrap().into_inner();
    let (m, t) = (melody.requirements.unwrap(), text.requirements.unwrap());
    // Same decoder sizes; the chroma projection (12 → 48, with bias) is the only extra weight.
    assert_eq!(
        m.weights_bytes,
        t.weights_bytes + (12 * 48 + 48) * 4 - cross_attention_bytes(),
        "{m:?} {t:?}"
    );
}

/// musicgen-tiny's cross-attention weights, which the melody decoder does not have: per layer four
/// 48 × 48 projections and a layer norm (weight and bias), two layers, f32.
fn cross_attention_bytes() -> u64 {
    2 * (4 * 48 * 48 + 2 * 48) * 4
}
