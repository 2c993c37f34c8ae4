//! The one element type a model is asked for (`f32`, `f16`, `bf16`, `int8`, `int4`), its size, and the rule
//! for the type each part of a MusicGen model is then loaded in. Plain data without libtorch: `musicgen`
//! turns it into a tch `Kind`, everything else sizes memory with it.

use std::fmt;

/// The floating-point type a model is run in: the decoder's, with the other parts following
/// [`DType::parts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DType {
    /// 32-bit float, the default.
    #[default]
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
    /// The decoder's projections and LM heads as int8 with one f32 scale per output row (weight-only,
    /// symmetric), quantised at load from any checkpoint dtype; the rest of the decoder (embeddings,
    /// norms, cross-attention keys and values, caches) in f32. CPU only.
    Int8,
    /// As [`DType::Int8`] with 4-bit weights: one f16 scale per group of 32 inputs of a row
    /// (llama.cpp's Q4_0 arithmetic), 0.5625 bytes per weight. CPU only.
    Int4,
}

/// The element type of each loaded part of a MusicGen model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartDTypes {
    /// The T5 text encoder and its projection into the decoder.
    pub text_encoder: DType,
    /// The decoder and its LM heads.
    pub decoder: DType,
    /// The EnCodec decoder and codebooks.
    pub audio_decoder: DType,
}

impl DType {
    /// Every dtype, in the order listings show them.
    pub const ALL: [DType; 5] = [DType::F32, DType::F16, DType::Bf16, DType::Int8, DType::Int4];

    /// Bytes per element of a float dtype; for the quantised ones, of what is not quantised (f32: see
    /// [`DType::activation`]), their weights being sized by [`DType::matrix_bytes`].
    pub fn bytes(self) -> u64 {
        match self {
            DType::F32 | DType::Int8 | DType::Int4 => 4,
            DType::F16 | DType::Bf16 => 2,
        }
    }

    /// Whether the decoder's projections and LM heads are quantised (int8, int4): CPU only.
    pub fn is_quantised(self) -> bool {
        matches!(self, DType::Int8 | DType::Int4)
    }

    /// The floating type activations, caches and unquantised weights have: f32 for int8 and int4,
    /// else itself.
    pub fn activation(self) -> DType {
        if self.is_quantised() {
            DType::F32
        } else {
            self
        }
    }

    /// Bytes of a `rows` × `cols` weight matrix held as the decoder holds its projections in this
    /// dtype: int8 a byte per weight plus an f32 scale and an f32 sum of its weights (for the VNNI
    /// kernels) per row; int4 per row and group of 32 inputs (the last one padded) 16 bytes of codes
    /// and an f16 scale; a float dtype its element size.
    pub fn matrix_bytes(self, rows: u64, cols: u64) -> u64 {
        match self {
            DType::Int8 => rows.saturating_mul(cols.saturating_add(8)),
            DType::Int4 => rows.saturating_mul(cols.div_ceil(32).saturating_mul(18)),
            other => rows.saturating_mul(cols).saturating_mul(other.bytes()),
        }
    }

    /// Bytes a tensor `key` of `numel` elements in `rows` rows takes loaded in this dtype: with
    /// int8 or int4 a quantised weight ([`quantised_weight`]) is [`DType::matrix_bytes`], any other
    /// tensor f32.
    pub fn tensor_bytes(self, key: &str, numel: u64, rows: u64) -> u64 {
        if self.is_quantised() && quantised_weight(key) && rows > 0 {
            return self.matrix_bytes(rows, numel / rows);
        }
        numel.saturating_mul(self.activation().bytes())
    }

    /// What a load in this dtype gives each part: the decoder in `self`; T5 in f32 unless `self` is
    /// bf16 (T5 overflows in f16); EnCodec in f32. (On the CPU a load other than f32 keeps the
    /// codec's LSTM hidden-to-hidden weights in f16, 16 MB less for the 32 kHz codec than counted
    /// here: the estimate errs high.)
    pub fn parts(self) -> PartDTypes {
        let text_encoder = if self == DType::Bf16 { DType::Bf16 } else { DType::F32 };
        PartDTypes { text_encoder, decoder: self, audio_decoder: DType::F32 }
    }

    /// Parses `f32`, `f16`, `bf16`, `int8` or `int4` (any case); the empty string means `f32`.
    pub fn parse(value: &str) -> Result<Self, UnknownDType> {
        match value.to_ascii_lowercase().as_str() {
            "" | "f32" => Ok(DType::F32),
            "f16" => Ok(DType::F16),
            "bf16" => Ok(DType::Bf16),
            "int8" => Ok(DType::Int8),
            "int4" => Ok(DType::Int4),
            _ => Err(UnknownDType { value: value.to_owned() }),
        }
    }

    /// `f32`, `f16`, `bf16`, `int8` or `int4`.
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
            DType::Int8 => "int8",
            DType::Int4 => "int4",
        }
    }
}

/// Whether checkpoint tensor `key` is one the int8 and int4 decoders quantise: a layer's self-attention
/// projections, cross-attention query and output, feed-forward, and the LM heads. What one
/// decoding step streams; the cross-attention keys and values, computed once per prompt, stay f32.
pub fn quantised_weight(key: &str) -> bool {
    const LAYER: [&str; 8] = [
        ".self_attn.q_proj.weight",
        ".self_attn.k_proj.weight",
        ".self_attn.v_proj.weight",
        ".self_attn.out_proj.weight",
        ".encoder_attn.q_proj.weight",
        ".encoder_attn.out_proj.weight",
        ".fc1.weight",
        ".fc2.weight",
    ];
    let in_layer = key.starts_with("decoder.model.decoder.layers.") && LAYER.iter().any(|s| key.ends_with(s));
    in_layer || (key.starts_with("decoder.lm_heads.") && key.ends_with(".weight"))
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dtype name that is none of those [`DType::parse`] knows; the message is the rule and the value,
/// for whoever names the field (`dtype`, `--dtype`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be one of \"f32\", \"f16\", \"bf16\", \"int8\", \"int4\" (empty means \"f32\"), got {value:?}")]
pub struct UnknownDType {
    /// The value given.
    pub value: String,
}
