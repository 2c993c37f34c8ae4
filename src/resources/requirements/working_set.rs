//! The working set of a generation: what a batch of a given duration needs beyond the weights (KV
//! caches and the peak transient activations), from the sizes in a MusicGen `config.json`. The one
//! formula behind checkpoint requirements and `inspect-model`. Linear in the batch, so one sample's
//! figure scales to any batch.

use std::path::Path;

use serde::Deserialize;

use super::{read_json, DType, RequirementsError, CFG_FACTOR, DEFAULT_FRAME_RATE, PROMPT_TOKENS};

/// Frames of context one streamed EnCodec chunk carries beyond its second of audio.
pub const CODEC_CONTEXT_FRAMES: u64 = 16;

/// The sizes the working set depends on, as `config.json` gives them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ModelShape {
    /// The decoder.
    pub decoder: DecoderShape,
    /// The EnCodec codec (only its decoder runs).
    pub audio_encoder: CodecShape,
    /// The T5 text encoder.
    pub text_encoder: TextShape,
    /// `musicgen_melody` for a melody checkpoint, whose decoder has no cross-attention and reads its
    /// conditioning as a prefix of its own sequence.
    #[serde(default)]
    pub model_type: Option<String>,
    /// A melody checkpoint's chroma frames in that prefix.
    #[serde(default = "default_chroma_length")]
    pub chroma_length: u64,
}

/// Decoder sizes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DecoderShape {
    /// Hidden size.
    pub hidden_size: u64,
    /// Layers.
    pub num_hidden_layers: u64,
    /// Feed-forward inner size.
    pub ffn_dim: u64,
    /// Codes per codebook.
    pub vocab_size: u64,
    /// Codebooks per frame (default 4).
    #[serde(default = "four")]
    pub num_codebooks: u64,
    /// 1 (mono) or 2 (stereo); the delay pattern is `num_codebooks / audio_channels` deep.
    #[serde(default = "one")]
    pub audio_channels: u64,
}

/// EnCodec sizes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CodecShape {
    /// Output sample rate in Hz.
    pub sampling_rate: u64,
    /// Base channel count of the SEANet decoder.
    pub num_filters: u64,
    /// Upsampling ratios; their product is the hop length.
    pub upsampling_ratios: Vec<u64>,
}

/// T5 sizes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TextShape {
    /// Feed-forward inner size.
    pub d_ff: u64,
    /// Attention heads.
    pub num_heads: u64,
}

fn one() -> u64 {
    1
}

fn default_chroma_length() -> u64 {
    235
}

fn four() -> u64 {
    4
}

/// What a batch needs beyond the weights, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkingSet {
    /// Self-attention K/V of every step (guidance doubles the rows), in the decoder's dtype.
    pub kv_cache: u64,
    /// Cross-attention K/V over [`PROMPT_TOKENS`] text positions (none in a melody checkpoint).
    pub cross_cache: u64,
    /// Peak transient activations: the larger of a decoder step (f32 logits) and the T5 pass, plus
    /// one streamed EnCodec chunk.
    pub activations: u64,
}

impl WorkingSet {
    /// Everything together.
    pub fn total(&self) -> u64 {
        self.kv_cache.saturating_add(self.cross_cache).saturating_add(self.activations)
    }
}

impl ModelShape {
    /// Reads the sizes from the `config.json` at `path`.
    pub fn read(path: &Path) -> Result<Self, RequirementsError> {
        read_json(path)
    }

    /// Positions a melody checkpoint's decoder reads before the first frame: `chroma_length` chroma
    /// frames and [`PROMPT_TOKENS`] text states; 0 for a text-conditioned checkpoint.
    pub fn prefix_positions(&self) -> u64 {
        if self.model_type.as_deref() == Some("musicgen_melody") {
            self.chroma_length.saturating_add(PROMPT_TOKENS)
        } else {
            0
        }
    }

    /// Samples per frame: the product of the upsampling ratios.
    pub fn hop_length(&self) -> u64 {
        product(&self.audio_encoder.upsampling_ratios)
    }

    /// Decoder frames per second, rounded up as transformers does ([`DEFAULT_FRAME_RATE`] when the
    /// codec gives no ratios or no sample rate).
    pub fn frame_rate(&self) -> f64 {
        let rate = self.audio_encoder.sampling_rate;
        if rate == 0 || self.audio_encoder.upsampling_ratios.is_empty() {
            return DEFAULT_FRAME_RATE;
        }
        rate.div_ceil(self.hop_length().max(1)) as f64
    }

