//! Tests of dtype parsing, the requirements table and checkpoint-derived sizes, on safetensors files
//! written by hand into temporary directories.

use std::collections::HashMap;
use std::path::Path;

use proptest::prelude::*;
use tempfile::TempDir;

use super::*;

#[test]
fn dtype_parses_case_insensitively_with_f32_default() {
    for (text, dtype) in [("", DType::F32), ("f32", DType::F32), ("F16", DType::F16), ("Bf16", DType::Bf16)] {
        assert_eq!(DType::parse(text).unwrap(), dtype, "{text}");
    }
    assert_eq!([DType::F32, DType::F16, DType::Bf16].map(DType::bytes), [4, 2, 2]);
    let parts = |d: DType| (d.parts().text_encoder, d.parts().decoder, d.parts().audio_decoder);
    assert_eq!(parts(DType::F32), (DType::F32, DType::F32, DType::F32));
    assert_eq!(parts(DType::F16), (DType::F32, DType::F16, DType::F32), "f16 keeps T5 and EnCodec in f32");
    assert_eq!(parts(DType::Bf16), (DType::Bf16, DType::Bf16, DType::F32));
    assert_eq!(DType::Bf16.to_string(), "bf16");
    let err = DType::parse("fp16").unwrap_err();
    assert_eq!(err, UnknownDType { value: "fp16".into() });
    let message = err.to_string();
    assert!(
        message.starts_with("must be one of ")
            && message.contains("\"bf16\"")
            && message.ends_with("got \"fp16\"")
    );
}

#[test]
fn sources_have_report_names() {
    assert_eq!(
        [Source::Table, Source::Checkpoint, Source::Measured].map(|s| s.to_string()),
        ["table", "checkpoint", "measured"]
    );
}

#[test]
fn builtin_table_holds_the_published_models() {
    let registry = Registry::default();
    let small = registry.table("facebook/musicgen-small").unwrap();
    assert_eq!((small.host_gb, small.gpu_gb, small.min_compute_capability), (3.0, 6.0, 6.0));
    assert_eq!((small.default_batch_size, small.max_duration_s), (2, 30.0));
    let large = registry.table("facebook/musicgen-large").unwrap();
    assert_eq!(
        (large.host_gb, large.gpu_gb, large.min_compute_capability, large.default_batch_size),
        (12.0, 24.0, 8.0, 1)
    );
    let stereo = registry.table("facebook/musicgen-stereo-medium").unwrap();
    assert_eq!((stereo.host_gb, stereo.gpu_gb, stereo.default_batch_size), (6.1, 12.2, 1));
    assert_eq!(registry.entries().count(), 6);
    assert!(registry.table("maestro/musicgen-tiny").is_none());
}

#[test]
fn overrides_replace_and_extend_the_table() {
    let small: TableEntry = serde_json::from_str(
        r#"{"host_gb": 4, "gpu_gb": 8, "min_compute_capability": 7.5, "default_batch_size": 4}"#,
    )
    .unwrap();
    assert_eq!(small.max_duration_s, DEFAULT_MAX_DURATION_S);
    let tiny = TableEntry { max_duration_s: 5.0, ..small.clone() };
    let overrides = HashMap::from([
        ("facebook/musicgen-small".to_owned(), small.clone()),
        ("maestro/musicgen-tiny".to_owned(), tiny.clone()),
    ]);
    let registry = Registry::new(overrides);
    assert_eq!(registry.table("facebook/musicgen-small"), Some(&small));
    assert_eq!(registry.table("maestro/musicgen-tiny"), Some(&tiny));
    assert_eq!(registry.table("facebook/musicgen-medium").unwrap().gpu_gb, 12.0);
    let ids: Vec<&str> = registry.entries().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 7);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn table_entries_reject_unknown_fields() {
    let text =
        r#"{"host_gb": 1, "gpu_gb": 2, "min_compute_capability": 6, "default_batch_size": 1, "gpu": 3}"#;
    let err = serde_json::from_str::<TableEntry>(text).unwrap_err().to_string();
    assert!(err.contains("unknown field `gpu`"), "{err}");
}

