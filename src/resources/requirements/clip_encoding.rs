//! What encoding an audio clip (a continuation's prompt) costs a model: the EnCodec encoder and
//! its codebooks in f32, loaded for the encode and dropped after, and the encoder's activations.
//! One estimate for the lease a generation takes and for what requirements report.

use crate::checkpoint::{numel, Checkpoint};

use super::ModelShape;

/// Activation bytes per input sample and channel for a codec of `num_filters`: the widest stage's
/// input, output and ELU copy at the full rate (3 × 4 bytes × filters), a quarter more for the
/// residual blocks' hidden width.
fn bytes_per_sample(num_filters: u64) -> u64 {
    15 * num_filters
}

/// What encoding audio for one model costs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AudioInCost {
    /// The encoder's weights and the quantizers' codebooks the decoder predicts, f32.
    pub weight_bytes: u64,
    /// Peak activations per input sample and channel (see the module).
    pub bytes_per_sample: u64,
    /// Input samples per second of audio, every channel counted (rate × channels).
    pub samples_per_s: u64,
}

impl AudioInCost {
    /// From an open checkpoint's headers and its shape.
    pub fn of(checkpoint: &Checkpoint, shape: &ModelShape) -> Self {
        let d = &shape.decoder;
        let quantizers = d.num_codebooks.checked_div(d.audio_channels).unwrap_or(d.num_codebooks);
        let codebook = |name: &str| {
            (0..quantizers).any(|q| name == format!("audio_encoder.quantizer.layers.{q}.codebook.embed"))
        };
        let weight_bytes = checkpoint
            .distinct_tensors()
            .into_iter()
            .filter(|(name, _)| name.starts_with("audio_encoder.encoder.") || codebook(name))
            .map(|(_, t)| numel(t) * 4)
            .sum();
        Self {
            weight_bytes,
            bytes_per_sample: bytes_per_sample(shape.audio_encoder.num_filters),
            samples_per_s: shape.audio_encoder.sampling_rate.saturating_mul(shape.decoder.audio_channels),
        }
    }

    /// A published checkpoint's, estimated from the table: an EnCodec encoder about the decoder's
    /// size, 64 filters, 32 kHz counted as stereo (an upper bound for the mono rows).
    pub fn published(audio_decoder_params: u64) -> Self {
        Self {
            weight_bytes: audio_decoder_params * 4,
            bytes_per_sample: bytes_per_sample(64),
            samples_per_s: 64_000,
        }
    }

    /// Bytes to encode a clip of `seconds` (0 for none).
    pub fn bytes_for_seconds(&self, seconds: f64) -> u64 {
        if seconds > 0.0 {
            self.bytes_for((seconds * self.samples_per_s as f64).ceil() as u64)
        } else {
            0
        }
    }

    /// Bytes to encode `samples` samples (every channel counted), their f32 copy included.
    pub fn bytes_for(&self, samples: u64) -> u64 {
        self.weight_bytes.saturating_add(samples.saturating_mul(self.bytes_per_sample + 4))
    }
}
