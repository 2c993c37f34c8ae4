//! Melody checkpoints (`MusicgenMelodyForConditionalGeneration`): the decoder's sequence starts with
//! the conditioning, `chroma_length` frames of projected chroma (the request's melody repeated or cut
//! to that length, or the null chroma: one-hot on bin 0) followed by the projected text states, and
//! there is no cross-attention.
//!
//! Guidance's unconditional row is the null chroma followed by zeros as long as the text (transformers'
//! `zeros_like`), or by the negative prompt's states. Each row's conditioning has its own length: the
//! decoder left-pads and masks, so a request batched with others gets what it gets alone. (transformers
//! pads a batch's texts and attends to the padding, so its batched rows depend on their neighbours.)

use std::path::Path;

use tch::{Device, Kind, Tensor};

use super::config::MusicgenConfig;
use super::decoder::DecoderState;
use super::error::{MusicgenError, Result};
use super::generate::GenerationRequest;
use super::sampling::to_vec_i64;
use super::weights::WeightLoader;
use super::MusicGen;
use crate::chroma::{ChromaConfig, ChromaExtractor};

/// A melody checkpoint's parts beyond a text-conditioned one.
pub(crate) struct Melody {
    /// `audio_enc_to_dec_proj` (weight `(hidden, num_chroma)`, bias), absent when the widths agree.
    proj: Option<(Tensor, Tensor)>,
    chroma_length: i64,
    num_chroma: i64,
    extractor: ChromaExtractor,
}

impl Melody {
    /// The projection from `w` and the extractor from `dir/preprocessor_config.json` (the published
    /// settings when the file is absent).
    pub(crate) fn load(
        w: &WeightLoader<'_>,
        config: &MusicgenConfig,
        dir: &Path,
        kind: Kind,
    ) -> Result<Self> {
        let (nc, h) = (config.num_chroma, config.decoder.hidden_size);
        let proj = if nc != h {
            Some((
                w.tensor("audio_enc_to_dec_proj.weight", &[h, nc], kind)?,
                w.tensor("audio_enc_to_dec_proj.bias", &[h], kind)?,
            ))
        } else {
            None
        };
        let path = dir.join("preprocessor_config.json");
        let bad = |message: String| MusicgenError::Config { path: path.clone(), message };
        let chroma = ChromaConfig::from_file_or_default(&path).map_err(bad)?;
        let rate = config.audio_encoder.sampling_rate;
        if chroma.num_chroma as i64 != nc || chroma.sampling_rate as i64 != rate {
            return Err(bad(format!(
                "num_chroma {} at {} Hz; the model takes {nc} at {rate} Hz",
                chroma.num_chroma, chroma.sampling_rate
            )));
        }
        if config.chroma_length < 1 {
            return Err(bad(format!("chroma_length {} (must be >= 1)", config.chroma_length)));
        }
        let extractor = ChromaExtractor::new(chroma).map_err(bad)?;
        Ok(Self { proj, chroma_length: config.chroma_length, num_chroma: nc, extractor })
    }

    /// `(chroma_length, hidden)`: `frames` projected, repeated up to the length and cut there.
    fn chroma_states(&self, frames: &[Vec<f32>], device: Device, kind: Kind) -> Tensor {
        let flat: Vec<f32> = frames.iter().flatten().copied().collect();
        let x = Tensor::from_slice(&flat).view([frames.len() as i64, self.num_chroma]).to_device(device);
        let x = match &self.proj {
            Some((w, b)) => x.to_kind(w.kind()).linear(w, Some(b)),
            None => x,
        };
        let repeat = (self.chroma_length + x.size()[0] - 1) / x.size()[0];
        x.repeat([repeat, 1]).narrow(0, 0, self.chroma_length).to_kind(kind)
    }

    /// transformers' null chroma: one frame, one-hot on bin 0.
    fn null_chroma(&self) -> Vec<Vec<f32>> {
        let mut frame = vec![0.0; self.num_chroma as usize];
        frame[0] = 1.0;
        vec![frame]
    }
}

impl MusicGen {
    /// Whether this is a melody checkpoint (it takes [`GenerationRequest::melody`]).
    pub fn is_melody(&self) -> bool {
        self.melody.is_some()
    }

    /// A melody checkpoint's chroma extractor settings.
    pub fn chroma_config(&self) -> Option<&ChromaConfig> {
        self.melody.as_ref().map(|m| m.extractor.config())
    }