#[test]
fn table_validation_names_field_and_value() {
    let good = Registry::default().table("facebook/musicgen-small").unwrap().clone();
    assert!(good.validate("x").is_ok());
    let cases = [
        (TableEntry { host_gb: 0.0, ..good.clone() }, "host_gb: must be a finite number > 0, got 0"),
        (TableEntry { gpu_gb: f64::NAN, ..good.clone() }, "gpu_gb: must be a finite number > 0, got NaN"),
        (TableEntry { min_compute_capability: -1.0, ..good.clone() }, "min_compute_capability"),
        (TableEntry { default_batch_size: 0, ..good.clone() }, "default_batch_size: must be >= 1, got 0"),
        (TableEntry { max_duration_s: f64::INFINITY, ..good.clone() }, "max_duration_s"),
    ];
    for (entry, expected) in cases {
        let message = entry.validate("m").unwrap_err().to_string();
        assert!(message.contains("\"m\"") && message.contains(expected), "{message}");
    }
}

#[test]
fn table_figures_hold_at_default_batch_and_max_duration() {
    let small = Registry::default().table("facebook/musicgen-small").unwrap().requirements(DType::F32, 30.0);
    assert_eq!(small.source, Source::Table);
    assert_eq!(
        (small.host_runtime_bytes, small.cuda_context_bytes),
        (HOST_RUNTIME_BYTES, CUDA_CONTEXT_BYTES)
    );
    assert_eq!(small.weights_bytes(), 2 * GB, "the host figure less the runtime");
    let w = small.weights;
    assert_eq!(
        (w.text_encoder, w.audio_decoder),
        (4 * TABLE_TEXT_ENCODER_PARAMS, 4 * TABLE_AUDIO_DECODER_PARAMS)
    );
    assert_eq!(small.per_sample_bytes, 1_750_000_000);
    assert_eq!(small.gpu_bytes_for(2), 6 * GB, "the GPU figure at the default batch");
    assert_eq!(small.host_bytes_for(2, true), HOST_RUNTIME_BYTES);
    assert_eq!(
        small.host_bytes_for(2, false),
        3 * GB + 3_500_000_000,
        "the host figure plus the working set"
    );
    assert_eq!(small.gpu_bytes_for(4), 9_500_000_000);
    assert_eq!(
        (small.default_batch_size, small.min_compute_capability, small.max_duration_s),
        (2, 6.0, 30.0)
    );
}

#[test]
fn table_scales_with_duration_and_dtype() {
    let medium = Registry::default().table("facebook/musicgen-medium").unwrap().clone();
    let full = medium.requirements(DType::F32, 30.0);
    let half_length = medium.requirements(DType::F32, 15.0);
    assert_eq!(half_length.per_sample_bytes * 2, full.per_sample_bytes);
    let f16 = medium.requirements(DType::F16, 30.0);
    assert_eq!(f16.weights.decoder * 2, full.weights.decoder);
    assert_eq!(
        (f16.weights.text_encoder, f16.weights.audio_decoder),
        (full.weights.text_encoder, full.weights.audio_decoder),
        "f16 keeps T5 and EnCodec in f32"
    );
    assert_eq!(f16.per_sample_bytes, full.per_sample_bytes);
    assert_eq!(full.gpu_bytes_for(1) - f16.gpu_bytes_for(1), full.weights.decoder / 2);
    let bf16 = medium.requirements(DType::Bf16, 30.0);
    assert_eq!(bf16.weights.text_encoder * 2, full.weights.text_encoder);
    assert_eq!(bf16.weights.audio_decoder, full.weights.audio_decoder);
    assert_eq!((full.min_compute_capability, bf16.min_compute_capability), (7.0, BF16_COMPUTE_CAPABILITY));
}

#[test]
fn a_tiny_table_row_keeps_a_runtime_and_positive_parts() {
    let tiny = TableEntry {
        host_gb: 0.2,
        gpu_gb: 1.0,
        ..Registry::default().table("facebook/musicgen-small").unwrap().clone()
    };
    let r = tiny.requirements(DType::F32, 30.0);
    assert_eq!(r.host_runtime_bytes, 100_000_000, "half of a host figure under 2 GB");
    assert_eq!(r.weights_bytes(), 100_000_000);
    assert_eq!(r.weights.text_encoder, 100_000_000, "T5 takes what there is, the rest gets nothing");
    assert_eq!(r.per_sample_bytes, 200_000_000);
}

