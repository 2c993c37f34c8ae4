//! Each refusal of [`ValidGenerate::check`] as its variant, and the defaults it fills in.

use super::*;
use crate::{chroma::ChromaConfig, engine::GenerationConfig};

fn facts() -> CheckpointFacts {
    CheckpointFacts {
        sample_rate: 32_000,
        channels: 1,
        frame_rate: 50.0,
        codebook_size: 2048,
        window_s: 30.0,
        defaults: GenerationConfig { do_sample: true, top_k: 250, guidance_scale: 3.0, ..Default::default() },
        chroma: None,
    }
}

fn melody_facts() -> CheckpointFacts {
    CheckpointFacts { chroma: Some(ChromaConfig::default()), ..facts() }
}

/// The orchestrator tests' request for a model `m`, 2 s, seed 7.
fn params() -> GenerateParams {
    let base = crate::generation::tests::params();
    GenerateParams { model: "m".into(), duration_s: 2.0, seed: Some(7), ..base }
}

fn clip(seconds: f64, sample_rate: u32) -> Clip {
    Clip { samples: vec![0.0; (seconds * f64::from(sample_rate)) as usize], channels: 1, sample_rate }
}

fn refusal(p: GenerateParams, facts: &CheckpointFacts) -> ValidationError {
    ValidGenerate::check(p, facts).expect_err("refused")
}

#[test]
fn defaults_come_from_the_checkpoint_and_what_runs_is_what_was_asked() {
    let v = ValidGenerate::check(params(), &facts()).unwrap();
    let r = &v.request;
    assert_eq!((r.frames, r.chunk_frames, r.seed, r.guidance_scale), (100, 50, 7, 3.0));
    assert_eq!((r.sampling.top_k, r.sampling.top_p, r.sampling.greedy), (250, 1.0, false));
    let audiocraft = GenerateParams { audiocraft_sampling: true, top_p: Some(0.9), ..params() };
    let r = ValidGenerate::check(audiocraft, &facts()).unwrap().request;
    assert_eq!((r.sampling.top_k, r.sampling.top_p), (0, 0.9), "an active top-p leaves no top-k");
    let off = GenerateParams { top_p: Some(0.0), ..params() };
    assert_eq!(ValidGenerate::check(off, &facts()).unwrap().request.sampling.top_p, 1.0, "0 is off");
}

#[test]
fn top_k_is_bounded_by_the_codebook_including_the_checkpoints_default() {
    let err = refusal(GenerateParams { top_k: Some(2049), ..params() }, &facts());
    assert_eq!(err, ValidationError::TopK { value: 2049, codebook: 2048 });
    assert_eq!(err.to_string(), "top_k: must be 0 (off) ..= 2048 (the codebook size), got 2049");
    assert!(ValidGenerate::check(GenerateParams { top_k: Some(2048), ..params() }, &facts()).is_ok());
    let small = CheckpointFacts { codebook_size: 64, ..facts() };
    assert_eq!(refusal(params(), &small), ValidationError::TopK { value: 250, codebook: 64 });
}

#[test]
fn a_chunk_is_one_frame_to_ten_seconds() {
    let err = refusal(GenerateParams { chunk_ms: 19, ..params() }, &facts());
    assert!(matches!(err, ValidationError::ChunkMs { value: 19, .. }), "{err:?}");
    assert_eq!(err.to_string(), "chunk_ms: must be >= one frame (20 ms) and <= 10000, got 19");
    let err = refusal(GenerateParams { chunk_ms: 10_001, ..params() }, &facts());
    assert!(matches!(err, ValidationError::ChunkMs { value: 10_001, .. }), "{err:?}");
    for ok in [20, 10_000] {
        assert!(ValidGenerate::check(GenerateParams { chunk_ms: ok, ..params() }, &facts()).is_ok());
    }
}

#[test]
fn an_audio_prompt_must_be_shorter_than_the_window_at_the_models_rate() {
    let long = GenerateParams { audio_prompt: Some(clip(30.0, 16_000)), ..params() };
    let err = refusal(long, &facts());
    assert_eq!(err, ValidationError::AudioPromptPastWindow { seconds: 30.0, window_s: 30.0 });
    assert_eq!(err.field(), "audio_prompt");
    let short = GenerateParams { audio_prompt: Some(clip(29.9, 44_100)), ..params() };
    assert!(ValidGenerate::check(short, &facts()).is_ok());
}

#[test]
fn melodies_go_to_melody_checkpoints_which_neither_continue_nor_extend() {
    let melody = GenerateParams { melody: Some(clip(1.0, 32_000)), ..params() };
    let err = refusal(melody.clone(), &facts());
    assert_eq!(err, ValidationError::MelodyOnTextModel { model: "m".into() });
    assert!(err.wrong_model() && err.to_string().contains("m is text-only"), "{err}");
    assert!(ValidGenerate::check(melody, &melody_facts()).is_ok());
    let continuation = GenerateParams { audio_prompt: Some(clip(1.0, 32_000)), ..params() };
    assert_eq!(
        refusal(continuation, &melody_facts()),
        ValidationError::ContinuationOnMelodyModel { model: "m".into() }
    );
    let long = GenerateParams { duration_s: 31.0, ..params() };
    let err = refusal(long, &melody_facts());
    assert_eq!(err, ValidationError::MelodyPastWindow { model: "m".into(), window_s: 30.0, value: 31.0 });
    assert_eq!(err.field(), "duration_s");
}
