//! Audio in through the real server: a clip at another rate and channel count is converted (the
//! header says so), encoded and continued; bad audio is refused naming the field, the limit and the
//! value; a melody is refused by a text-only checkpoint; a cancelled continuation gives everything
//! back.
#![cfg(feature = "torch")]

mod common;

use common::{eventually, model_config, start_server, TestServer, WITHIN};
use futures::StreamExt;
use maestro_proto::{self as pb, generate_response::Payload};
use tonic::Code;

const TINY: &str = "maestro/musicgen-tiny";

/// A stereo 16-bit WAV of `seconds` at `rate`: a different tone per channel.
fn wav(rate: u32, seconds: f64) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
    for i in 0..(f64::from(rate) * seconds) as usize {
        let t = i as f64 / f64::from(rate);
        for hz in [220.0, 330.0] {
            w.write_sample(((2.0 * std::f64::consts::PI * hz * t).sin() * 8000.0) as i16).unwrap();
        }
    }
    w.finalize().unwrap();
    out.into_inner()
}

fn pcm(data: Vec<u8>, encoding: pb::AudioEncoding, rate: u32, channels: u32) -> Option<pb::AudioInput> {
    Some(pb::AudioInput { data, encoding: encoding as i32, sample_rate: rate, channels })
}

fn continuation(clip: Option<pb::AudioInput>) -> pb::GenerateRequest {
    pb::GenerateRequest {
        model: TINY.into(),
        prompt: "calm piano".into(),
        duration_s: 0.4,
        seed: Some(3),
        greedy: true,
        chunk_ms: 100,
        audio_prompt: clip,
        ..Default::default()
    }
}

async fn run(
    s: &mut TestServer,
    req: pb::GenerateRequest,
) -> Result<(pb::Header, Vec<u8>, pb::Summary), tonic::Status> {
    let mut stream = s.generation.generate(req).await?.into_inner();
    let (mut header, mut audio) = (None, Vec::new());
    while let Some(item) = stream.next().await {
        match item?.payload.unwrap() {
            Payload::Header(h) => header = Some(h),
            Payload::Chunk(c) => audio.extend(c.data),
            Payload::Summary(sum) => return Ok((header.unwrap(), audio, sum)),
        }
    }
    panic!("no summary")
}

#[tokio::test]
async fn a_clip_at_another_rate_is_converted_encoded_and_continued() {
    let mut s = start_server(model_config()).await;
    let clip = pcm(wav(44_100, 0.5), pb::AudioEncoding::Wav, 0, 0);
    let (header, audio, summary) = run(&mut s, continuation(clip.clone())).await.unwrap();
    assert_eq!(header.input_conversions, ["2 channels made 1", "resampled from 44100 Hz to 32000 Hz"]);
    assert!((header.prompt_s - 0.5).abs() < 0.021, "{}", header.prompt_s);
    // What follows the clip: 0.4 s.
    assert_eq!(header.expected_samples, 20 * 640);
    assert_eq!((audio.len() / 2) as u64, header.expected_samples);
    assert_eq!(summary.samples, header.expected_samples);
    // The same clip gives the same continuation; with include_prompt the clip's decode comes first.
    let (_, again, _) = run(&mut s, continuation(clip.clone())).await.unwrap();
    assert_eq!(again, audio);
    let whole = pb::GenerateRequest { include_prompt: true, ..continuation(clip) };
    let (header, all, _) = run(&mut s, whole).await.unwrap();
    assert_eq!(header.expected_samples, (25 + 20) * 640);
    assert_eq!((all.len() / 2) as u64, header.expected_samples);
    // Without the clip, other music.
    let (_, plain, _) = run(&mut s, continuation(None)).await.unwrap();
    assert_ne!(plain, audio);
}

