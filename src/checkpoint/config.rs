//! Typed view of a MusicGen checkpoint's composite `config.json` (T5 text encoder, EnCodec audio codec,
//! MusicGen decoder) and of `generation_config.json`. Defaults follow `transformers` for absent fields.
//! Free of libtorch: the orchestrator reads a model's limits from here before anything is loaded,
//! and the engine loads from the same types.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::limits::{read_bounded, MAX_CONFIG_BYTES};
use super::CheckpointError;
pub use crate::engine::request::GenerationConfig;

/// Why a config was not read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read, or is past its size limit.
    #[error(transparent)]
    Read(#[from] CheckpointError),
    /// It is not a valid config for MusicGen.
    #[error("invalid config {path}: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// The composite MusicGen configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct MusicgenConfig {
    /// The T5 text encoder.
    pub text_encoder: T5Config,
    /// The EnCodec audio codec (only its decoder is used).
    pub audio_encoder: EncodecConfig,
    /// The MusicGen decoder.
    pub decoder: DecoderConfig,
    /// `musicgen` or `musicgen_melody` (absent in a hand-written config: `musicgen`).
    #[serde(default)]
    pub model_type: Option<String>,
    /// Melody checkpoints: pitch classes of the chroma conditioning.
    #[serde(default = "twelve")]
    pub num_chroma: i64,
    /// Melody checkpoints: chroma frames the decoder is prefixed with (235 ≈ 30 s published).
    #[serde(default = "default_chroma_length")]
    pub chroma_length: i64,
}

/// T5 encoder sizes.
#[derive(Debug, Clone, Deserialize)]
pub struct T5Config {
    /// Token vocabulary size.
    pub vocab_size: i64,
    /// Hidden size.
    pub d_model: i64,
    /// Size of one attention head (need not be `d_model / num_heads`).
    pub d_kv: i64,
    /// Feed-forward inner size.
    pub d_ff: i64,
    /// Encoder layers.
    pub num_layers: i64,
    /// Attention heads.
    pub num_heads: i64,
    /// Relative position buckets (default 32).
    #[serde(default = "default_buckets")]
    pub relative_attention_num_buckets: i64,
    /// Distance beyond which relative positions share a bucket (default 128).
    #[serde(default = "default_max_distance")]
    pub relative_attention_max_distance: i64,
    /// RMS norm epsilon (default 1e-6).
    #[serde(default = "default_t5_eps")]
    pub layer_norm_epsilon: f64,
    /// Feed-forward kind: `relu` (t5-base) or `gated-gelu`.
    #[serde(default = "default_ff_proj")]
    pub feed_forward_proj: String,
}

/// EnCodec sizes and conventions.
#[derive(Debug, Clone, Deserialize)]
pub struct EncodecConfig {
    /// Output sample rate in Hz.
    pub sampling_rate: i64,
    /// Channels EnCodec itself produces (1 for the MusicGen codecs).
    #[serde(default = "one")]
    pub audio_channels: i64,
    /// Latent (codebook) dimension fed to the decoder.
    pub hidden_size: i64,
    /// Base channel count of the SEANet decoder.
    pub num_filters: i64,
    /// Residual blocks per upsampling stage.
    #[serde(default = "one")]
    pub num_residual_layers: i64,
    /// Upsampling ratios, first to last.
    pub upsampling_ratios: Vec<i64>,
    /// `weight_norm` (the only kind supported here).
    #[serde(default = "default_norm")]
    pub norm_type: String,
    /// Kernel of the first convolution.
    #[serde(default = "seven")]
    pub kernel_size: i64,
    /// Kernel of the last convolution.
    #[serde(default = "seven")]
    pub last_kernel_size: i64,
    /// Kernel of the residual blocks' first convolution.
    #[serde(default = "three")]
    pub residual_kernel_size: i64,
    /// Dilation growth between residual blocks.
    #[serde(default = "two")]
    pub dilation_growth_rate: i64,
    /// Causal (left-only) padding.
    #[serde(default = "yes")]
    pub use_causal_conv: bool,
    /// Padding mode (`reflect` in the published codecs).
    #[serde(default = "default_pad_mode")]
    pub pad_mode: String,
    /// Channel compression inside residual blocks.
    #[serde(default = "two")]
    pub compress: i64,
    /// LSTM layers.
    #[serde(default = "two")]
    pub num_lstm_layers: i64,
    /// Share of a causal transposed convolution's padding trimmed on the right.
    #[serde(default = "one_f")]
    pub trim_right_ratio: f64,
    /// Entries per codebook.
    pub codebook_size: i64,
    /// Codebook vector size (defaults to `hidden_size`).
    #[serde(default)]
    pub codebook_dim: Option<i64>,
    /// Residual blocks carry a 1×1 convolution on their shortcut.
    #[serde(default = "yes")]
    pub use_conv_shortcut: bool,
}

