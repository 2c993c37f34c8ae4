//! Checkpoint loading edge cases, on copies of the tiny fixture in a temporary directory: a missing or
//! misshapen tensor names the key (and both shapes), a truncated or corrupt file is an error rather than
//! a crash, and the newer weight-norm spelling loads to the same audio. Also the inspect report.
#![cfg(feature = "torch")]

mod musicgen_common;

use std::fs;
use std::path::Path;

use maestro::musicgen::{inspect, DType, MusicGen, MusicgenError};
use musicgen_common::{fixture, max_diff, reference, FIXTURES};
use serde_json::{Map, Value};
use tch::Device;

/// Copies a fixture into a fresh temporary directory.
fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "generation_config.json", "tokenizer.json", "model.safetensors"] {
        fs::copy(fixture(name).join(file), dir.path().join(file)).unwrap();
    }
    dir
}

/// Rewrites the safetensors header of `dir/model.safetensors`, keeping the data section.
fn edit_header(dir: &Path, edit: impl FnOnce(&mut Map<String, Value>)) {
    let path = dir.join("model.safetensors");
    let bytes = fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Map<String, Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let text = serde_json::to_vec(&header).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    fs::write(&path, out).unwrap();
}

fn load(dir: &Path) -> Result<MusicGen, MusicgenError> {
    MusicGen::load(dir, Device::Cpu, DType::F32)
}

#[test]
fn missing_tensor_names_the_key() {
    let dir = copy_fixture(FIXTURES[0]);
    let key = "decoder.model.decoder.layers.1.fc2.weight";
    // Renamed, not removed: the format requires the header to cover every data byte.
    edit_header(dir.path(), |h| {
        let value = h.remove(key).unwrap();
        h.insert(format!("{key}.renamed"), value);
    });
    match load(dir.path()) {
        Err(MusicgenError::MissingTensor { key: k }) => assert_eq!(k, key),
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("loaded without {key}"),
    }
}

#[test]
fn misshapen_tensor_names_both_shapes() {
    let dir = copy_fixture(FIXTURES[0]);
    let key = "decoder.model.decoder.layers.0.fc1.weight";
    edit_header(dir.path(), |h| {
        let shape = h[key]["shape"].as_array_mut().unwrap();
        shape.swap(0, 1);
    });
    let err = load(dir.path()).err().expect("misshapen tensor must not load");
    match &err {
        MusicgenError::ShapeMismatch { key: k, expected, found } => {
            assert_eq!(k, key);
            assert_eq!(expected, &[96, 48]);
            assert_eq!(found, &[48, 96]);
        }
        other => panic!("wrong error: {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(key) && message.contains("[48, 96]") && message.contains("[96, 48]"),
        "{message}"
    );
}

#[test]
fn truncated_or_corrupt_files_are_errors() {
    let dir = copy_fixture(FIXTURES[0]);
    let path = dir.path().join("model.safetensors");
    let bytes = fs::read(&path).unwrap();
    for cut in [bytes.len() - 1000, bytes.len() / 2, 100, 5, 0] {
        fs::write(&path, &bytes[..cut]).unwrap();
        let err = load(dir.path()).err().expect("truncated file must not load");
        assert!(corrupt(&err), "cut at {cut}: {err}");
    }
    let mut garbage = bytes.clone();
    garbage[8..40].copy_from_slice(&[b'#'; 32]);
    fs::write(&path, &garbage).unwrap();
    assert!(load(dir.path()).err().is_some_and(|e| corrupt(&e)));
    fs::write(&path, u64::MAX.to_le_bytes()).unwrap();
    assert!(load(dir.path()).err().is_some_and(|e| corrupt(&e)));
}

/// Refused as corrupt (or over a size limit) by the checkpoint reader, or by the loader's own checks.
fn corrupt(e: &MusicgenError) -> bool {
    use maestro::checkpoint::CheckpointError;
    matches!(
        e,
        MusicgenError::CorruptWeights { .. }
            | MusicgenError::Checkpoint(CheckpointError::Corrupt { .. } | CheckpointError::OverLimit { .. })
    )
}

#[test]
fn parametrizations_spelling_loads_the_same() {
    let dir = copy_fixture(FIXTURES[1]);
    edit_header(dir.path(), |h| {
        let keys: Vec<String> =
            h.keys().filter(|k| k.ends_with(".weight_g") || k.ends_with(".weight_v")).cloned().collect();
        for key in keys {
            let value = h.remove(&key).unwrap();
            let renamed = key
                .replace(".weight_g", ".parametrizations.weight.original0")
                .replace(".weight_v", ".parametrizations.weight.original1");
            h.insert(renamed, value);
        }
    });
    let model = load(dir.path()).expect("parametrizations spelling loads");
    let r = reference(FIXTURES[1]);
    let diff = max_diff(&model.decode_codes(&r["codec.codes"]), &r["codec.audio"]);
    assert!(diff <= 1e-4, "audio differs by {diff}");
}

#[test]
fn inspect_reports_parts_and_memory() {
    let report = inspect(&fixture(FIXTURES[0]), 2, 10.0).unwrap();
    for needle in
        ["text encoder (T5)", "decoder", "audio decoder (EnCodec)", "stored dtype: F32", "f16", "bf16"]
    {
        assert!(report.contains(needle), "missing `{needle}` in:\n{report}");
    }
    assert!(report.contains("tokenizer: loads"), "{report}");
}
