//! What a generation is, free of libtorch: the request an engine runs (prompt, length, sampling,
//! seed, chunking), the chunks and figures it gives back, and a checkpoint's generation defaults. The
//! orchestrator builds these without an engine; `musicgen` runs them.

use std::time::Duration;

use serde::Deserialize;

/// One text-to-music request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// The text prompt; empty is the null condition (unconditional generation).
    pub prompt: String,
    /// Text whose conditioning replaces the null condition in guidance's unconditional row; empty
    /// keeps the null condition.
    pub negative_prompt: String,
    /// Audio frames to produce after the prompt codes (see `MusicGen::frames_for`).
    pub frames: usize,
    /// Codes `[codebook][frame]` the generation continues (an encoded clip, see
    /// the EnCodec encoder); empty for none. They prefill the decoder with the delay
    /// pattern transformers builds for `input_values`.
    pub prompt_codes: Vec<Vec<i64>>,
    /// A melody checkpoint's chroma conditioning, one-hot frames of `num_chroma` (see
    /// the melody checkpoint's chroma); empty for the null chroma.
    pub melody: Vec<Vec<f32>>,
    /// Stream the decode of the prompt too, not only what follows it. EnCodec's decoder is not
    /// causal, so either way the audio is the decode of prompt and new codes together.
    pub include_prompt: bool,
    /// How codes are picked.
    pub sampling: SamplingParams,
    /// Classifier-free guidance scale; ≤ 1 turns guidance off for this request (see
    /// `GenerationRequest::effective_guidance`).
    pub guidance_scale: f64,
    /// Seed of the request's own generator: the same seed gives the same codes on the same device.
    pub seed: u64,
    /// Frames per streamed chunk.
    pub chunk_frames: usize,
}

impl GenerationRequest {
    /// The guidance scale this request really gets: guidance needs something to contrast, so an empty
    /// prompt without a negative prompt or a melody runs unguided (1.0), whatever was asked.
    pub fn effective_guidance(&self) -> f64 {
        if self.prompt.is_empty() && self.negative_prompt.is_empty() && self.melody.is_empty() {
            1.0
        } else {
            self.guidance_scale
        }
    }

    /// Whether this request runs classifier-free guidance.
    pub fn guided(&self) -> bool {
        self.effective_guidance() > 1.0
    }
}

/// A chunk of decoded audio for one request of the batch.
#[derive(Debug, Clone)]
pub struct AudioChunkOut {
    /// Index of the request in the batch.
    pub request: usize,
    /// Chunk number within the request, from 0.
    pub index: usize,
    /// First frame covered.
    pub start_frame: usize,
    /// Frames covered.
    pub frames: usize,
    /// Channels interleaved in `samples`.
    pub channels: usize,
    /// f32 PCM, channel-interleaved.
    pub samples: Vec<f32>,
    /// Whether this is the request's last chunk.
    pub is_last: bool,
}

/// What one request cost and produced.
#[derive(Debug, Clone, Default)]
pub struct GenerationStats {
    /// Frames of audio streamed (fewer than asked when stopped; the prompt's only with
    /// `include_prompt`).
    pub frames: usize,
    /// Decoder steps run while the request was live.
    pub steps: usize,
    /// The codes, codebook-major: `codes[k][frame]`, prompt codes first.
    pub codes: Vec<Vec<i64>>,
    /// Tokenization, T5 and cross-attention K/V (shared by the batch).
    pub text_encode: Duration,
    /// Decoder forward passes and sampling.
    pub decode: Duration,
    /// EnCodec streaming decode of this request.
    pub codec: Duration,
    /// From the call to this request's first chunk.
    pub first_chunk: Option<Duration>,
    /// Decoder steps run before the first chunk could be decoded.
    pub first_chunk_steps: Option<usize>,
    /// From the call to this request's end.
    pub total: Duration,
    /// The callback asked to stop.
    pub stopped: bool,
}

/// How one request picks its codes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// Take the most likely code; the other fields are ignored.
    pub greedy: bool,
    /// Softmax temperature (> 0).
    pub temperature: f64,
    /// Keep the k most likely codes; 0 keeps all.
    pub top_k: i64,
    /// Keep the smallest set of codes whose probability reaches `top_p`; 1.0 keeps all.
    pub top_p: f64,
    /// Which library's filtering rules apply.
    pub mode: SamplingMode,
}

/// The filtering rules of a sampled request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SamplingMode {
    /// transformers' `generate`: top-k, then top-p on what is left; a code goes when the mass of it and
    /// every less likely code is ≤ 1 − top_p.
    #[default]
    Transformers,
    /// audiocraft's `sample_top_p` / `sample_top_k`: with top-p on (< 1) top-k is ignored; a code goes
    /// when the mass of the codes more likely than it exceeds top_p.
    Audiocraft,
}

impl SamplingMode {
    /// audiocraft's default top-k (`LMModel.generate`'s `top_k=250`).
    pub const AUDIOCRAFT_TOP_K: i64 = 250;

    /// The name users give and headers report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Transformers => "transformers",
            Self::Audiocraft => "audiocraft",
        }
    }
}

impl SamplingParams {
    /// Candidates kept before top-p for a vocabulary of `vocab` codes.
    pub fn candidates(&self, vocab: i64) -> i64 {
        let nucleus_only = self.mode == SamplingMode::Audiocraft && self.top_p < 1.0;
        if self.top_k > 0 && !nucleus_only {
            self.top_k.min(vocab)
        } else {
            vocab
        }
    }
}

/// The generation defaults of `generation_config.json`, completed with transformers' defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GenerationConfig {
    /// Sample (true) or take the argmax (false).
    #[serde(default)]
    pub do_sample: bool,
    /// Classifier-free guidance scale; ≤ 1 disables guidance.
    #[serde(default = "one_f")]
    pub guidance_scale: f64,
    /// Longest sequence, BOS column included (1500 = 30 s for the published models).
    #[serde(default = "default_max_length")]
    pub max_length: i64,
    /// Softmax temperature.
    #[serde(default = "one_f")]
    pub temperature: f64,
    /// Keep only the k most likely codes (transformers' default is 50; 0 disables).
    #[serde(default = "default_top_k")]
    pub top_k: i64,
    /// Nucleus threshold (1.0 disables).
    #[serde(default = "one_f")]
    pub top_p: f64,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("every field has a default")
    }
}

fn one_f() -> f64 {
    1.0
}
fn default_max_length() -> i64 {
    20
}
fn default_top_k() -> i64 {
    50
}