#[test]
fn measured_figures_replace_the_estimate() {
    let estimate =
        Registry::default().table("facebook/musicgen-small").unwrap().requirements(DType::F32, 30.0);
    let measured = estimate.clone().measured(3 * GB);
    assert_eq!((measured.source, measured.weights_bytes()), (Source::Measured, 3 * GB));
    assert_eq!(measured.weights.text_encoder, estimate.weights.text_encoder * 3 / 2);
    assert_eq!(measured.gpu_bytes_for(2), 3 * GB + 2 * estimate.per_sample_bytes + CUDA_CONTEXT_BYTES);
    assert_eq!(measured.host_runtime_bytes, estimate.host_runtime_bytes);
    assert_eq!(WeightBytes::default().scaled_to(7).decoder, 7, "nothing to scale: all decoder");
}

/// The decoder bytes `weights_from_header` sizes for `dtype` from a checkpoint of `header` and
/// `data_len` bytes of data.
fn decoder_bytes(header: &str, data_len: usize, dtype: DType) -> u64 {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("model.safetensors");
    write_safetensors(&path, header, data_len);
    weights_from_header(&path, dtype).unwrap().weights.decoder
}

/// Writes a safetensors file: the header JSON padded to 8 bytes, then `data_len` zero bytes.
fn write_safetensors(path: &Path, header: &str, data_len: usize) {
    let mut header = header.as_bytes().to_vec();
    header.resize(header.len().div_ceil(8) * 8, b' ');
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    bytes.resize(bytes.len() + data_len, 0);
    std::fs::write(path, bytes).unwrap();
}

/// One tensor of each part: decoder (a float and an integer one), text encoder, audio decoder, and an
/// EnCodec encoder tensor that is never loaded.
const SMALL_HEADER: &str = r#"{"__metadata__": {"format": "pt"},
    "decoder.w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
    "decoder.steps": {"dtype": "I64", "shape": [4], "data_offsets": [24, 56]},
    "text_encoder.t": {"dtype": "F32", "shape": [2], "data_offsets": [56, 64]},
    "audio_encoder.decoder.c": {"dtype": "F32", "shape": [2], "data_offsets": [64, 72]},
    "audio_encoder.encoder.e": {"dtype": "F32", "shape": [10], "data_offsets": [72, 112]}}"#;
const SMALL_DATA: usize = 112;

#[test]
fn weights_come_from_the_header_per_part_and_dtype() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("model.safetensors");
    write_safetensors(&path, SMALL_HEADER, SMALL_DATA);
    let weights = |dtype| weights_from_header(&path, dtype).unwrap().weights;
    let bytes = |w: WeightBytes| (w.text_encoder, w.decoder, w.audio_decoder);
    assert_eq!(bytes(weights(DType::F32)), (8, 24 + 32, 8));
    assert_eq!(bytes(weights(DType::F16)), (8, 12 + 32, 8), "f16: the decoder's floats only");
    assert_eq!(bytes(weights(DType::Bf16)), (4, 12 + 32, 8), "bf16: T5 too, never EnCodec");
    assert_eq!(
        weights_from_header(&path, DType::F32).unwrap().largest_tensor_bytes,
        32,
        "unused ones excluded"
    );
    let counts = ParameterCounts::of(&crate::checkpoint::Checkpoint::open(&path).unwrap());
    assert_eq!(counts, ParameterCounts { text_encoder: 2, decoder: 10, audio_decoder: 2, unused: 10 });
    assert_eq!(Part::of("audio_encoder.quantizer.layers.0.codebook.embed"), Part::AudioDecoder);
    assert_eq!(Part::of("audio_encoder.quantizer.layers.0.codebook.embed_avg"), Part::Unused);
    assert_eq!(Part::of("enc_to_dec_proj.weight"), Part::TextEncoder);
}

