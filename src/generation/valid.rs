//! A generation request checked once against its model, before anything is loaded: the wire's
//! model-independent limits were checked in `grpc::requests`, the model's own (top-k against the
//! codebook, chunk against one frame, an audio prompt against the window, what a melody checkpoint
//! can do) are checked here from the checkpoint's configs, and the checkpoint's defaults are filled
//! in. Every refusal is a [`ValidationError`] variant carrying the field, the limit and the value;
//! its message is rendered in one place.

use super::GenerateParams;
use crate::{
    audio_input::Clip,
    engine::{CheckpointFacts, GenerationRequest, SamplingMode, SamplingParams},
};

/// The longest chunk a request may ask for, in ms.
pub const MAX_CHUNK_MS: u32 = 10_000;

/// Why a generation request does not fit its model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationError {
    /// `top_k` past the codebook.
    #[error("top_k: must be 0 (off) ..= {codebook} (the codebook size), got {value}")]
    TopK {
        /// The value asked (or the checkpoint's default).
        value: u32,
        /// The codebook size.
        codebook: u32,
    },
    /// `chunk_ms` shorter than one frame or longer than [`MAX_CHUNK_MS`].
    #[error("chunk_ms: must be >= one frame ({frame_ms:.0} ms) and <= {MAX_CHUNK_MS}, got {value}")]
    ChunkMs {
        /// The value asked.
        value: u32,
        /// One frame of the model, in ms.
        frame_ms: f64,
    },
    /// An audio prompt as long as the model's window or longer.
    #[error("audio_prompt: must be shorter than the model's window ({window_s} s), got {seconds:.3} s")]
    AudioPromptPastWindow {
        /// The clip's length.
        seconds: f64,
        /// The model's window.
        window_s: f64,
    },
    /// A melody sent to a text-only checkpoint.
    #[error(
        "melody: model {model} is text-only (model_type musicgen); conditioning on a melody needs a \
         musicgen_melody checkpoint such as facebook/musicgen-melody"
    )]
    MelodyOnTextModel {
        /// The model asked.
        model: String,
    },
    /// An audio prompt sent to a melody checkpoint.
    #[error(
        "audio_prompt: model {model} is a melody checkpoint, which does not continue clips: send melody"
    )]
    ContinuationOnMelodyModel {
        /// The model asked.
        model: String,
    },
    /// A melody checkpoint asked for more than one window.
    #[error(
        "duration_s: a melody checkpoint generates one window: at most {window_s} s on {model}, got {value}"
    )]
    MelodyPastWindow {
        /// The model asked.
        model: String,
        /// Its window.
        window_s: f64,
        /// The duration asked.
        value: f64,
    },
}

impl ValidationError {
    /// The request field it names.
    pub fn field(&self) -> &'static str {
        match self {
            Self::TopK { .. } => "top_k",
            Self::ChunkMs { .. } => "chunk_ms",
            Self::AudioPromptPastWindow { .. } | Self::ContinuationOnMelodyModel { .. } => "audio_prompt",
            Self::MelodyOnTextModel { .. } => "melody",
            Self::MelodyPastWindow { .. } => "duration_s",
        }
    }

    /// A refusal the request cannot fix by changing a value, only by asking another model.
    pub fn wrong_model(&self) -> bool {
        matches!(self, Self::MelodyOnTextModel { .. })
    }
}

/// A generation request with every value checked against its model and the defaults filled in.
#[derive(Debug, Clone)]
pub struct ValidGenerate {
    /// Model id.
    pub model: String,
    /// Seconds asked.
    pub duration_s: f64,
    /// What the engine runs (its prompt codes and melody are filled in once the clips are
    /// converted).
    pub request: GenerationRequest,
    /// A clip to continue, as sent (shorter than the window once converted).
    pub audio_prompt: Option<Clip>,
    /// A melody, as sent (the checkpoint takes melodies).
    pub melody: Option<Clip>,
}

impl ValidGenerate {
    /// Checks `p` against the model `facts` describe and resolves its defaults.
    pub fn check(p: GenerateParams, facts: &CheckpointFacts) -> Result<Self, ValidationError> {
        check_melody(&p, facts)?;
        if let Some(clip) = &p.audio_prompt {
            check_prompt_window(clip, facts)?;
        }
        let request = resolve(&p, facts)?;
        let GenerateParams { model, duration_s, audio_prompt, melody, .. } = p;
        Ok(Self { model, duration_s, request, audio_prompt, melody })
    }
}

