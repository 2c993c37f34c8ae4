//! Audio in: a clip encoded by the checkpoint's own EnCodec encoder into the codes that prompt a
//! continuation. A separate object from [`MusicGen`](super::MusicGen), loaded only where audio comes
//! in, so a model that never gets any keeps no encoder weights.

use std::path::Path;

use tch::{Device, Kind, Tensor};

use super::config::MusicgenConfig;
use super::encodec::encoder::EncodecEncoder;
use super::error::{MusicgenError, Result};
use super::sampling::to_vec_i64;
use super::weights::WeightLoader;

/// The EnCodec encoder of a MusicGen checkpoint.
pub struct AudioEncoder {
    encoder: EncodecEncoder,
    channels: usize,
    device: Device,
}

impl AudioEncoder {
    /// Loads the encoder and the quantizers the decoder predicts from `dir`.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let _guard = tch::no_grad_guard();
        crate::checkpoint::kind::check_config_file(&dir.join("config.json"))?;
        let config = MusicgenConfig::from_file(&dir.join("config.json"))?;
        let file = crate::checkpoint::Checkpoint::open_dir(dir)?;
        let w = WeightLoader::new(&file, device);
        let quantizers = config.decoder.channel_codebooks();
        let encoder = EncodecEncoder::load(&w, &config.audio_encoder, quantizers)?;
        Ok(Self { encoder, channels: config.decoder.audio_channels as usize, device })
    }

    /// Samples per frame.
    pub fn hop(&self) -> usize {
        self.encoder.hop() as usize
    }

    /// Codes `[codebook][frame]` of `audio` `(channels, samples)` at the model's rate and channel
    /// count: each channel through the (mono) codec, a stereo model's left and right codebooks
    /// interleaved as its decoder predicts them (transformers' `input_values`).
    pub fn encode(&self, audio: &Tensor) -> Result<Vec<Vec<i64>>> {
        let channels = audio.size().first().copied().unwrap_or(0) as usize;
        if audio.dim() != 2 || channels != self.channels {
            return Err(MusicgenError::InvalidRequest {
                field: "audio_prompt",
                message: format!("must be ({} channels, samples), got {:?}", self.channels, audio.size()),
            });
        }
        let codes = self.encoder.encode(&audio.to_kind(Kind::Float).to_device(self.device).unsqueeze(1));
        let (q, frames) = (codes.size()[1] as usize, codes.size()[2] as usize);
        let flat = to_vec_i64(&codes)?;
        let mut out = vec![Vec::with_capacity(frames); q * channels];
        for (k, row) in out.iter_mut().enumerate() {
            let (channel, quantizer) = (k % channels, k / channels);
            let at = (channel * q + quantizer) * frames;
            row.extend_from_slice(&flat[at..at + frames]);
        }
        Ok(out)
    }
}
