//! A model's weights by part: which part a checkpoint tensor belongs to (by its key), how many
//! parameters each part holds, and the bytes each part takes once loaded in the dtype
//! [`DType::parts`] gives it. Sizes come from the checkpoint's headers alone (a safetensors header,
//! a shard index, a pickle's tensor records, all read by [`crate::checkpoint`]); the weights
//! themselves are never read.

use std::path::Path;

use super::{DType, PartDTypes, RequirementsError};
use crate::checkpoint::{self, Checkpoint};

/// The part of a MusicGen checkpoint a tensor belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// T5 encoder, `enc_to_dec_proj` and a melody checkpoint's chroma projection
    /// (`audio_enc_to_dec_proj`), all loaded in the text encoder's dtype.
    TextEncoder,
    /// Decoder and LM heads.
    Decoder,
    /// EnCodec decoder and codebooks: what inference loads of the codec.
    AudioDecoder,
    /// Stored but never loaded (EnCodec's encoder, codebook statistics).
    Unused,
}

impl Part {
    /// The part the tensor `key` belongs to.
    pub fn of(key: &str) -> Part {
        let conditioning = ["text_encoder.", "enc_to_dec_proj.", "audio_enc_to_dec_proj."];
        if conditioning.iter().any(|p| key.starts_with(p)) {
            Part::TextEncoder
        } else if key.starts_with("decoder.") {
            Part::Decoder
        } else if key.starts_with("audio_encoder.decoder.") || key.ends_with("codebook.embed") {
            Part::AudioDecoder
        } else {
            Part::Unused
        }
    }

    /// The dtype this part is loaded in when the model is loaded in `dtypes`; `None` for unused parts.
    pub fn dtype(self, dtypes: PartDTypes) -> Option<DType> {
        match self {
            Part::TextEncoder => Some(dtypes.text_encoder),
            Part::Decoder => Some(dtypes.decoder),
            Part::AudioDecoder => Some(dtypes.audio_decoder),
            Part::Unused => None,
        }
    }
}

/// Parameters per part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParameterCounts {
    /// T5 encoder (and `enc_to_dec_proj`).
    pub text_encoder: u64,
    /// Decoder and LM heads.
    pub decoder: u64,
    /// EnCodec decoder and codebooks.
    pub audio_decoder: u64,
    /// Stored, never loaded.
    pub unused: u64,
}

impl ParameterCounts {
    /// Counts the elements of every distinct tensor of `file` by part (a storage two names share
    /// counts once).
    pub fn of(file: &Checkpoint) -> Self {
        let mut counts = Self::default();
        for (key, info) in file.distinct_tensors() {
            *counts.slot(Part::of(key)) += checkpoint::numel(info);
        }
        counts
    }

    fn slot(&mut self, part: Part) -> &mut u64 {
        match part {
            Part::TextEncoder => &mut self.text_encoder,
            Part::Decoder => &mut self.decoder,
            Part::AudioDecoder => &mut self.audio_decoder,
            Part::Unused => &mut self.unused,
        }
    }
}

/// Bytes of the loaded weights, per part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WeightBytes {
    /// T5 encoder and projection.
    pub text_encoder: u64,
    /// Decoder and LM heads.
    pub decoder: u64,
    /// EnCodec decoder and codebooks.
    pub audio_decoder: u64,
}

impl WeightBytes {
    /// All parts together.
    pub fn total(&self) -> u64 {
        self.text_encoder.saturating_add(self.decoder).saturating_add(self.audio_decoder)
    }

    /// Floating-point parameters `counts` loaded in `dtype` (each part in its [`DType::parts`] type).
    pub fn of_params(counts: &ParameterCounts, dtype: DType) -> Self {
        let parts = dtype.parts();
        Self {
            text_encoder: counts.text_encoder.saturating_mul(parts.text_encoder.bytes()),
            decoder: decoder_bytes(counts.decoder, parts.decoder),
            audio_decoder: counts.audio_decoder.saturating_mul(parts.audio_decoder.bytes()),
        }
    }