/// What a melody checkpoint can and cannot do with `p`; a melody needs a melody checkpoint.
fn check_melody(p: &GenerateParams, facts: &CheckpointFacts) -> Result<(), ValidationError> {
    let model = || p.model.clone();
    match &facts.chroma {
        None if p.melody.is_some() => Err(ValidationError::MelodyOnTextModel { model: model() }),
        Some(_) if p.audio_prompt.is_some() => {
            Err(ValidationError::ContinuationOnMelodyModel { model: model() })
        }
        Some(_) if p.duration_s > facts.window_s => Err(ValidationError::MelodyPastWindow {
            model: model(),
            window_s: facts.window_s,
            value: p.duration_s,
        }),
        _ => Ok(()),
    }
}

/// A clip to continue must be shorter than one window at the model's rate: its frames once
/// resampled, counted without resampling.
fn check_prompt_window(clip: &Clip, facts: &CheckpointFacts) -> Result<(), ValidationError> {
    let at_model_rate =
        (clip.frames() as u64 * u64::from(facts.sample_rate)).div_ceil(u64::from(clip.sample_rate.max(1)));
    let frames = at_model_rate.div_ceil(facts.hop().max(1) as u64);
    if frames >= facts.window_frames() as u64 {
        return Err(ValidationError::AudioPromptPastWindow {
            seconds: clip.seconds(),
            window_s: facts.window_s,
        });
    }
    Ok(())
}

/// Fills defaults from the checkpoint and checks the limits that depend on the model.
fn resolve(p: &GenerateParams, facts: &CheckpointFacts) -> Result<GenerationRequest, ValidationError> {
    let mode = if p.audiocraft_sampling { SamplingMode::Audiocraft } else { SamplingMode::Transformers };
    let default_k = match mode {
        SamplingMode::Audiocraft => SamplingMode::AUDIOCRAFT_TOP_K.min(i64::from(facts.codebook_size)),
        SamplingMode::Transformers => facts.defaults.top_k.max(0),
    };
    let k = p.top_k.unwrap_or(default_k as u32);
    if k > facts.codebook_size {
        return Err(ValidationError::TopK { value: k, codebook: facts.codebook_size });
    }
    let frame_ms = 1000.0 / facts.frame_rate;
    let chunk_ms = if p.chunk_ms == 0 { 1000 } else { p.chunk_ms };
    if f64::from(chunk_ms) < frame_ms.floor() || chunk_ms > MAX_CHUNK_MS {
        return Err(ValidationError::ChunkMs { value: chunk_ms, frame_ms });
    }
    let d = &facts.defaults;
    let top_p = match p.top_p {
        Some(v) if v > 0.0 => v,
        Some(_) => 1.0,
        None => d.top_p,
    };
    // What the header reports is what runs: in audiocraft's rules an active top-p leaves no top-k.
    let k = if mode == SamplingMode::Audiocraft && top_p < 1.0 { 0 } else { k };
    Ok(GenerationRequest {
        prompt: p.prompt.clone(),
        negative_prompt: p.negative_prompt.clone(),
        frames: ((p.duration_s * facts.frame_rate).round() as usize).max(1),
        prompt_codes: Vec::new(),
        melody: Vec::new(),
        include_prompt: p.include_prompt,
        sampling: SamplingParams {
            greedy: p.greedy || !d.do_sample,
            temperature: p.temperature.unwrap_or(d.temperature),
            top_k: i64::from(k),
            top_p,
            mode,
        },
        guidance_scale: p.guidance_scale.unwrap_or(d.guidance_scale),
        seed: p.seed.unwrap_or_else(rand_seed),
        chunk_frames: ((f64::from(chunk_ms) / frame_ms).round() as usize).max(1),
    })
}

fn rand_seed() -> u64 {
    let id = uuid::Uuid::new_v4();
    u64::from_le_bytes(id.as_bytes()[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
#[path = "tests/valid.rs"]
mod tests;
