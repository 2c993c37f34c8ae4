//! A validated request's audio brought to its model, after admission: an audio prompt at the
//! model's rate and channels with the frames it encodes to, a melody made the model's chroma, each
//! with what was converted on the way.
//!
//! The work runs on the blocking pool, a few at a time ([`Conversions`]), and only for a request
//! that already holds its lease and queue slot: a flood of audio can queue behind the limit but
//! never take more memory than the leases it was granted. What it may take is estimated up front
//! ([`RawAudio::conversion_bytes`]) so the fit check and the lease count it.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::{Error, GenerationError};
use crate::{audio_input::Clip, engine::CheckpointFacts};

/// How many conversions run at once: one per core, since each is CPU work with nothing to wait for.
#[derive(Clone)]
pub(super) struct Conversions(Arc<Semaphore>);

impl Default for Conversions {
    fn default() -> Self {
        Self::with_limit(std::thread::available_parallelism().map_or(1, usize::from))
    }
}

impl Conversions {
    /// `n` at once.
    pub fn with_limit(n: usize) -> Self {
        Self(Arc::new(Semaphore::new(n)))
    }
}

/// The request's audio as it came, before it is brought to the model.
#[derive(Default)]
pub(super) struct RawAudio {
    /// A clip to continue.
    pub prompt: Option<Clip>,
    /// A melody to follow (used only when the model has a chroma extractor).
    pub melody: Option<Clip>,
}

/// An audio prompt brought to the model: samples at its rate and channels, the frames they encode
/// to.
pub(super) struct PromptAudio {
    pub samples: Vec<f32>,
    pub frames: usize,
}

/// What the request's audio became, and what was done to it (for the stream's header).
#[derive(Default)]
pub(super) struct Prepared {
    pub prompt: Option<PromptAudio>,
    pub melody: Option<Vec<Vec<f32>>>,
    pub notes: Vec<String>,
}

/// The resampler's FFTs hold a few buffers of about one second of samples at each rate per channel
/// (the rates are at least 8 kHz and 1024-sample chunks, so one second bounds an FFT's length);
/// 16 f32/complex buffers of a second each bound them all.
const RESAMPLER_SECONDS_OF_BUFFERS: u64 = 16;

impl RawAudio {
    /// Seconds of audio prompt (encoding it needs the encoder's activations).
    pub fn prompt_seconds(&self) -> f64 {
        self.prompt.as_ref().map_or(0.0, Clip::seconds)
    }

    /// Host bytes the conversion holds at its peak: each clip as sent, what it becomes, and the
    /// resampler's buffers at both rates.
    pub fn conversion_bytes(&self, facts: &CheckpointFacts) -> u64 {
        let prompt = self.prompt.as_ref().map_or(0, |c| clip_bytes(c, facts.sample_rate, facts.channels));
        let melody = match (&self.melody, &facts.chroma) {
            (Some(clip), Some(chroma)) => clip_bytes(clip, chroma.sampling_rate, 1),
            _ => 0,
        };
        prompt.saturating_add(melody)
    }

    /// Brings the audio to the model on the blocking pool, waiting for one of the [`Conversions`].
    pub async fn prepare(self, facts: &CheckpointFacts, limit: &Conversions) -> Result<Prepared, Error> {
        if self.prompt.is_none() && self.melody.is_none() {
            return Ok(Prepared::default());
        }
        let permit = limit
            .0
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| GenerationError::Internal("the audio conversion limit was closed".into()))?;
        let facts = facts.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            self.convert(&facts)
        })
        .await
        .map_err(|e| GenerationError::Internal(format!("audio conversion stopped: {e}")))?
    }

    fn convert(self, facts: &CheckpointFacts) -> Result<Prepared, Error> {
        let mut prepared = Prepared::default();
        if let Some(clip) = self.prompt {
            let (clip, notes) = clip.conform(facts.sample_rate, facts.channels as usize)?;
            let frames = clip.frames().div_ceil(facts.hop().max(1));
            prepared.prompt = Some(PromptAudio { samples: clip.samples, frames });
            prepared.notes.extend(notes);
        }
        if let (Some(clip), Some(config)) = (self.melody, facts.chroma.clone()) {
            let (clip, notes) = clip.conform(config.sampling_rate, 1)?;
            prepared.notes.extend(notes.into_iter().map(|n| format!("melody: {n}")));
            let extractor = crate::chroma::ChromaExtractor::new(config).map_err(GenerationError::Internal)?;
            prepared.melody = Some(extractor.one_hot(&clip.samples));
        }
        Ok(prepared)
    }
}

/// Bytes of `clip` as sent, at `rate` × `channels`, and the resampler's buffers.
fn clip_bytes(clip: &Clip, rate: u32, channels: u32) -> u64 {
    let f32_bytes = std::mem::size_of::<f32>() as u64;
    let seconds = clip.seconds();
    let sent = clip.samples.len() as u64;
    let converted = (seconds * f64::from(rate) * f64::from(channels)).ceil() as u64;
    let rates = u64::from(clip.sample_rate) + u64::from(rate);
    let buffers = RESAMPLER_SECONDS_OF_BUFFERS * rates * clip.channels.max(channels as usize) as u64;
    f32_bytes * (sent + converted + buffers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(rate: u32, channels: usize, seconds: f64) -> Clip {
        let frames = (f64::from(rate) * seconds) as usize;
        Clip { samples: vec![0.0; frames * channels], channels, sample_rate: rate }
    }

    #[test]
    fn conversion_bytes_count_both_copies_and_the_buffers() {
        // 10 s of 48 kHz stereo to 32 kHz mono: 960 000 sent + 320 000 made + 16 × 80 000 × 2.
        let bytes = clip_bytes(&clip(48_000, 2, 10.0), 32_000, 1);
        assert_eq!(bytes, 4 * (960_000 + 320_000 + 2_560_000));
    }

    #[test]
    fn the_lowest_rate_costs_little() {
        // 8 kHz is the lowest rate accepted: a second of it costs well under a megabyte to convert.
        let bytes = clip_bytes(&clip(8_000, 1, 1.0), 32_000, 1);
        assert!(bytes < 4 << 20, "{bytes}");
    }
}