#[tokio::test]
async fn bad_audio_is_refused_naming_field_limit_and_value() {
    let mut c = model_config();
    c.generation.max_audio_input_s = 2.0;
    let mut s = start_server(c).await;
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let s16 = pb::AudioEncoding::PcmS16le;
    let cases = [
        (pcm(vec![0; 6], s16, 0, 1), "audio_prompt: sample_rate must be 8000..=384000 Hz, got 0"),
        (pcm(vec![0; 6], s16, 1, 1), "audio_prompt: sample_rate must be 8000..=384000 Hz, got 1"),
        (pcm(vec![0; 6], s16, 7999, 1), "audio_prompt: sample_rate must be 8000..=384000 Hz, got 7999"),
        (pcm(vec![0; 6], s16, 32_000, 0), "audio_prompt: channels must be 1..=8, got 0"),
        (pcm(vec![0; 7], s16, 32_000, 1), "whole frames of 1 channels × 2 bytes (2 bytes), got 7 bytes"),
        (
            pcm(f32s(&[0.0, f32::NAN]), pb::AudioEncoding::PcmF32le, 32_000, 1),
            "(full scale is ±1), got NaN at sample 1",
        ),
        (pcm(vec![0; 200_000], s16, 32_000, 1), "at most 2 s of audio, got 3.125 s"),
        (
            pcm(vec![0; 8], pb::AudioEncoding::Unspecified, 32_000, 1),
            "encoding must be AUDIO_ENCODING_PCM_S16LE",
        ),
        (pcm(vec![1, 2, 3], pb::AudioEncoding::Wav, 0, 0), "not a readable WAV file"),
        (pcm(Vec::new(), s16, 32_000, 1), "data must not be empty"),
    ];
    for (clip, needle) in cases {
        let err = s.generation.generate(continuation(clip)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{needle}: {err:?}");
        assert!(err.message().contains(needle), "{:?} lacks {needle:?}", err.message());
    }
    let no_clip = pb::GenerateRequest { include_prompt: true, ..continuation(None) };
    let err = s.generation.generate(no_clip).await.unwrap_err();
    assert!(err.message().contains("include_prompt: needs an audio_prompt"), "{err:?}");
    let melody = pb::GenerateRequest { melody: pcm(vec![0; 64], s16, 32_000, 1), ..continuation(None) };
    let err = s.generation.generate(melody).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("musicgen_melody"), "{err:?}");
    // Nothing was lost: a good continuation still runs.
    run(&mut s, continuation(pcm(vec![0; 3200], s16, 32_000, 1))).await.unwrap();
}