#[test]
fn damaged_headers_are_corrupt_not_panics() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("model.safetensors");
    let tensor = |dtype: &str, shape: &str, offsets: &str| {
        format!(r#"{{"t": {{"dtype": "{dtype}", "shape": {shape}, "data_offsets": {offsets}}}}}"#)
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "shorter than the 8-byte header length"),
        (vec![1, 2, 3], "shorter than the 8-byte header length"),
        ((100u64).to_le_bytes().to_vec(), "invalid header length"),
        ((100_000_001u64).to_le_bytes().to_vec(), "is 100000001, over the limit of 16777216"),
        (file(b"not json", 0), "invalid JSON"),
        (file(b"[1, 2]", 0), "invalid JSON"),
        (file(tensor("F32", "[2]", "[0, 8]").as_bytes(), 4), "not fully covered"),
        (file(tensor("F32", "[2]", "[8, 0]").as_bytes(), 8), "invalid offset for tensor `t`"),
        (file(tensor("F32", "[3]", "[0, 8]").as_bytes(), 8), "invalid shape"),
        (file(tensor("Q4", "[2]", "[0, 8]").as_bytes(), 8), "unknown variant `Q4`"),
        (file(tensor("F32", "[-2]", "[0, 8]").as_bytes(), 8), "invalid JSON"),
        (file(tensor("F32", "[4294967296, 4294967296]", "[0, 8]").as_bytes(), 8), "overflow"),
        (file(br#"{"t": {"dtype": "F32"}}"#, 0), "missing field"),
    ];
    for (bytes, expected) in cases {
        std::fs::write(&path, &bytes).unwrap();
        match weights_from_header(&path, DType::F32) {
            Err(RequirementsError::Checkpoint(
                e @ (CheckpointError::Corrupt { .. } | CheckpointError::OverLimit { .. }),
            )) => {
                assert!(e.to_string().contains(expected), "{e}")
            }
            other => panic!("{expected}: {other:?}"),
        }
    }
}

/// A file with `header` as its JSON header and `data_len` bytes of data.
fn file(header: &[u8], data_len: usize) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.resize(bytes.len() + data_len, 0);
    bytes
}

/// The decoder, codec and text encoder of `tests/fixtures/musicgen-tiny`, trimmed to what is read.
const TINY_CONFIG: &str = r#"{
    "decoder": {"hidden_size": 48, "num_hidden_layers": 2, "num_codebooks": 4, "vocab_size": 64,
                "ffn_dim": 96, "num_attention_heads": 4},
    "audio_encoder": {"sampling_rate": 32000, "audio_channels": 1, "upsampling_ratios": [8, 5, 4, 4],
                      "num_filters": 4},
    "text_encoder": {"d_model": 32, "d_ff": 64, "num_heads": 4}
}"#;

fn tiny_checkpoint(generation: Option<&str>) -> TempDir {
    let dir = TempDir::new().unwrap();
    write_safetensors(&dir.path().join("model.safetensors"), SMALL_HEADER, SMALL_DATA);
    std::fs::write(dir.path().join("config.json"), TINY_CONFIG).unwrap();
    if let Some(text) = generation {
        std::fs::write(dir.path().join("generation_config.json"), text).unwrap();
    }
    dir
}

