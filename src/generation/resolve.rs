//! A validated request's audio brought to its model: an audio prompt at the model's rate and
//! channels with the frames it encodes to, a melody made the model's chroma, each with what was
//! converted on the way.

use super::{Error, GenerationError};
use crate::{audio_input::Clip, engine::CheckpointFacts};

/// An audio prompt brought to the model: samples at its rate and channels, the frames they encode
/// to, and what was converted.
pub(super) struct PromptAudio {
    pub samples: Vec<f32>,
    pub frames: usize,
    pub notes: Vec<String>,
}

/// `clip` at the model's rate and channels (its length was checked against the window already).
pub(super) fn prompt_audio(
    clip: Option<Clip>,
    facts: &CheckpointFacts,
) -> Result<Option<PromptAudio>, Error> {
    let Some(clip) = clip else { return Ok(None) };
    let (clip, notes) = clip.conform(facts.sample_rate, facts.channels as usize)?;
    let frames = clip.frames().div_ceil(facts.hop().max(1));
    Ok(Some(PromptAudio { samples: clip.samples, frames, notes }))
}

/// The melody's one-hot chroma frames for the model, with what was converted on the way (mono at the
/// extractor's rate); `None` without a melody. The STFT runs off the async threads.
pub(super) async fn melody_chroma(
    clip: Option<Clip>,
    facts: &CheckpointFacts,
) -> Result<Option<(Vec<Vec<f32>>, Vec<String>)>, Error> {
    let (Some(clip), Some(config)) = (clip, facts.chroma.clone()) else { return Ok(None) };
    let (clip, notes) = clip.conform(config.sampling_rate, 1)?;
    let notes = notes.into_iter().map(|n| format!("melody: {n}")).collect();
    let frames = tokio::task::spawn_blocking(move || {
        crate::chroma::ChromaExtractor::new(config).map(|e| e.one_hot(&clip.samples))
    })
    .await
    .map_err(|e| GenerationError::Internal(format!("chroma extraction stopped: {e}")))?
    .map_err(GenerationError::Internal)?;
    Ok(Some((frames, notes)))
}
