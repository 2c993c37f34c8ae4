//! What a model folder is, from its `config.json`, before anything is sized or loaded: a
//! text-conditioned MusicGen (`model_type` `musicgen`, `MusicgenForConditionalGeneration`) or a melody
//! one (`musicgen_melody`, `MusicgenMelodyForConditionalGeneration`), with no setting that would
//! change the maths in a way Maestro does not implement. Anything else is
//! [`CheckpointError::Unsupported`] naming the type or the field and its value, so an unknown
//! checkpoint is refused up front rather than with a missing tensor half-way through a load.
//!
//! A config that gives neither `model_type` nor `architectures` (a hand-written one) is read as
//! MusicGen; the sub-configs' checks still apply.

use std::path::Path;

use serde_json::Value;

use super::limits::{read_bounded, MAX_CONFIG_BYTES};
use super::CheckpointError;

/// The `model_type`s Maestro serves, each with its architecture and its decoder's `model_type`.
pub const SERVED: [(&str, &str, &str); 2] = [
    ("musicgen", "MusicgenForConditionalGeneration", "musicgen_decoder"),
    ("musicgen_melody", "MusicgenMelodyForConditionalGeneration", "musicgen_melody_decoder"),
];

/// Checks the `config.json` at `path`; an unreadable file is I/O, one over [`MAX_CONFIG_BYTES`] is
/// refused unread, unparsable JSON is corrupt.
pub fn check_config_file(path: &Path) -> Result<(), CheckpointError> {
    let text = read_bounded(path, MAX_CONFIG_BYTES, "config")?;
    let config: Value = serde_json::from_slice(&text)
        .map_err(|e| CheckpointError::corrupt(path, format!("not JSON: {e}")))?;
    check_config(&config).map_err(|reason| CheckpointError::Unsupported { path: path.to_owned(), reason })
}

/// The `model_type` of `config` when it names a model that is not MusicGen at all (not one of
/// [`SERVED`]): such a folder is another model, not a MusicGen checkpoint Maestro refuses. `None`
/// when the type is served or not given.
pub fn unserved_model_type(config: &Value) -> Option<String> {
    let model_type = config.get("model_type")?;
    let served = SERVED.iter().any(|(t, _, _)| model_type.as_str() == Some(*t));
    (!served).then(|| model_type.to_string())
}

/// Why the composite config `config` is not served, naming the field and its value.
pub fn check_config(config: &Value) -> Result<(), String> {
    let types = || SERVED.iter().map(|(t, _, _)| format!("\"{t}\"")).collect::<Vec<_>>().join(", ");
    let (_, architecture, decoder_type) = match config.get("model_type") {
        None => SERVED[0],
        Some(model_type) => SERVED
            .into_iter()
            .find(|(t, _, _)| model_type.as_str() == Some(*t))
            .ok_or_else(|| format!("model_type {model_type} is not served (Maestro serves {})", types()))?,
    };
    if let Some(architectures) = config.get("architectures").filter(|a| !a.is_null()) {
        let names: Vec<&str> =
            architectures.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        if names != [architecture] {
            return Err(format!("architectures {architectures} (this model_type is [\"{architecture}\"])"));
        }
    }
    for (part, want) in [("text_encoder", "t5"), ("audio_encoder", "encodec"), ("decoder", decoder_type)] {
        let found = config.get(part).and_then(|p| p.get("model_type"));
        if let Some(found) = found.filter(|f| f.as_str() != Some(want)) {
            return Err(format!("{part}.model_type {found} (Maestro reads \"{want}\")"));
        }
    }
    check_codec(config.get("audio_encoder").unwrap_or(&Value::Null))?;
    check_decoder(config)
}

/// EnCodec settings that change the decoded audio and are not implemented.
fn check_codec(codec: &Value) -> Result<(), String> {
    if let Some(mode) = codec.get("pad_mode").filter(|m| m.as_str() != Some("reflect")) {
        return Err(format!("audio_encoder.pad_mode {mode} (only \"reflect\" is implemented)"));
    }
    if let Some(normalize) = codec.get("normalize").filter(|n| !matches!(n, Value::Bool(false) | Value::Null))
    {
        return Err(format!("audio_encoder.normalize {normalize} (normalized codecs are not implemented)"));
    }
    if let Some(chunk) = codec.get("chunk_length_s").filter(|c| !c.is_null()) {
        return Err(format!(
            "audio_encoder.chunk_length_s {chunk} (chunked codecs are not implemented; null is)"
        ));
    }
    Ok(())
}