#[test]
fn checkpoint_working_set_follows_the_documented_formula() {
    let dir = tiny_checkpoint(Some(r#"{"max_length": 1500, "guidance_scale": 3.0}"#));
    let r = from_checkpoint(dir.path(), DType::F32, 10.0).unwrap();
    let (rows, steps) = (CFG_FACTOR, 50 * 10 + 4);
    let per_position = 2 * 2 * 48 * 4;
    let kv = rows * steps * per_position;
    let cross = rows * PROMPT_TOKENS * per_position;
    let step = rows * (96 + 4 * 48 + 4 * 64) * 4 * 2;
    let text = PROMPT_TOKENS * (64 + 4 * PROMPT_TOKENS) * 4 * 2;
    let codec = (50 + CODEC_CONTEXT_FRAMES) * 4 * 640 * 2 * 4 * 3;
    assert_eq!(r.per_sample_bytes, kv + cross + step.max(text) + codec);
    let shape = ModelShape::read(&dir.path().join("config.json")).unwrap();
    let three = shape.working_set(DType::F32, 3, 10.0);
    assert_eq!(
        three,
        WorkingSet { kv_cache: 3 * kv, cross_cache: 3 * cross, activations: 3 * (step.max(text) + codec) }
    );
    assert_eq!(
        (r.source, r.weights_bytes(), r.cuda_context_bytes),
        (Source::Checkpoint, 72, CUDA_CONTEXT_BYTES)
    );
    assert_eq!(r.gpu_bytes_for(3), 72 + 3 * r.per_sample_bytes + CUDA_CONTEXT_BYTES);
    assert_eq!(r.host_runtime_bytes, HOST_RUNTIME_BYTES + 32);
    assert_eq!(r.host_bytes_for(3, false), HOST_RUNTIME_BYTES + 32 + 72 + 3 * r.per_sample_bytes);
    assert_eq!((r.default_batch_size, r.max_duration_s, r.min_compute_capability), (1, 30.0, 6.0));
}

#[test]
fn checkpoint_scales_with_dtype_and_duration() {
    let dir = tiny_checkpoint(None);
    let f32 = from_checkpoint(dir.path(), DType::F32, 10.0).unwrap();
    let bf16 = from_checkpoint(dir.path(), DType::Bf16, 10.0).unwrap();
    assert_eq!((bf16.weights_bytes(), bf16.min_compute_capability), (4 + 44 + 8, BF16_COMPUTE_CAPABILITY));
    assert!(bf16.per_sample_bytes < f32.per_sample_bytes, "the KV cache is in the decoder's dtype");
    let double = from_checkpoint(dir.path(), DType::F32, 20.0).unwrap();
    assert!(double.per_sample_bytes > f32.per_sample_bytes);
    assert_eq!(f32.max_duration_s, DEFAULT_MAX_DURATION_S);
}

#[test]
fn a_checkpoint_is_read_once_per_identity_whatever_the_duration() {
    let dir = tiny_checkpoint(None);
    let cache = SizingCache::default();
    for (dtype, seconds) in [(DType::F32, 10.0), (DType::F32, 11.5), (DType::F16, 3.0), (DType::F32, 29.0)] {
        let remembered = cache.requirements(dir.path(), dtype, seconds).unwrap();
        assert_eq!(remembered, from_checkpoint(dir.path(), dtype, seconds).unwrap(), "{dtype:?} {seconds}");
    }
    assert_eq!(cache.reads(), 1, "new durations and dtypes are arithmetic");
    // Replaced on disk (another length): read again, and the new sizes answer.
    let config = dir.path().join("generation_config.json");
    std::fs::write(&config, r#"{"max_length": 250}"#).unwrap();
    let r = cache.requirements(dir.path(), DType::F32, 1.0).unwrap();
    assert_eq!((cache.reads(), r.max_duration_s), (2, 5.0));
}

#[test]
fn broken_configs_are_reported() {
    let dir = tiny_checkpoint(Some("{"));
    assert!(matches!(from_checkpoint(dir.path(), DType::F32, 1.0), Err(RequirementsError::Config { .. })));
    std::fs::write(dir.path().join("generation_config.json"), "{}").unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"decoder": {"hidden_size": 8}}"#).unwrap();
    let err = from_checkpoint(dir.path(), DType::F32, 1.0).unwrap_err();
    assert!(
        matches!(err, RequirementsError::Config { .. }) && err.to_string().contains("missing field"),
        "{err}"
    );
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    assert!(matches!(
        from_checkpoint(dir.path(), DType::F32, 1.0),
        Err(RequirementsError::Checkpoint(CheckpointError::NoWeights { .. }))
    ));
}

#[test]
fn extreme_configs_saturate_instead_of_panicking() {
    let dir = tiny_checkpoint(Some(r#"{"max_length": 0}"#));
    let config = r#"{"decoder": {"hidden_size": 18446744073709551615, "num_hidden_layers": 4294967296,
        "ffn_dim": 1, "vocab_size": 64, "audio_channels": 0},
        "audio_encoder": {"sampling_rate": 0, "num_filters": 1, "upsampling_ratios": [4294967296, 4294967296]},
        "text_encoder": {"d_ff": 1, "num_heads": 1}}"#;
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    let r = from_checkpoint(dir.path(), DType::F32, f64::INFINITY).unwrap();
    assert_eq!((r.per_sample_bytes, r.gpu_bytes_for(u32::MAX)), (u64::MAX, u64::MAX));
    assert_eq!(r.max_duration_s, DEFAULT_MAX_DURATION_S);
    let table =
        Registry::default().table("facebook/musicgen-small").unwrap().requirements(DType::F32, f64::NAN);
    assert_eq!(table.per_sample_bytes, 0);
}

#[test]
fn real_fixture_weights_match_the_loaded_tensor_bytes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/musicgen-tiny");
    let Ok(file) = crate::checkpoint::Checkpoint::open(&dir.join("model.safetensors")) else { return };
    let loaded: u64 = file
        .tensors()
        .iter()
        .filter(|(key, _)| Part::of(key) != Part::Unused)
        .map(|(_, info)| crate::checkpoint::stored_bytes(info))
        .sum();
    let r = from_checkpoint(&dir, DType::F32, 5.0).unwrap();
    assert_eq!(r.weights_bytes(), loaded, "the fixture is stored in f32");
    assert!(ParameterCounts::of(&file).unused > 0, "EnCodec's encoder is stored, not loaded");
    assert_eq!(r.max_duration_s, 30.0);
}

proptest! {
    #[test]
    fn arbitrary_headers_never_panic(header in proptest::collection::vec(any::<u8>(), 0..256), data in 0usize..64) {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, file(&header, data)).unwrap();
        let _ = weights_from_header(&path, DType::F16);
    }
}

