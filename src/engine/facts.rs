//! What a checkpoint's configs say about the model it holds: rates, channels, codebook, window,
//! generation defaults and, for a melody checkpoint, the chroma settings. Read from the files before
//! anything is loaded (the orchestrator validates requests with it) and built from the same config
//! types when an engine loads the model, so both always agree.

use std::path::Path;

use crate::{
    checkpoint::{
        config::{ConfigError, GenerationConfig, MusicgenConfig},
        kind::check_config_file,
    },
    chroma::ChromaConfig,
};

/// The model as its checkpoint describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointFacts {
    /// Output sample rate.
    pub sample_rate: u32,
    /// Output channels.
    pub channels: u32,
    /// Frames per second.
    pub frame_rate: f64,
    /// Codes per codebook (`top_k` limit).
    pub codebook_size: u32,
    /// One window in seconds (the checkpoint's `max_length`): what one pass decodes and what a
    /// generation's working set is sized for, however long it is.
    pub window_s: f64,
    /// The checkpoint's generation defaults.
    pub defaults: GenerationConfig,
    /// A melody checkpoint's chroma extractor settings; `None` for a text-only checkpoint.
    pub chroma: Option<ChromaConfig>,
}

impl CheckpointFacts {
    /// The facts of a model with these configs.
    pub fn of(config: &MusicgenConfig, generation: &GenerationConfig, chroma: Option<ChromaConfig>) -> Self {
        let frame_rate = config.audio_encoder.frame_rate() as f64;
        Self {
            sample_rate: config.audio_encoder.sampling_rate as u32,
            channels: config.decoder.audio_channels as u32,
            frame_rate,
            codebook_size: config.decoder.vocab_size as u32,
            window_s: generation.max_length.max(1) as f64 / frame_rate,
            defaults: generation.clone(),
            chroma,
        }
    }

    /// Reads the configs in `dir`: what kind of checkpoint it is first (one that is not served is
    /// refused before anything else), then `config.json`, `generation_config.json` (transformers'
    /// defaults when absent) and, for a melody checkpoint, `preprocessor_config.json` (the published
    /// settings when absent). Blocking: call it off the async threads.
    pub fn read(dir: &Path) -> Result<Self, ConfigError> {
        let config_path = dir.join("config.json");
        check_config_file(&config_path)?;
        let config = MusicgenConfig::from_file(&config_path)?;
        let generation = GenerationConfig::from_file_or_default(&dir.join("generation_config.json"))?;
        let chroma = if config.is_melody() {
            let path = dir.join("preprocessor_config.json");
            let chroma = ChromaConfig::from_file_or_default(&path)
                .map_err(|message| ConfigError::Invalid { path, message })?;
            Some(chroma)
        } else {
            None
        };
        Ok(Self::of(&config, &generation, chroma))
    }

    /// Samples per frame and channel.
    pub fn hop(&self) -> usize {
        (f64::from(self.sample_rate) / self.frame_rate).round() as usize
    }

    /// Frames in one window.
    pub fn window_frames(&self) -> usize {
        (self.window_s * self.frame_rate).round() as usize
    }
}