/// MusicGen decoder sizes.
#[derive(Debug, Clone, Deserialize)]
pub struct DecoderConfig {
    /// Codes per codebook (the embedding tables hold one more row: pad/BOS).
    pub vocab_size: i64,
    /// Sinusoidal table size; longer sequences extend it, as transformers does.
    #[serde(default = "default_positions")]
    pub max_position_embeddings: i64,
    /// Decoder layers.
    pub num_hidden_layers: i64,
    /// Feed-forward inner size.
    pub ffn_dim: i64,
    /// Attention heads.
    pub num_attention_heads: i64,
    /// Feed-forward activation (`gelu`).
    #[serde(default = "default_activation")]
    pub activation_function: String,
    /// Hidden size.
    pub hidden_size: i64,
    /// Multiply embeddings by √hidden.
    #[serde(default)]
    pub scale_embedding: bool,
    /// Codebooks predicted per frame (8 for stereo models: left/right interleaved).
    #[serde(default = "four")]
    pub num_codebooks: i64,
    /// 1 (mono) or 2 (stereo).
    #[serde(default = "one")]
    pub audio_channels: i64,
    /// Pad id (defaults to `vocab_size`).
    #[serde(default)]
    pub pad_token_id: Option<i64>,
    /// Width of the encoder states cross-attention takes; set, transformers builds no
    /// `enc_to_dec_proj` (it must then equal the text encoder's width, see
    /// [`crate::checkpoint::kind`]).
    #[serde(default)]
    pub cross_attention_hidden_size: Option<i64>,
}

impl MusicgenConfig {
    /// A melody checkpoint: decoder-only, its conditioning (chroma, then text) prefixed to the codes.
    pub fn is_melody(&self) -> bool {
        self.model_type.as_deref() == Some("musicgen_melody")
    }
}

impl EncodecConfig {
    /// Samples per frame (product of the upsampling ratios).
    pub fn hop_length(&self) -> i64 {
        self.upsampling_ratios.iter().product()
    }

    /// Frames per second, rounded up as transformers does.
    pub fn frame_rate(&self) -> i64 {
        (self.sampling_rate + self.hop_length() - 1) / self.hop_length()
    }

    /// Codebook vector size.
    pub fn codebook_dim(&self) -> i64 {
        self.codebook_dim.unwrap_or(self.hidden_size)
    }
}

impl DecoderConfig {
    /// The pad / BOS id fed at delayed positions.
    pub fn pad_id(&self) -> i64 {
        self.pad_token_id.unwrap_or(self.vocab_size)
    }

    /// Size of one attention head.
    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }

    /// Codebooks per audio channel: the delay pattern's depth.
    pub fn channel_codebooks(&self) -> i64 {
        self.num_codebooks / self.audio_channels
    }
}