    /// Chroma frames a melody checkpoint takes, from mono `samples` at the model's rate; `None`
    /// for a text-only checkpoint.
    pub fn chroma(&self, samples: &[f32]) -> Option<Vec<Vec<f32>>> {
        self.melody.as_ref().map(|m| m.extractor.one_hot(samples))
    }

    /// The batch's decoder state on a melody checkpoint, with room for `steps` positions after the
    /// conditioning: conditional rows, then (when `guided`) unconditional rows.
    pub(crate) fn melody_state(
        &self,
        melody: &Melody,
        requests: &[&GenerationRequest],
        guided: bool,
        steps: i64,
    ) -> Result<DecoderState> {
        let (dev, kind, h) = (self.options.device, self.decoder.kind(), self.config.decoder.hidden_size);
        let mut texts: Vec<&str> = requests.iter().map(|r| r.prompt.as_str()).collect();
        if guided {
            texts.extend(requests.iter().map(|r| if r.guided() { r.negative_prompt.as_str() } else { "" }));
        }
        let present: Vec<&str> = texts.iter().copied().filter(|t| !t.is_empty()).collect();
        let (states, lens) = if present.is_empty() {
            (Tensor::zeros([0, 0, h], (kind, dev)), Vec::new())
        } else {
            let batch = self.tokenize(&present)?;
            let lens = to_vec_i64(&batch.attention_mask.sum_dim_intlist(1, false, Kind::Int64))?;
            (self.conditioning(&batch.input_ids, &batch.attention_mask), lens)
        };
        let mut next = 0usize;
        let text: Vec<Tensor> = texts
            .iter()
            .map(|t| {
                if t.is_empty() {
                    return Tensor::zeros([0, h], (kind, dev));
                }
                next += 1;
                states.get(next as i64 - 1).narrow(0, 0, lens[next - 1])
            })
            .collect();
        let null = melody.chroma_states(&melody.null_chroma(), dev, kind);
        let n = requests.len();
        let mut rows: Vec<Tensor> = (0..n)
            .map(|i| {
                let chroma = match requests[i].melody.is_empty() {
                    true => null.shallow_clone(),
                    false => melody.chroma_states(&requests[i].melody, dev, kind),
                };
                Tensor::cat(&[chroma, text[i].shallow_clone()], 0)
            })
            .collect();
        if guided {
            for (i, r) in requests.iter().enumerate() {
                // No negative prompt: zeros as long as the prompt's states.
                let text = if r.guided() && !r.negative_prompt.is_empty() {
                    text[n + i].shallow_clone()
                } else {
                    text[i].zeros_like()
                };
                rows.push(Tensor::cat(&[null.shallow_clone(), text], 0));
            }
        }
        let lens: Vec<i64> = rows.iter().map(|r| r.size()[0]).collect();
        let width = lens.iter().copied().max().unwrap_or(0);
        let padded = Tensor::zeros([rows.len() as i64, width, h], (kind, dev));
        for (i, row) in rows.iter().enumerate() {
            padded.get(i as i64).narrow(0, width - lens[i], lens[i]).copy_(row);
        }
        Ok(self.decoder.new_prefixed_state(&padded, &lens, steps))
    }
}

impl MusicGen {
    /// A melody only on a melody checkpoint, with frames of its width; a melody checkpoint neither
    /// continues clips nor extends past one window (audiocraft conditions each extension on its own
    /// slice of the melody, which is not implemented).
    pub(crate) fn validate_melody(&self, r: &GenerationRequest) -> Result<()> {
        let bad = |field, message: String| Err(MusicgenError::InvalidRequest { field, message });
        let Some(melody) = &self.melody else {
            if !r.melody.is_empty() {
                return bad(
                    "melody",
                    "this checkpoint is not a melody checkpoint (model_type musicgen)".into(),
                );
            }
            return Ok(());
        };
        let width = melody.num_chroma as usize;
        if r.melody.iter().any(|f| f.len() != width || f.iter().any(|v| !v.is_finite())) {
            return bad("melody", format!("chroma frames must hold {width} finite values"));
        }
        if !r.prompt_codes.is_empty() {
            return bad(
                "audio_prompt",
                "a melody checkpoint does not continue clips (send melody instead)".into(),
            );
        }
        if r.frames > self.window_frames() {
            let (window, s) = (self.window_frames(), self.window_s());
            return bad(
                "duration_s",
                format!(
                    "a melody checkpoint generates one window: at most {window} frames ({s} s), got {}",
                    r.frames
                ),
            );
        }
        Ok(())
    }
}