    /// These parts rescaled to sum to `total` (a measured size has no split of its own).
    pub fn scaled_to(self, total: u64) -> Self {
        let sum = self.total();
        if sum == 0 {
            return Self { decoder: total, ..Self::default() };
        }
        let share = |part: u64| (u128::from(part) * u128::from(total) / u128::from(sum)) as u64;
        let (text_encoder, audio_decoder) = (share(self.text_encoder), share(self.audio_decoder));
        Self { text_encoder, audio_decoder, decoder: total - text_encoder - audio_decoder }
    }

    /// `text encoder f32 0.44 GB + decoder f16 0.78 GB + audio decoder f32 0.12 GB`.
    pub fn describe(&self, dtype: DType) -> String {
        let parts = dtype.parts();
        let gb = |b: u64| b as f64 / 1e9;
        format!(
            "text encoder {} {:.2} GB + decoder {} {:.2} GB + audio decoder {} {:.2} GB",
            parts.text_encoder,
            gb(self.text_encoder),
            parts.decoder,
            gb(self.decoder),
            parts.audio_decoder,
            gb(self.audio_decoder)
        )
    }

    /// Adds `bytes` to `part` (an unused part is not loaded: nothing to add).
    fn add(&mut self, part: Part, bytes: u64) {
        let slot = match part {
            Part::TextEncoder => &mut self.text_encoder,
            Part::Decoder => &mut self.decoder,
            Part::AudioDecoder => &mut self.audio_decoder,
            Part::Unused => return,
        };
        *slot = slot.saturating_add(bytes);
    }
}

/// Bytes of `params` decoder parameters in `dtype` without their names. With int8 or int4 a quarter
/// is taken to stay f32 (embeddings, cross-attention keys and values: a seventh of musicgen-small's
/// decoder, an eighth of the larger ones) and the rest to be quantised at a byte (int8) or 9/16 of
/// one (int4) per weight, so the figure errs high; a checkpoint's header sizes it exactly.
fn decoder_bytes(params: u64, dtype: DType) -> u64 {
    let float = params / 4;
    let quantised = params - float;
    match dtype {
        DType::Int8 => quantised.saturating_add(float.saturating_mul(4)),
        DType::Int4 => (quantised / 16).saturating_mul(9).saturating_add(float.saturating_mul(4)),
        other => params.saturating_mul(other.bytes()),
    }
}

/// Sizes read from a checkpoint's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderSizes {
    /// Loaded weight bytes per part: floating tensors in their part's dtype, integer and bool tensors
    /// at their stored size; unused tensors are not loaded and not counted.
    pub weights: WeightBytes,
    /// The largest loaded tensor as stored: the staging buffer of a tensor-by-tensor load.
    pub largest_tensor_bytes: u64,
}

/// Sizes the tensors of the safetensors file at `path` for `dtype`, from its header alone; a damaged
/// header is [`CheckpointError::Corrupt`], not a wrong answer.
pub fn weights_from_header(path: &Path, dtype: DType) -> Result<HeaderSizes, RequirementsError> {
    Ok(sizes_of(&Checkpoint::open(path)?, dtype))
}

/// Sizes the weights of the model folder `dir`, in whichever layout it holds them, for `dtype`.
pub fn weights_from_dir(dir: &Path, dtype: DType) -> Result<HeaderSizes, RequirementsError> {
    Ok(sizes_of(&Checkpoint::open_dir(dir)?, dtype))
}

/// Sizes the tensors of `file` for `dtype`.
pub fn sizes_of(file: &Checkpoint, dtype: DType) -> HeaderSizes {
    let dtypes = dtype.parts();
    let mut sizes = HeaderSizes { weights: WeightBytes::default(), largest_tensor_bytes: 0 };
    for (key, info) in file.distinct_tensors() {
        let part = Part::of(key);
        let Some(element) = part.dtype(dtypes) else { continue };
        let stored = checkpoint::stored_bytes(info);
        let loaded = if checkpoint::is_float(info.dtype) {
            let rows = info.shape.first().copied().unwrap_or(1) as u64;
            element.tensor_bytes(key, checkpoint::numel(info), rows)
        } else {
            stored
        };
        sizes.weights.add(part, loaded);
        sizes.largest_tensor_bytes = sizes.largest_tensor_bytes.max(stored);
    }
    sizes
}
