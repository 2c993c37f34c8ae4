//! Requirements derived from a checkpoint on disk: exact weight bytes from the safetensors header
//! (read by [`crate::checkpoint`]; the weights themselves are never read) and a per-sample working
//! set estimated from the Hugging Face MusicGen `config.json`. A damaged header is an error, never a
//! panic or a wrong answer.

use std::path::Path;

use serde::Deserialize;

use super::{
    DType, Requirements, RequirementsError, Source, CFG_FACTOR, CUDA_CONTEXT_BYTES, DEFAULT_FRAME_RATE,
    DEFAULT_MAX_DURATION_S, ENCODEC_CHANNEL_FACTOR, HOST_RUNTIME_BYTES, MIN_COMPUTE_CAPABILITY,
    PROMPT_TOKENS,
};
use crate::checkpoint::{self, Checkpoint, CheckpointError};

/// Sizes read from a safetensors header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderSizes {
    /// Weight bytes once floating tensors are converted to the dtype asked for; integer and bool
    /// tensors keep their stored size.
    pub weights_bytes: u64,
    /// The largest tensor as stored: the staging buffer of a tensor-by-tensor load.
    pub largest_tensor_bytes: u64,
}

/// Sizes the tensors of the safetensors file at `path` for `dtype`, from its header alone (see
/// [`crate::checkpoint`]); a damaged header is [`RequirementsError::Corrupt`], not a wrong answer.
pub fn weights_from_header(path: &Path, dtype: DType) -> Result<HeaderSizes, RequirementsError> {
    let checkpoint = Checkpoint::open(path)?;
    let mut sizes = HeaderSizes { weights_bytes: 0, largest_tensor_bytes: 0 };
    for info in checkpoint.tensors().values() {
        let stored = checkpoint::stored_bytes(info);
        let loaded = if checkpoint::is_float(info.dtype) {
            checkpoint::numel(info).saturating_mul(dtype.bytes())
        } else {
            stored
        };
        sizes.weights_bytes = sizes.weights_bytes.saturating_add(loaded);
        sizes.largest_tensor_bytes = sizes.largest_tensor_bytes.max(stored);
    }
    Ok(sizes)
}

impl From<CheckpointError> for RequirementsError {
    fn from(e: CheckpointError) -> Self {
        match e {
            CheckpointError::Io { path, source } => RequirementsError::Io { path, source },
            CheckpointError::Corrupt { path, reason } => RequirementsError::Corrupt { path, reason },
        }
    }
}

/// The parts of a Hugging Face MusicGen `config.json` the estimate needs.
#[derive(Deserialize)]
struct ModelConfig {
    decoder: DecoderConfig,
    audio_encoder: CodecConfig,
    text_encoder: Option<TextConfig>,
}

#[derive(Deserialize)]
struct DecoderConfig {
    hidden_size: u64,
    num_hidden_layers: u64,
    num_codebooks: u64,
    vocab_size: u64,
    ffn_dim: Option<u64>,
}

#[derive(Deserialize)]
struct CodecConfig {
    sampling_rate: u64,
    #[serde(default = "one")]
    audio_channels: u64,
    #[serde(default)]
    upsampling_ratios: Vec<u64>,
}

#[derive(Deserialize)]
struct TextConfig {
    d_model: u64,
}

#[derive(Deserialize)]
struct GenerationConfig {
    max_length: Option<u64>,
}

fn one() -> u64 {
    1
}

impl ModelConfig {
    /// Decoder frames per second: the codec's sampling rate over its hop length.
    fn frame_rate(&self) -> f64 {
        let codec = &self.audio_encoder;
        let rate = codec.sampling_rate as f64 / product(&codec.upsampling_ratios) as f64;
        if codec.upsampling_ratios.is_empty() || !rate.is_normal() {
            return DEFAULT_FRAME_RATE;
        }
        rate
    }

