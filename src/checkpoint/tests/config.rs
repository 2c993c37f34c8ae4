//! `config.json` sizes that the derived values divide by or multiply: each one a fuzzing run turned
//! into a panic (kept under `tests/fixtures/fuzz/config_file/`) is now a refusal naming the field.

use std::path::Path;

use crate::checkpoint::config::{ConfigError, MusicgenConfig};

fn refusal(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz/config_file").join(file);
    match MusicgenConfig::from_file(&path) {
        Err(ConfigError::Invalid { message, .. }) => message,
        other => panic!("{file}: {other:?}"),
    }
}

#[test]
fn zero_heads_and_ratios_are_refused_by_name() {
    assert_eq!(refusal("zero-attention-heads.json"), "decoder.num_attention_heads must be positive, got 0");
    let ratios = refusal("zero-upsampling-ratio.json");
    assert!(ratios.starts_with("audio_encoder.upsampling_ratios [0] must be positive"), "{ratios}");
}

#[test]
fn sizes_past_their_range_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/musicgen-tiny/config.json");
    let tiny: serde_json::Value = serde_json::from_slice(&std::fs::read(tiny).unwrap()).unwrap();
    type Edit = fn(&mut serde_json::Value);
    let cases: [(Edit, &str); 4] = [
        (|c| c["audio_encoder"]["sampling_rate"] = (-1).into(), "sampling_rate must be 1..=384000, got -1"),
        (|c| c["decoder"]["vocab_size"] = (1i64 << 40).into(), "vocab_size must be 1..=4294967295"),
        (|c| c["audio_encoder"]["upsampling_ratios"] = [1i64 << 40, 1 << 40].into(), "multiply to at most"),
        (
            |c| c["audio_encoder"]["upsampling_ratios"] = [64000].into(),
            "multiply to at most the sampling_rate",
        ),
    ];
    for (edit, needle) in cases {
        let mut config = tiny.clone();
        edit(&mut config);
        std::fs::write(&path, config.to_string()).unwrap();
        match MusicgenConfig::from_file(&path) {
            Err(ConfigError::Invalid { message, .. }) => assert!(message.contains(needle), "{message}"),
            other => panic!("{needle}: {other:?}"),
        }
    }
    std::fs::write(&path, tiny.to_string()).unwrap();
    let config = MusicgenConfig::from_file(&path).unwrap();
    assert_eq!((config.audio_encoder.hop_length(), config.audio_encoder.frame_rate()), (640, 50));
}
