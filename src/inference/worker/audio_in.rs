//! What encoding an audio prompt costs, read from a checkpoint's headers and config at load.

/// What encoding an audio prompt costs on a model's device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AudioInCost {
    /// The encoder's weights and the quantizer's codebooks, f32.
    pub weight_bytes: u64,
    /// Peak activations per input sample and channel: the widest stage's input, output and ELU
    /// copy at the full rate (3 × 4 bytes × filters), plus a quarter for the residual blocks.
    pub bytes_per_sample: u64,
}

impl AudioInCost {
    /// What `dir`'s checkpoint needs to encode audio, from its headers alone.
    pub fn of(dir: &std::path::Path, config: &crate::musicgen::MusicgenConfig) -> Self {
        let quantizers = config.decoder.channel_codebooks();
        let used = |name: &str| {
            name.starts_with("audio_encoder.encoder.")
                || (0..quantizers)
                    .any(|q| name == format!("audio_encoder.quantizer.layers.{q}.codebook.embed"))
        };
        let weight_bytes = crate::checkpoint::Checkpoint::open_dir(dir).map_or(0, |c| {
            c.distinct_tensors()
                .into_iter()
                .filter(|(n, _)| used(n))
                .map(|(_, t)| crate::checkpoint::numel(t) * 4)
                .sum()
        });
        Self { weight_bytes, bytes_per_sample: 15 * config.audio_encoder.num_filters as u64 }
    }
}