    /// One sample's working set for `duration_s` seconds, the sum of:
    /// - self-attention KV cache: frames × layers × hidden × 2 (K, V) × [`CFG_FACTOR`] × dtype bytes;
    /// - cross-attention KV cache: the same per position, over [`PROMPT_TOKENS`] positions;
    /// - activations, a bound: [`CFG_FACTOR`] × (logits, codebooks × vocab × 4 bytes × 2 copies, plus
    ///   [`PROMPT_TOKENS`] rows of the widest layer in f32);
    /// - EnCodec decode: audio samples × channels × 4 bytes × [`ENCODEC_CHANNEL_FACTOR`].
    fn per_sample_bytes(&self, dtype: DType, duration_s: f64) -> u64 {
        let (d, codec) = (&self.decoder, &self.audio_encoder);
        let frames = (self.frame_rate() * duration_s).ceil() as u64;
        let per_position = product(&[d.num_hidden_layers, d.hidden_size, 2, CFG_FACTOR, dtype.bytes()]);
        let text_width = self.text_encoder.as_ref().map_or(0, |t| t.d_model);
        let width = d.ffn_dim.unwrap_or(0).max(d.hidden_size.saturating_mul(4)).max(text_width);
        let logits = product(&[d.num_codebooks, d.vocab_size, 4, 2]);
        let activations = product(&[CFG_FACTOR, logits.saturating_add(product(&[PROMPT_TOKENS, width, 4]))]);
        let samples = (duration_s * codec.sampling_rate as f64).ceil() as u64;
        let decode = product(&[samples, codec.audio_channels, 4, ENCODEC_CHANNEL_FACTOR]);
        let caches = product(&[frames.saturating_add(PROMPT_TOKENS), per_position]);
        caches.saturating_add(activations).saturating_add(decode)
    }
}

fn product(factors: &[u64]) -> u64 {
    factors.iter().fold(1u64, |p, &f| p.saturating_mul(f))
}

/// Requirements derived from the checkpoint in `dir` for `batch` rows (at least 1) of `duration_s`
/// seconds in `dtype`. Reads `config.json`, the safetensors header and, when present,
/// `generation_config.json` (its `max_length` in frames, when > 0, sets the maximum duration;
/// default 30 s).
///
/// Host memory on a GPU is [`HOST_RUNTIME_BYTES`] plus the largest stored tensor (loads go tensor by
/// tensor); the CUDA context is [`CUDA_CONTEXT_BYTES`]; bf16 needs compute capability 8.0.
pub fn from_checkpoint(
    dir: &Path,
    dtype: DType,
    batch: u32,
    duration_s: f64,
) -> Result<Requirements, RequirementsError> {
    let sizes = weights_from_header(&dir.join("model.safetensors"), dtype)?;
    let config: ModelConfig = read_json(&dir.join("config.json"))?;
    let generation = dir.join("generation_config.json");
    let max_frames = if generation.is_file() {
        read_json::<GenerationConfig>(&generation)?.max_length.filter(|&frames| frames > 0)
    } else {
        None
    };
    let batch = batch.max(1);
    let mut requirements = Requirements {
        source: Source::Checkpoint,
        dtype,
        weights_bytes: sizes.weights_bytes,
        per_sample_bytes: config.per_sample_bytes(dtype, duration_s),
        cuda_context_bytes: CUDA_CONTEXT_BYTES,
        host_memory_bytes: HOST_RUNTIME_BYTES.saturating_add(sizes.largest_tensor_bytes),
        gpu_memory_bytes: 0,
        min_compute_capability: if dtype == DType::Bf16 { 8.0 } else { MIN_COMPUTE_CAPABILITY },
        default_batch_size: batch,
        max_duration_s: max_frames.map_or(DEFAULT_MAX_DURATION_S, |f| f as f64 / config.frame_rate()),
    };
    requirements.gpu_memory_bytes = requirements.gpu_bytes_for(batch);
    Ok(requirements)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RequirementsError> {
    let text =
        std::fs::read(path).map_err(|source| RequirementsError::Io { path: path.to_owned(), source })?;
    serde_json::from_slice(&text)
        .map_err(|e| RequirementsError::Config { path: path.to_owned(), reason: e.to_string() })
}