/// int8: a byte per quantised weight plus an f32 scale and sum per row, the rest f32 (a quarter if unnamed).
#[test]
fn int8_counts_quantised_weights_and_their_scales() {
    assert_eq!((DType::parse("INT8").unwrap(), DType::Int8.to_string()), (DType::Int8, "int8".into()));
    assert_eq!((DType::Int8.matrix_bytes(3, 5), DType::Int8.activation()), (3 * 13, DType::F32));
    let layer = |name: &str| format!("decoder.model.decoder.layers.0.{name}.weight");
    assert!(["fc1", "encoder_attn.q_proj", "self_attn.v_proj"].iter().all(|n| quantised_weight(&layer(n))));
    assert!(quantised_weight("decoder.lm_heads.2.weight"));
    assert!(
        !quantised_weight("decoder.model.decoder.layers.0.encoder_attn.k_proj.weight"),
        "once per prompt"
    );
    let kept = ["decoder.model.decoder.embed_tokens.0.weight", "decoder.model.decoder.layers.0.fc1.bias"];
    assert!(!kept.iter().any(|k| quantised_weight(k)));
    let header = r#"{"decoder.model.decoder.layers.0.fc1.weight": {"dtype": "F16", "shape": [4, 8], "data_offsets": [0, 64]},
        "decoder.model.decoder.layer_norm.weight": {"dtype": "F16", "shape": [8], "data_offsets": [64, 80]}}"#;
    let decoder = decoder_bytes(header, 80, DType::Int8);
    assert_eq!(decoder, 32 + 4 * 8 + 8 * 4, "fc1 as int8 with 4 scales and sums, the norm in f32");
    let counts = ParameterCounts { decoder: 400, ..Default::default() };
    assert_eq!(WeightBytes::of_params(&counts, DType::Int8).decoder, 400 + 100 * 3);
}

/// int4: per row and group of 32 inputs (the last padded) 16 code bytes and an f16 scale, the rest
/// f32 (a quarter if unnamed, the rest at 9/16 of a byte per weight).
#[test]
fn int4_counts_groups_of_codes_and_scales() {
    assert_eq!((DType::parse("Int4").unwrap(), DType::Int4.to_string()), (DType::Int4, "int4".into()));
    assert!(DType::Int4.is_quantised() && !DType::F16.is_quantised());
    assert_eq!(DType::Int4.activation(), DType::F32);
    assert_eq!([32, 33, 64].map(|cols| DType::Int4.matrix_bytes(2, cols)), [36, 72, 72]);
    let header = r#"{"decoder.model.decoder.layers.0.fc1.weight": {"dtype": "F32", "shape": [4, 40], "data_offsets": [0, 640]},
        "decoder.model.decoder.layer_norm.weight": {"dtype": "F32", "shape": [8], "data_offsets": [640, 672]}}"#;
    let decoder = decoder_bytes(header, 672, DType::Int4);
    assert_eq!(decoder, 4 * 2 * 18 + 8 * 4, "fc1 as two groups per row, the norm in f32");
    let counts = ParameterCounts { decoder: 400, ..Default::default() };
    assert_eq!(WeightBytes::of_params(&counts, DType::Int4).decoder, 300 / 16 * 9 + 100 * 4);
}
