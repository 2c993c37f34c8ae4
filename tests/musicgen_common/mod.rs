//! Shared helpers of the MusicGen tests: fixture paths, reference tensors, comparisons.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use std::ops::ControlFlow;

use maestro::musicgen::{GenerationRequest, GenerationStats, MusicGen};
use tch::{Kind, Tensor};

/// The tiny configurations made by `scripts/make_reference.py`: two mono, and a stereo one stored in
/// f16 like the published stereo checkpoints.
pub const FIXTURES: [&str; 3] = ["musicgen-tiny", "musicgen-tiny2", "musicgen-stereo-tiny"];

/// The prompts `scripts/make_reference.py` encodes (keep in sync with `PROMPTS` there).
pub const PROMPTS: [&str; 3] = [
    "80s pop track with bassy drums and synth",
    "calm piano",
    "a  lofi   beat with rain, vinyl crackle and a slow jazzy piano melody over soft drums",
];

/// Directory of a fixture.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The transformers reference tensors of a fixture.
pub fn reference(name: &str) -> HashMap<String, Tensor> {
    let path = fixture(name).join("reference.safetensors");
    Tensor::read_safetensors(&path).expect("reference.safetensors loads").into_iter().collect()
}

/// Another file of reference tensors (`conditioning.safetensors`, …) of a fixture.
pub fn reference_file(name: &str, file: &str) -> HashMap<String, Tensor> {
    let path = fixture(name).join(file);
    Tensor::read_safetensors(&path).unwrap_or_else(|e| panic!("{file} loads: {e}")).into_iter().collect()
}

/// transformers' audio `(channels, samples)` as Maestro streams it: channel-interleaved, flat.
pub fn interleaved(audio: &Tensor) -> Tensor {
    audio.transpose(0, 1).flatten(0, -1)
}

/// Largest absolute difference, computed in f32 after flattening both sides.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_kind(Kind::Float).flatten(0, -1), b.to_kind(Kind::Float).flatten(0, -1));
    assert_eq!(a.size(), b.size(), "compared tensors differ in size");
    (a - b).abs().max().double_value(&[])
}

/// Each request's stats and streamed samples (channel-interleaved), the batch run together.
pub fn run(model: &MusicGen, requests: &[GenerationRequest]) -> Vec<(GenerationStats, Vec<f32>)> {
    let mut audio = vec![Vec::new(); requests.len()];
    let stats = model
        .generate(requests, |chunk| {
            assert_eq!(chunk.channels, model.channels(), "chunks carry the model's channels");
            audio[chunk.request].extend_from_slice(&chunk.samples);
            ControlFlow::Continue(())
        })
        .expect("generation runs");
    stats.into_iter().zip(audio).collect()
}

/// A request's codes `(codebooks, frames)`.
pub fn codes_tensor(stats: &GenerationStats) -> Tensor {
    let frames = stats.codes[0].len() as i64;
    Tensor::from_slice(&stats.codes.concat()).view([stats.codes.len() as i64, frames])
}
