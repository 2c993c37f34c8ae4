//! Melody checkpoints against transformers on `musicgen-melody-tiny` and its stereo sibling
//! (`melody.safetensors`): the
//! chroma of `MusicgenMelodyFeatureExtractor` (normalised before the argmax within 1e-5, one-hot
//! identical), and `MusicgenMelodyForConditionalGeneration.generate`'s greedy codes and audio with a
//! melody and without one, alone and batched together.
#![cfg(feature = "torch")]

mod musicgen_common;

use std::ops::ControlFlow;

use maestro::chroma::{ChromaConfig, ChromaExtractor};
use maestro::musicgen::{DType, GenerationRequest, GenerationStats, MusicGen};
use musicgen_common::{codes_tensor, fixture, interleaved, max_diff, reference_file, run, PROMPTS};
use tch::{Device, Kind, Tensor};

const NAME: &str = "musicgen-melody-tiny";
const FIXTURES: [&str; 2] = [NAME, "musicgen-stereo-melody-tiny"];
/// `MELODY_TOKENS` of the script: decoder steps, the delay pattern's three included.
const MELODY_TOKENS: usize = 20;

fn frames(t: &Tensor) -> Vec<Vec<f32>> {
    (0..t.size()[0]).map(|i| Vec::<f32>::try_from(&t.get(i)).unwrap()).collect()
}

fn samples(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(&t.to_kind(Kind::Float).flatten(0, -1)).unwrap()
}

fn request(model: &MusicGen, prompt: &str, melody: Vec<Vec<f32>>) -> GenerationRequest {
    let mut req = model.request(prompt, 1.0);
    req.frames = MELODY_TOKENS + 1 - model.num_codebooks() / model.channels();
    req.melody = melody;
    req.sampling.greedy = true;
    req.guidance_scale = 3.0;
    req.chunk_frames = 4;
    req
}

#[test]
fn chroma_matches_the_feature_extractor() {
    let r = reference_file(NAME, "melody.safetensors");
    let path = fixture(NAME).join("preprocessor_config.json");
    let extractor = ChromaExtractor::new(ChromaConfig::from_file_or_default(&path).unwrap()).unwrap();
    let model = MusicGen::load(&fixture(NAME), Device::Cpu, DType::F32).unwrap();
    for clip in ["clip", "short"] {
        let wave = samples(&r[&format!("{clip}.audio")]);
        let normalized = extractor.normalized(&wave);
        let want = &r[&format!("{clip}.chroma")];
        assert_eq!(normalized.len() as i64, want.size()[0], "{clip}: frames");
        let got = Tensor::from_slice(&normalized.concat()).view_as(want);
        let diff = max_diff(&got, want);
        assert!(diff <= 1e-5, "{clip}: normalised chroma differs by {diff}");
        let one_hot = extractor.one_hot(&wave);
        assert_eq!(one_hot, frames(&r[&format!("{clip}.onehot")]), "{clip}: one-hot differs");
        assert_eq!(model.chroma(&wave), Some(one_hot), "{clip}: the model's extractor is the same");
    }
}

#[test]
fn melody_generation_matches_transformers_alone_and_batched() {
    for name in FIXTURES {
        generation_matches(name);
    }
}

fn generation_matches(name: &str) {
    let r = reference_file(name, "melody.safetensors");
    let model = MusicGen::load(&fixture(name), Device::Cpu, DType::F32).unwrap();
    assert!(model.is_melody());
    let melody = frames(&r["clip.onehot"]);
    let cases = [
        ("melody", request(&model, PROMPTS[1], melody.clone())),
        ("text", request(&model, PROMPTS[1], Vec::new())),
        ("melody0", request(&model, PROMPTS[0], melody)),
    ];
    let check = |key: &str, (stats, audio): &(GenerationStats, Vec<f32>), how: &str| {
        let want = &r[&format!("{key}.codes")].get(0);
        assert!(
            codes_tensor(stats).equal(want),
            "{name} {key} {how}: codes {:?} differ from {want}",
            stats.codes
        );
        let diff = max_diff(&Tensor::from_slice(audio), &interleaved(&r[&format!("{key}.audio")].get(0)));
        assert!(diff <= 1e-4, "{name} {key} {how}: audio differs by {diff}");
    };
    for (key, req) in &cases {
        check(key, &run(&model, std::slice::from_ref(req))[0], "alone");
    }
    // Prompts of different lengths and a melody-less row: each row's conditioning has its own length.
    let batch: Vec<GenerationRequest> = cases.iter().map(|(_, r)| r.clone()).collect();
    for ((key, _), out) in cases.iter().zip(run(&model, &batch)) {
        check(key, &out, "batched");
    }
}

#[test]
fn melody_checkpoints_refuse_what_they_cannot_do() {
    let model = MusicGen::load(&fixture(NAME), Device::Cpu, DType::F32).unwrap();
    let mut long = request(&model, PROMPTS[1], Vec::new());
    long.frames = model.window_frames() + 1;
    let err = model.generate(&[long], |_| ControlFlow::Continue(())).unwrap_err().to_string();
    assert!(err.contains("duration_s") && err.contains("one window"), "{err}");
    let mut continuation = request(&model, PROMPTS[1], Vec::new());
    continuation.prompt_codes = vec![vec![1, 2]; model.num_codebooks()];
    let err = model.generate(&[continuation], |_| ControlFlow::Continue(())).unwrap_err().to_string();
    assert!(err.contains("audio_prompt"), "{err}");
    let wide = request(&model, PROMPTS[1], vec![vec![1.0; 13]]);
    let err = model.generate(&[wide], |_| ControlFlow::Continue(())).unwrap_err().to_string();
    assert!(err.contains("melody") && err.contains("12 finite values"), "{err}");
    let text = MusicGen::load(&fixture("musicgen-tiny"), Device::Cpu, DType::F32).unwrap();
    let mut req = text.request(PROMPTS[1], 0.1);
    req.melody = vec![vec![0.0; 12]];
    let err = text.generate(&[req], |_| ControlFlow::Continue(())).unwrap_err().to_string();
    assert!(err.contains("not a melody checkpoint"), "{err}");
    assert!(text.chroma(&[0.0; 100]).is_none());
}

#[test]
fn inspect_names_a_melody_checkpoint() {
    let out = maestro::musicgen::inspect(&fixture(NAME), 1, 10.0).unwrap();
    assert!(out.contains("melody: decoder-only, prefixed with 24 chroma frames (12 pitch classes)"), "{out}");
    assert!(out.contains("cross    0.0 MiB"), "no cross-attention cache:\n{out}");
}