/// Decoder settings: the activation, and `cross_attention_hidden_size` as transformers reads it (it
/// must equal the text encoder's hidden size; set, it removes `enc_to_dec_proj`, so the decoder's
/// cross-attention must then take the text encoder's width, which it only does when both widths
/// agree).
fn check_decoder(config: &Value) -> Result<(), String> {
    let decoder = config.get("decoder").unwrap_or(&Value::Null);
    if let Some(f) = decoder.get("activation_function").filter(|f| f.as_str() != Some("gelu")) {
        return Err(format!("decoder.activation_function {f} (only \"gelu\" is implemented)"));
    }
    let Some(cross) = decoder.get("cross_attention_hidden_size").filter(|c| !c.is_null()) else {
        return Ok(());
    };
    let text = config.get("text_encoder").and_then(|t| t.get("d_model").or_else(|| t.get("hidden_size")));
    let hidden = decoder.get("hidden_size");
    if Some(cross) != text {
        return Err(format!(
            "decoder.cross_attention_hidden_size {cross} differs from the text encoder's hidden size {} \
             (transformers refuses it too)",
            text.unwrap_or(&Value::Null)
        ));
    }
    if Some(cross) != hidden {
        return Err(format!(
            "decoder.cross_attention_hidden_size {cross} with decoder hidden_size {}: transformers then builds \
             no enc_to_dec_proj and its cross-attention cannot take {cross}-wide states",
            hidden.unwrap_or(&Value::Null)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tiny() -> Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/musicgen-tiny/config.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn refused(edit: impl FnOnce(&mut Value)) -> String {
        let mut config = tiny();
        edit(&mut config);
        check_config(&config).unwrap_err()
    }

    #[test]
    fn the_fixture_and_a_config_without_a_type_are_served() {
        assert_eq!(check_config(&tiny()), Ok(()));
        assert_eq!(check_config(&json!({"decoder": {"hidden_size": 8}})), Ok(()));
    }

    #[test]
    fn other_model_types_are_refused_by_name() {
        let other = refused(|c| c["model_type"] = json!("bark"));
        assert!(other.contains("\"bark\" is not served") && other.contains("\"musicgen_melody\""), "{other}");
        let arch = refused(|c| c["architectures"] = json!(["MusicgenMelodyForConditionalGeneration"]));
        assert!(arch.contains("MusicgenMelodyForConditionalGeneration"), "{arch}");
        let sub = refused(|c| c["text_encoder"]["model_type"] = json!("mt5"));
        assert!(sub.contains("text_encoder.model_type \"mt5\""), "{sub}");
        // A melody type over a text-conditioned decoder is neither kind.
        let mixed = refused(|c| c["model_type"] = json!("musicgen_melody"));
        assert!(mixed.contains("decoder.model_type \"musicgen_decoder\""), "{mixed}");
        let mut with_arch = tiny();
        with_arch["architectures"] = json!([SERVED[0].1]);
        assert_eq!(check_config(&with_arch), Ok(()));
    }

    #[test]
    fn the_melody_fixture_is_served() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/musicgen-melody-tiny/config.json");
        assert!(check_config_file(Path::new(path)).is_ok());
    }

    #[test]
    fn unimplemented_codec_and_decoder_settings_are_refused_by_name() {
        type Edit = fn(&mut Value);
        let cases: [(&str, Edit); 5] = [
            ("audio_encoder.pad_mode \"constant\"", |c| c["audio_encoder"]["pad_mode"] = json!("constant")),
            ("audio_encoder.normalize true", |c| c["audio_encoder"]["normalize"] = json!(true)),
            ("audio_encoder.chunk_length_s 1.0", |c| c["audio_encoder"]["chunk_length_s"] = json!(1.0)),
            ("decoder.activation_function \"relu\"", |c| c["decoder"]["activation_function"] = json!("relu")),
            ("cross_attention_hidden_size 40 differs", |c| {
                c["decoder"]["cross_attention_hidden_size"] = json!(40)
            }),
        ];
        for (needle, edit) in cases {
            let reason = refused(edit);
            assert!(reason.contains(needle), "{needle}: {reason}");
        }
        // Equal to T5's width (32) but not the decoder's (48): transformers has no projection then.
        let reason = refused(|c| c["decoder"]["cross_attention_hidden_size"] = json!(32));
        assert!(reason.contains("no enc_to_dec_proj"), "{reason}");
        let mut null = tiny();
        null["audio_encoder"]["normalize"] = json!(false);
        null["audio_encoder"]["chunk_length_s"] = Value::Null;
        null["decoder"]["cross_attention_hidden_size"] = Value::Null;
        assert_eq!(check_config(&null), Ok(()));
    }

    #[test]
    fn a_config_file_that_is_not_json_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(check_config_file(&path), Err(CheckpointError::Corrupt { .. })));
        std::fs::write(&path, r#"{"model_type": "bark"}"#).unwrap();
        assert!(matches!(check_config_file(&path), Err(CheckpointError::Unsupported { .. })));
    }
}
