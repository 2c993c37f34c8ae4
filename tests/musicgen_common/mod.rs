//! Shared helpers of the MusicGen tests: fixture paths, reference tensors, comparisons.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

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