#[tokio::test]
async fn a_clip_must_be_shorter_than_the_window() {
    let mut c = model_config();
    c.generation.max_audio_input_s = 40.0;
    let mut s = start_server(c).await;
    let clip = pcm(vec![0; 2 * 32_000 * 30], pb::AudioEncoding::PcmS16le, 32_000, 1);
    let err = s.generation.generate(continuation(clip)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("audio_prompt: must be shorter than the model's window (30 s), got 30.000 s"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_cancelled_continuation_gives_everything_back() {
    let mut s = start_server(model_config()).await;
    let req = pb::GenerateRequest {
        duration_s: 20.0,
        chunk_ms: 20,
        ..continuation(pcm(wav(32_000, 2.0), pb::AudioEncoding::Wav, 0, 0))
    };
    let mut stream = s.generation.generate(req).await.unwrap().into_inner();
    assert!(matches!(stream.next().await.unwrap().unwrap().payload, Some(Payload::Header(_))));
    drop(stream);
    eventually("the lease and the model given back", WITHIN, async || {
        let r = s.resources.get_report(pb::ReportRequest {}).await.unwrap().into_inner();
        let idle = r.cached_models.iter().all(|m| m.in_flight == 0);
        (r.leases.is_empty() && idle && r.queue.is_empty()).then_some(())
    })
    .await;
}

/// Cancelled while the worker is inside the prefill (held there by the stall fault until the
/// cancellation lands): the generation ends cancelled and gives back its lease, its queue slot and
/// its model, and the worker goes on.
#[tokio::test]
async fn a_continuation_cancelled_inside_its_prefill_gives_everything_back() {
    let mut c = model_config();
    c.generation.fault_injection = true;
    let mut s = start_server(c).await;
    let req = pb::GenerateRequest {
        prompt: "maestro:fault:stall".into(),
        ..continuation(pcm(wav(32_000, 2.0), pb::AudioEncoding::Wav, 0, 0))
    };
    let mut stream = s.generation.generate(req).await.unwrap().into_inner();
    assert!(matches!(stream.next().await.unwrap().unwrap().payload, Some(Payload::Header(_))));
    let running = eventually("the worker inside the prefill", WITHIN, async || {
        let r = s.resources.get_report(pb::ReportRequest {}).await.unwrap().into_inner();
        let held = !r.leases.is_empty() && r.queue.iter().any(|q| q.running);
        held.then_some(r.queue[0].request_id.clone())
    })
    .await;
    drop(stream);
    let ended = eventually("everything given back", WITHIN, async || {
        let r = s.resources.get_report(pb::ReportRequest {}).await.unwrap().into_inner();
        let idle = r.cached_models.iter().all(|m| m.in_flight == 0);
        let ended = r.recent_generations.iter().find(|g| g.request_id == running).cloned();
        (r.leases.is_empty() && idle && r.queue.is_empty()).then_some(ended).flatten()
    })
    .await;
    assert_eq!(ended.outcome, "cancelled", "{ended:?}");
    run(&mut s, continuation(pcm(vec![0; 6400], pb::AudioEncoding::PcmS16le, 32_000, 1))).await.unwrap();
}

#[tokio::test]
async fn requirements_report_what_an_audio_prompt_adds() {
    let mut s = start_server(model_config()).await;
    let ask = |model: &str| pb::ValidateRequest {
        model: model.into(),
        batch_size: 1,
        duration_s: 5.0,
        ..Default::default()
    };
    let tiny = s.resources.validate_model(ask(TINY)).await.unwrap().into_inner().requirements.unwrap();
    // The encoder and the four codebooks the decoder predicts, f32, as stored.
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(TINY).join("model.safetensors");
    let stored = tch::Tensor::read_safetensors(&file).unwrap();
    let codebook =
        |k: &str| (0..4).any(|q| k == format!("audio_encoder.quantizer.layers.{q}.codebook.embed"));
    let want: i64 = stored
        .iter()
        .filter(|(k, _)| k.starts_with("audio_encoder.encoder.") || codebook(k))
        .map(|(_, t)| t.numel() as i64 * 4)
        .sum();
    assert_eq!(tiny.audio_encoder_bytes as i64, want);
    assert_eq!(tiny.audio_input_bytes_per_sample, 15 * 4, "15 bytes per filter (4 in the tiny codec)");
    // ValidateModel with a 10 s prompt counts its encode on the host: the encoder and the clip's
    // activations (32 kHz mono, 15 × 4 + 4 bytes per sample), as the generation's lease does.
    let required =
        |v: &pb::ValidationResult| v.checks.iter().find(|c| c.resource == "host_memory").unwrap().required;
    let cpu = |audio_prompt_s| pb::ValidateRequest { device: "cpu".into(), audio_prompt_s, ..ask(TINY) };
    let plain = s.resources.validate_model(cpu(0.0)).await.unwrap().into_inner();
    let with_clip = s.resources.validate_model(cpu(10.0)).await.unwrap().into_inner();
    let added = required(&with_clip) - required(&plain);
    assert_eq!(added as i64, want + 320_000 * (15 * 4 + 4), "{:?}", with_clip.checks);
    assert!(with_clip.checks[0].message.contains("audio prompt encode"), "{:?}", with_clip.checks);
    let small = s.resources.validate_model(ask("facebook/musicgen-small")).await.unwrap().into_inner();
    let small = small.requirements.unwrap();
    assert_eq!(small.audio_encoder_bytes, maestro::resources::requirements::TABLE_AUDIO_DECODER_PARAMS * 4);
}

/// Out of memory inside the prefill (the first decoder call, where the clip's frames go in at once,
/// through the fault-injection seam at step 0): the request fails with RESOURCE_EXHAUSTED and gives
/// back its lease (encoder cost included), its queue slot and its model.
#[tokio::test]
async fn out_of_memory_in_the_prefill_gives_everything_back() {
    let mut c = model_config();
    (c.generation.fault_injection, c.generation.fault_oom_step) = (true, 0);
    let mut s = start_server(c).await;
    let clip = pcm(wav(32_000, 1.0), pb::AudioEncoding::Wav, 0, 0);
    let req = pb::GenerateRequest { prompt: "maestro:fault:oom".into(), ..continuation(clip) };
    let err = run(&mut s, req).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    eventually("everything given back", WITHIN, async || {
        let r = s.resources.get_report(pb::ReportRequest {}).await.unwrap().into_inner();
        let idle = r.cached_models.iter().all(|m| m.in_flight == 0);
        (r.leases.is_empty() && idle && r.queue.is_empty()).then_some(())
    })
    .await;
    // The worker lives: a continuation right after runs.
    run(&mut s, continuation(pcm(vec![0; 6400], pb::AudioEncoding::PcmS16le, 32_000, 1))).await.unwrap();
}
