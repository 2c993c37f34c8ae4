//! A generation request with its model-independent limits checked: what the gRPC shell hands the
//! service. Free of libtorch, so request validation builds (and is fuzzed) without it.

/// A generation request with the model-independent limits already checked.
#[derive(Debug, Clone)]
pub struct GenerateParams {
    /// Model id.
    pub model: String,
    /// Prompt (may be empty: unconditional).
    pub prompt: String,
    /// Guidance's unconditional text (empty: the null condition).
    pub negative_prompt: String,
    /// Seconds of audio.
    pub duration_s: f64,
    /// Overrides of the checkpoint's defaults.
    pub temperature: Option<f64>,
    /// 0 = off.
    pub top_k: Option<u32>,
    /// 0 = off.
    pub top_p: Option<f64>,
    /// Classifier-free guidance scale.
    pub guidance_scale: Option<f64>,
    /// Seed (random when unset).
    pub seed: Option<u64>,
    /// Argmax decoding.
    pub greedy: bool,
    /// Audio per chunk in ms.
    pub chunk_ms: u32,
    /// audiocraft's filtering (top-p replaces top-k, top-k 250 by default) instead of transformers'.
    pub audiocraft_sampling: bool,
    /// A clip to continue, as sent (converted to the model's rate and channels once it is known).
    pub audio_prompt: Option<crate::audio_input::Clip>,
    /// Stream the clip's decode too.
    pub include_prompt: bool,
    /// A melody to condition on, as sent (a melody checkpoint's chroma once the model is known).
    pub melody: Option<crate::audio_input::Clip>,
}