    /// Frames of `duration_s` seconds, as a generation counts them (rounded, at least one).
    pub fn frames(&self, duration_s: f64) -> u64 {
        ((duration_s * self.frame_rate()).round() as u64).max(1)
    }

    /// The working set of `batch` requests of `duration_s` seconds with the decoder in `dtype` and
    /// classifier-free guidance on ([`CFG_FACTOR`] rows per request):
    /// - KV cache: rows × (frames + delay steps) × layers × hidden × 2 (K, V) × dtype bytes;
    /// - cross cache: the same per position, over [`PROMPT_TOKENS`] positions; a melody checkpoint
    ///   has none, its KV cache holding [`ModelShape::prefix_positions`] more positions instead, and
    ///   its first step (the prefix in one pass) counts rows × prefix × (ffn + 4 × hidden) × 4 × 2
    ///   among the activations;
    /// - activations: max(decoder step: rows × (ffn + 4 × hidden + codebooks × vocab) × 4 bytes × 2,
    ///   T5: batch × [`PROMPT_TOKENS`] × (d_ff + heads × [`PROMPT_TOKENS`]) × 4 bytes × 2) + one
    ///   EnCodec chunk: batch × (frame rate + [`CODEC_CONTEXT_FRAMES`]) × filters × hop × 2 × 4 bytes
    ///   × 3 buffers.
    pub fn working_set(&self, dtype: DType, batch: u64, duration_s: f64) -> WorkingSet {
        let (d, t, c) = (&self.decoder, &self.text_encoder, &self.audio_encoder);
        let rows = batch.saturating_mul(CFG_FACTOR);
        let delay = d.num_codebooks.checked_div(d.audio_channels).unwrap_or(d.num_codebooks);
        let prefix = self.prefix_positions();
        let steps = self.frames(duration_s).saturating_add(delay).saturating_add(prefix);
        let per_position = product(&[2, d.num_hidden_layers, d.hidden_size, dtype.activation().bytes()]);
        let step_width = d
            .ffn_dim
            .saturating_add(d.hidden_size.saturating_mul(4))
            .saturating_add(d.num_codebooks.saturating_mul(d.vocab_size));
        let step = product(&[rows, step_width, 4, 2]);
        let prefill =
            product(&[rows, prefix, d.ffn_dim.saturating_add(d.hidden_size.saturating_mul(4)), 4, 2]);
        let text_width = t.d_ff.saturating_add(t.num_heads.saturating_mul(PROMPT_TOKENS));
        let text = product(&[batch, PROMPT_TOKENS, text_width, 4, 2]);
        let window = (self.frame_rate() as u64).saturating_add(CODEC_CONTEXT_FRAMES);
        let codec = product(&[batch, window, c.num_filters, self.hop_length(), 2, 4, 3]);
        WorkingSet {
            kv_cache: product(&[rows, steps, per_position]),
            cross_cache: if prefix > 0 { 0 } else { product(&[rows, PROMPT_TOKENS, per_position]) },
            activations: step.max(text).max(prefill).saturating_add(codec),
        }
    }
}

fn product(factors: &[u64]) -> u64 {
    factors.iter().fold(1u64, |p, &f| p.saturating_mul(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(dir: &str) -> ModelShape {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir).join("config.json");
        ModelShape::read(&path).unwrap()
    }

    #[test]
    fn a_melody_checkpoint_holds_its_prefix_instead_of_a_cross_cache() {
        let (text, melody) = (shape("musicgen-tiny"), shape("musicgen-melody-tiny"));
        assert_eq!((text.prefix_positions(), melody.prefix_positions()), (0, 24 + PROMPT_TOKENS));
        let (a, b) = (text.working_set(DType::F32, 1, 1.0), melody.working_set(DType::F32, 1, 1.0));
        assert!(a.cross_cache > 0 && b.cross_cache == 0, "{a:?} {b:?}");
        // The same decoder sizes: the melody cache is longer by exactly the prefix.
        let per_position = a.kv_cache / (text.frames(1.0) + 4);
        assert_eq!(b.kv_cache - a.kv_cache, per_position * melody.prefix_positions());
    }
}
