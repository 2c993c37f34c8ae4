//! What a checkpoint costs before loading it: parameters per part, stored dtypes, weight bytes per
//! precision option, and the memory a batch of a given duration needs. Reads only the config files and
//! the safetensors header.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use super::config::{GenerationConfig, MusicgenConfig};
use super::error::Result;
use super::tokenizer::PromptTokenizer;
use super::weights::DType;
use super::LoadOptions;
use crate::checkpoint::{self, Checkpoint};

/// Text tokens assumed per prompt when sizing the cross-attention cache.
pub const ASSUMED_PROMPT_TOKENS: u64 = 64;

/// Parameter counts of a checkpoint, by part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParameterCounts {
    /// T5 encoder (and `enc_to_dec_proj`).
    pub text_encoder: u64,
    /// MusicGen decoder and LM heads.
    pub decoder: u64,
    /// EnCodec decoder and codebooks (what inference loads).
    pub audio_decoder: u64,
    /// EnCodec encoder and codebook statistics (stored, never loaded).
    pub unused: u64,
}

impl ParameterCounts {
    /// Counts the tensors of a checkpoint header by key prefix.
    pub fn from_file(file: &Checkpoint) -> Self {
        let mut counts = Self::default();
        for (key, info) in file.tensors() {
            let n = checkpoint::numel(info);
            let slot = if key.starts_with("text_encoder.") || key.starts_with("enc_to_dec_proj.") {
                &mut counts.text_encoder
            } else if key.starts_with("decoder.") {
                &mut counts.decoder
            } else if key.starts_with("audio_encoder.decoder.") || key.ends_with("codebook.embed") {
                &mut counts.audio_decoder
            } else {
                &mut counts.unused
            };
            *slot += n;
        }
        counts
    }

    /// Bytes of the loaded weights with `options`' precisions (EnCodec stays f32).
    pub fn weight_bytes(&self, options: &LoadOptions) -> u64 {
        self.text_encoder * options.text_dtype.size_bytes()
            + self.decoder * options.decoder_dtype.size_bytes()
            + self.audio_decoder * DType::F32.size_bytes()
    }
}

/// Predicted memory of one generation batch, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Loaded weights.
    pub weights: u64,
    /// Self-attention KV cache for the whole generation (guidance doubles the rows).
    pub kv_cache: u64,
    /// Cross-attention K/V.
    pub cross_cache: u64,
    /// Peak transient activations (decoder step, T5, one streamed EnCodec chunk).
    pub activations: u64,
}

impl MemoryEstimate {
    /// Everything together.
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.cross_cache + self.activations
    }
}

/// Predicts the memory of generating `batch` requests of `frames` frames each, with guidance.
pub fn estimate_memory(
    cfg: &MusicgenConfig,
    counts: &ParameterCounts,
    options: &LoadOptions,
    batch: u64,
    frames: u64,
) -> MemoryEstimate {
    let d = &cfg.decoder;
    let rows = 2 * batch;
    let bytes = options.decoder_dtype.size_bytes();
    let steps = frames + d.channel_codebooks() as u64;
    let per_position = 2 * d.num_hidden_layers as u64 * d.hidden_size as u64 * bytes;
    let step_acts = rows * (d.ffn_dim + 4 * d.hidden_size + d.num_codebooks * d.vocab_size) as u64 * 4 * 2;
    let t = &cfg.text_encoder;
    let text_acts =
        batch * ASSUMED_PROMPT_TOKENS * (t.d_ff + t.num_heads * ASSUMED_PROMPT_TOKENS as i64) as u64 * 4 * 2;
    let codec = &cfg.audio_encoder;
    let window = codec.frame_rate() as u64 + 16;
    let widest = codec.num_filters as u64 * codec.hop_length() as u64 * 2;
    let codec_acts = batch * window * widest * 4 * 3;
    MemoryEstimate {
        weights: counts.weight_bytes(options),
        kv_cache: rows * steps * per_position,
        cross_cache: rows * ASSUMED_PROMPT_TOKENS * per_position,
        activations: step_acts.max(text_acts) + codec_acts,
    }
}

/// A human-readable report on the checkpoint in `dir` for `batch` requests of `duration_s` seconds.
pub fn inspect(dir: &Path, batch: usize, duration_s: f64) -> Result<String> {
    let cfg = MusicgenConfig::from_file(&dir.join("config.json"))?;
    let gen = GenerationConfig::from_file_or_default(&dir.join("generation_config.json"))?;
    let file = Checkpoint::open(&dir.join("model.safetensors"))?;
    let counts = ParameterCounts::from_file(&file);
    let mut stored: BTreeMap<String, u64> = BTreeMap::new();
    for info in file.tensors().values() {
        *stored.entry(info.dtype.to_string()).or_default() += checkpoint::numel(info);
    }
    let frames = ((duration_s * cfg.audio_encoder.frame_rate() as f64).round() as u64).max(1);
    let mut out = String::new();
    let d = &cfg.decoder;
    let _ = writeln!(out, "model: {}", dir.display());
    let _ = writeln!(
        out,
        "decoder: hidden {} layers {} heads {} ffn {} codebooks {}x{}; {} Hz, {} channel(s), {} frames/s, max {:.1} s",
        d.hidden_size,
        d.num_hidden_layers,
        d.num_attention_heads,
        d.ffn_dim,
        d.num_codebooks,
        d.vocab_size,
        cfg.audio_encoder.sampling_rate,
        d.audio_channels,
        cfg.audio_encoder.frame_rate(),
        gen.max_length as f64 / cfg.audio_encoder.frame_rate() as f64
    );
    let _ = writeln!(out, "parameters:");
    for (part, n) in [
        ("text encoder (T5)", counts.text_encoder),
        ("decoder", counts.decoder),
        ("audio decoder (EnCodec)", counts.audio_decoder),
        ("stored but unused", counts.unused),
    ] {
        let _ = writeln!(out, "  {part:<24} {:>14} ({:.1} M)", n, n as f64 / 1e6);
    }
    let stored: Vec<String> = stored.iter().map(|(k, v)| format!("{k} ({v} params)")).collect();
    let _ = writeln!(out, "stored dtype: {}", stored.join(", "));
    let _ = writeln!(out, "memory for batch {batch}, {duration_s} s ({frames} frames), guidance on:");
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let options = LoadOptions::new(tch::Device::Cpu, dtype);
        let m = estimate_memory(&cfg, &counts, &options, batch as u64, frames);
        let _ = writeln!(
            out,
            "  decoder {:<4} weights {:>7.1} MiB  kv {:>7.1} MiB  cross {:>6.1} MiB  activations {:>6.1} MiB  total {:>7.1} MiB",
            dtype.name(),
            mib(m.weights),
            mib(m.kv_cache),
            mib(m.cross_cache),
            mib(m.activations),
            mib(m.total())
        );
    }
    let tokenizer = match PromptTokenizer::from_file(&dir.join("tokenizer.json")) {
        Ok(t) => {
            format!("loads ({} tokens for \"test\")", t.encode("test").map(|ids| ids.len()).unwrap_or(0))
        }
        Err(e) => format!("does not load: {e}"),
    };
    let _ = writeln!(out, "tokenizer: {tokenizer}");
    Ok(out)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}
