//! The one element type a model is asked for (`f32`, `f16`, `bf16`), its size, and the rule for the
//! type each part of a MusicGen model is then loaded in. Plain data without libtorch: `musicgen`
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
    /// Bytes per element.
    pub fn bytes(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::Bf16 => 2,
        }
    }

    /// What a load in this dtype gives each part: the decoder in `self`; T5 in f32 unless `self` is
    /// bf16 (T5 overflows in f16); EnCodec always in f32.
    pub fn parts(self) -> PartDTypes {
        let text_encoder = if self == DType::Bf16 { DType::Bf16 } else { DType::F32 };
        PartDTypes { text_encoder, decoder: self, audio_decoder: DType::F32 }
    }

    /// Parses `f32`, `f16` or `bf16` (any case); the empty string means `f32`.
    pub fn parse(value: &str) -> Result<Self, UnknownDType> {
        match value.to_ascii_lowercase().as_str() {
            "" | "f32" => Ok(DType::F32),
            "f16" => Ok(DType::F16),
            "bf16" => Ok(DType::Bf16),
            _ => Err(UnknownDType { value: value.to_owned() }),
        }
    }

    /// `f32`, `f16` or `bf16`.
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dtype name that is none of those [`DType::parse`] knows; the message is the rule and the value,
/// for whoever names the field (`dtype`, `--dtype`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be one of \"f32\", \"f16\", \"bf16\" (empty means \"f32\"), got {value:?}")]
pub struct UnknownDType {
    /// The value given.
    pub value: String,
}