impl MusicgenConfig {
    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let cfg: Self = read_json(path)?;
        cfg.validate().map_err(|message| ConfigError::Invalid { path: path.to_owned(), message })?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        self.validate_sizes()?;
        let d = &self.decoder;
        if d.hidden_size % d.num_attention_heads != 0 {
            return Err(format!(
                "decoder hidden_size {} is not a multiple of num_attention_heads {}",
                d.hidden_size, d.num_attention_heads
            ));
        }
        if !(d.audio_channels == 1 || d.audio_channels == 2) || d.num_codebooks % d.audio_channels != 0 {
            return Err(format!(
                "decoder audio_channels {} with num_codebooks {} is not mono or interleaved stereo",
                d.audio_channels, d.num_codebooks
            ));
        }
        let codec = &self.audio_encoder;
        if codec.codebook_size != d.vocab_size {
            return Err(format!(
                "audio_encoder codebook_size {} differs from decoder vocab_size {}",
                codec.codebook_size, d.vocab_size
            ));
        }
        if codec.norm_type != "weight_norm" {
            return Err(format!("audio_encoder norm_type `{}` (only weight_norm)", codec.norm_type));
        }
        if d.activation_function != "gelu" {
            return Err(format!("decoder activation_function `{}` (only gelu)", d.activation_function));
        }
        let ff = self.text_encoder.feed_forward_proj.as_str();
        if ff != "relu" && ff != "gated-gelu" {
            return Err(format!("text_encoder feed_forward_proj `{ff}` (relu or gated-gelu)"));
        }
        Ok(())
    }

    /// The sizes the derived values divide by, multiply or narrow: from a hostile file, a zero
    /// head count or upsampling ratio was a division by zero, and a product of ratios an overflow
    /// (found while fuzzing config files), where it must be a refusal naming the field.
    fn validate_sizes(&self) -> Result<(), String> {
        let (d, codec, t5) = (&self.decoder, &self.audio_encoder, &self.text_encoder);
        let max_rate = i64::from(crate::audio_input::MAX_SAMPLE_RATE);
        let u32_max = i64::from(u32::MAX);
        for (field, value, max) in [
            ("decoder.hidden_size", d.hidden_size, i64::MAX),
            ("decoder.num_attention_heads", d.num_attention_heads, i64::MAX),
            ("decoder.vocab_size", d.vocab_size, u32_max),
            ("decoder.num_codebooks", d.num_codebooks, i64::MAX),
            ("text_encoder.d_model", t5.d_model, i64::MAX),
            ("text_encoder.num_heads", t5.num_heads, i64::MAX),
            ("audio_encoder.sampling_rate", codec.sampling_rate, max_rate),
        ] {
            if !(1..=max).contains(&value) {
                let range = if max == i64::MAX { "positive".into() } else { format!("1..={max}") };
                return Err(format!("{field} must be {range}, got {value}"));
            }
        }
        let hop =
            codec.upsampling_ratios.iter().try_fold(1i64, |hop, &r| hop.checked_mul(r).filter(|_| r > 0));
        if hop.is_none_or(|hop| hop > codec.sampling_rate) {
            return Err(format!(
                "audio_encoder.upsampling_ratios {:?} must be positive and multiply to at most the \
                 sampling_rate {} (samples per frame)",
                codec.upsampling_ratios, codec.sampling_rate
            ));
        }
        Ok(())
    }
}

impl GenerationConfig {
    /// Reads `generation_config.json`, or transformers' defaults when the file is absent.
    pub fn from_file_or_default(path: &Path) -> Result<Self> {
        if path.exists() {
            read_json(path)
        } else {
            Ok(Self::default())
        }
    }
}

/// `config.json` or `generation_config.json`, refused unread past [`MAX_CONFIG_BYTES`].
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_bounded(path, MAX_CONFIG_BYTES, "model config")?;
    serde_json::from_slice(&text)
        .map_err(|e| ConfigError::Invalid { path: path.to_owned(), message: e.to_string() })
}

fn default_buckets() -> i64 {
    32
}
fn default_max_distance() -> i64 {
    128
}
fn default_t5_eps() -> f64 {
    1e-6
}
fn default_ff_proj() -> String {
    "relu".into()
}
fn default_norm() -> String {
    "weight_norm".into()
}
fn default_pad_mode() -> String {
    "reflect".into()
}
fn default_positions() -> i64 {
    2048
}
fn default_activation() -> String {
    "gelu".into()
}
fn twelve() -> i64 {
    12
}
fn default_chroma_length() -> i64 {
    235
}
fn one() -> i64 {
    1
}
fn two() -> i64 {
    2
}
fn three() -> i64 {
    3
}
fn four() -> i64 {
    4
}
fn seven() -> i64 {
    7
}
fn one_f() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}
