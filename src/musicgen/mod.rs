//! Native MusicGen over tch: T5 text encoder, decoder with KV cache and classifier-free guidance,
//! EnCodec decoder, streaming decode. Pure compute: no gRPC, no resource bookkeeping.
//!
//! [`MusicGen::load`] reads a Hugging Face `facebook/musicgen-*` directory; [`MusicGen::generate`] runs a
//! batch of [`GenerationRequest`]s and streams their audio through a callback (or an [`Observer`], which
//! also hears each request's end and has a seam inside every decoding step). Every entry point enters
//! `no_grad` itself, because grad mode is per thread in libtorch.

pub mod clip_encoder;
mod conditioning;
pub use crate::checkpoint::config;
mod decoder;
mod encodec;
pub mod error;
mod generate;
pub mod inspect;
pub mod kernels;
mod melody;
mod observer;
mod picker;
mod rows;
pub mod sampling;
mod stream;
mod t5;
pub mod tokenizer;
pub mod weights;

use std::path::Path;

use tch::{Device, Kind, Tensor};

pub use clip_encoder::AudioEncoder;
pub use config::{GenerationConfig, MusicgenConfig};
pub use error::MusicgenError;
pub use generate::{AudioChunkOut, GenerationRequest, GenerationStats};
pub use inspect::inspect;
pub use observer::Observer;
pub use sampling::{SamplingMode, SamplingParams};
pub use weights::DType;

use decoder::Decoder;
use encodec::EncodecDecoder;
use error::Result;
use t5::T5Encoder;
use tokenizer::{PromptBatch, PromptTokenizer};
use weights::WeightLoader;

/// Where and in which precision each part runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Device of every tensor.
    pub device: Device,
    /// Decoder precision: the part a decoding step streams from memory.
    pub decoder_dtype: DType,
    /// T5 precision; f32 by default because T5 overflows in f16.
    pub text_dtype: DType,
}

impl LoadOptions {
    /// Each part in the type [`DType::parts`] gives it: the decoder in `dtype`, T5 in f32 unless
    /// `dtype` is bf16, EnCodec in f32 (on the CPU with its LSTM's hidden-to-hidden weights in f16
    /// unless `dtype` is f32: [`MusicGen::load_with`]).
    pub fn new(device: Device, dtype: DType) -> Self {
        let parts = dtype.parts();
        Self { device, decoder_dtype: parts.decoder, text_dtype: parts.text_encoder }
    }
}

/// A loaded MusicGen model.
pub struct MusicGen {
    config: MusicgenConfig,
    generation: GenerationConfig,
    options: LoadOptions,
    tokenizer: PromptTokenizer,
    t5: T5Encoder,
    enc_to_dec: Option<(Tensor, Tensor)>,
    decoder: Decoder,
    codec: EncodecDecoder,
    extend_stride_s: f64,
    /// A melody checkpoint's chroma projection and extractor.
    melody: Option<melody::Melody>,
}

/// audiocraft's default `extend_stride`: a window past the first adds this many seconds.
pub const DEFAULT_EXTEND_STRIDE_S: f64 = 18.0;

impl MusicGen {
    /// Loads `dir` (config.json, generation_config.json, tokenizer.json and the weights in any layout
    /// [`crate::checkpoint`] reads) with the decoder in `dtype` (see [`LoadOptions::new`]).
    pub fn load(dir: &Path, device: Device, dtype: DType) -> Result<Self> {
        Self::load_with(dir, LoadOptions::new(device, dtype))
    }

    /// Loads `dir` with explicit per-part options. What the folder is comes first: a config Maestro
    /// does not serve is [`MusicgenError::Unsupported`] before any weight is read.
    pub fn load_with(dir: &Path, options: LoadOptions) -> Result<Self> {
        let _guard = tch::no_grad_guard();
        if options.decoder_dtype.is_quantised() && options.device != Device::Cpu {
            // The int8 and int4 products are the CPU kernels'; on a GPU f16 reads as few bytes per FLOP.
            return Err(MusicgenError::Unsupported(format!(
                "{} weights run on the CPU only: use f16 on a GPU",
                options.decoder_dtype
            )));
        }
        crate::checkpoint::kind::check_config_file(&dir.join("config.json"))?;
        let config = MusicgenConfig::from_file(&dir.join("config.json"))?;
        let generation = GenerationConfig::from_file_or_default(&dir.join("generation_config.json"))?;
        let tokenizer = PromptTokenizer::from_file(&dir.join("tokenizer.json"))?;
        let file = crate::checkpoint::Checkpoint::open_dir(dir)?;
        let w = WeightLoader::new(&file, options.device);
        let t5 = T5Encoder::load(&w, &config.text_encoder, weights::kind(options.text_dtype))?;
        let (d_text, d_dec) = (config.text_encoder.d_model, config.decoder.hidden_size);
        // As transformers: the projection exists when the widths differ and the decoder does not
        // declare a cross-attention width (the config check refuses the combinations it cannot run).
        let enc_to_dec = if d_text != d_dec && config.decoder.cross_attention_hidden_size.is_none() {
            let kind = weights::kind(options.text_dtype);
            Some((
                w.tensor("enc_to_dec_proj.weight", &[d_dec, d_text], kind)?,
                w.tensor("enc_to_dec_proj.bias", &[d_dec], kind)?,
            ))
        } else {
            None
        };
        let melody = if config.is_melody() {
            Some(melody::Melody::load(&w, &config, dir, weights::kind(options.text_dtype))?)
        } else {
            None
        };
        let decoder_kind = weights::kind(options.decoder_dtype);
        let format = match options.decoder_dtype {
            DType::Int8 => decoder::Format::Int8,
            DType::Int4 => decoder::Format::Int4,
            _ => decoder::Format::Float,
        };
        let decoder =
            Decoder::load(&w, &config.decoder, (decoder_kind, format), options.device, melody.is_none())?;
        // A reduced-precision decoder on the CPU gets the codec's recurrent weights in f16 as well:
        // an f32 load keeps the whole codec in f32, transformers' arithmetic.
        let recurrent = if options.device == Device::Cpu && options.decoder_dtype != DType::F32 {
            Kind::Half
        } else {
            Kind::Float
        };
        let codebooks = config.decoder.channel_codebooks();
        let codec = EncodecDecoder::load(&w, &config.audio_encoder, codebooks, recurrent)?;
        let extend_stride_s = DEFAULT_EXTEND_STRIDE_S;
        Ok(Self {
            config,
            generation,
            options,
            tokenizer,
            t5,
            enc_to_dec,
            decoder,
            codec,
            extend_stride_s,
            melody,
        })
    }

    /// Output sample rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.config.audio_encoder.sampling_rate as u32
    }

    /// Output channels (1 mono, 2 stereo).
    pub fn channels(&self) -> usize {
        self.config.decoder.audio_channels as usize
    }

    /// Frames per second of audio.
    pub fn frame_rate(&self) -> f64 {
        self.config.audio_encoder.frame_rate() as f64
    }

    /// Samples per frame and channel.
    pub fn hop_length(&self) -> usize {
        self.config.audio_encoder.hop_length() as usize
    }

    /// Codebooks predicted per step.
    pub fn num_codebooks(&self) -> usize {
        self.config.decoder.num_codebooks as usize
    }

    /// Codes per codebook: the upper bound for `top_k`.
    pub fn codebook_size(&self) -> usize {
        self.config.decoder.vocab_size as usize
    }

    /// Frames of one window, the longest stretch decoded in one go (`max_length` of the generation
    /// config); longer requests extend window by window.
    pub fn window_frames(&self) -> usize {
        self.generation.max_length.max(1) as usize
    }

    /// One window in seconds (30 for the published models).
    pub fn window_s(&self) -> f64 {
        self.window_frames() as f64 / self.frame_rate()
    }

    /// Sets how far each window past the first advances, in seconds (audiocraft's `extend_stride`,
    /// [`DEFAULT_EXTEND_STRIDE_S`] by default).
    pub fn set_extend_stride_s(&mut self, seconds: f64) {
        self.extend_stride_s = seconds;
    }

    /// The extend stride in frames: at least one, and short enough to leave the next window a prompt
    /// of at least one frame.
    pub fn extend_stride_frames(&self) -> usize {
        let frames = (self.extend_stride_s * self.frame_rate()).round().max(1.0) as usize;
        frames.min(self.window_frames().saturating_sub(1)).max(1)
    }

    /// Frames for `duration_s` seconds of audio (at least one).
    pub fn frames_for(&self, duration_s: f64) -> usize {
        ((duration_s * self.frame_rate()).round() as usize).max(1)
    }

    /// Bytes of decoder weights one decoding step reads, whatever the batch: every layer's projections
    /// and feed-forward plus the LM heads (embedding rows and cross-attention K/V are not re-read).
    pub fn decoder_step_bytes(&self) -> u64 {
        let d = &self.config.decoder;
        let (h, f) = (d.hidden_size as u64, d.ffn_dim as u64);
        // Self-attention's four projections, and cross-attention's query and output but for a melody
        // decoder.
        let projections = if self.melody.is_some() { 4 } else { 6 };
        let dtype = self.options.decoder_dtype;
        let per_layer = projections * dtype.matrix_bytes(h, h)
            + dtype.matrix_bytes(f, h)
            + dtype.matrix_bytes(h, f)
            + 6 * h * dtype.activation().bytes();
        d.num_hidden_layers as u64 * per_layer
            + dtype.matrix_bytes(d.num_codebooks as u64 * d.vocab_size as u64, h)
    }

    /// Bytes of self-attention cache one decoding step reads over `positions` cached positions for
    /// `rows` decoder rows (a guided request is two): every layer's keys and values, in the kind the
    /// cache takes at that row count (f16 beside quantised weights where the fused step runs).
    pub fn decoder_cache_bytes(&self, rows: i64, positions: u64) -> u64 {
        let d = &self.config.decoder;
        let element = self.decoder.cache_kind(rows).elt_size_in_bytes() as u64;
        d.num_hidden_layers as u64 * 2 * rows as u64 * d.hidden_size as u64 * positions * element
    }

    /// The checkpoint's generation defaults.
    pub fn generation_defaults(&self) -> &GenerationConfig {
        &self.generation
    }

    /// The checkpoint's configuration.
    pub fn config(&self) -> &MusicgenConfig {
        &self.config
    }

    /// Device and precisions the model was loaded with.
    pub fn options(&self) -> LoadOptions {
        self.options
    }

    /// Tokenizes prompts into a padded batch on the model's device.
    pub fn tokenize(&self, prompts: &[&str]) -> Result<PromptBatch> {
        self.tokenizer.encode_batch(prompts, self.options.device)
    }

    /// T5's last hidden states `(batch, seq, d_model)` in f32.
    pub fn encode_text(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        self.t5.forward(input_ids, attention_mask).to_kind(Kind::Float)
    }

    /// Encoder states as the decoder sees them: projected, zeroed on padding, in the decoder's kind.
    fn conditioning(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Tensor {
        let mut states = self.t5.forward(input_ids, attention_mask);
        if let Some((w, b)) = &self.enc_to_dec {
            states = states.linear(w, Some(b));
        }
        let mask = attention_mask.unsqueeze(-1).to_kind(states.kind());
        (states * mask).to_kind(self.decoder.kind())
    }

    /// Teacher-forced logits with classifier-free guidance, shaped like transformers' output:
    /// `(batch·codebooks, steps, vocab)` in f32 for `decoder_input_ids` `(batch·codebooks, steps)`.
    pub fn guided_logits(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        decoder_input_ids: &Tensor,
        guidance_scale: f64,
    ) -> Tensor {
        let _guard = tch::no_grad_guard();
        let cond = self.conditioning(input_ids, attention_mask);
        let (states, mask) = with_unconditional(&cond, attention_mask);
        let (b, c) = (input_ids.size()[0], self.config.decoder.num_codebooks);
        let steps = decoder_input_ids.size()[1];
        let codes = decoder_input_ids.view([b, c, steps]).repeat([2, 1, 1]);
        let mut state = self.decoder.new_state(&states, &mask, steps);
        let logits = self.decoder.forward(&codes, &mut state).to_kind(Kind::Float);
        let (cond, uncond) = (logits.narrow(0, 0, b), logits.narrow(0, b, b));
        let guided = &uncond + (&cond - &uncond) * guidance_scale;
        guided.reshape([b * c, steps, -1])
    }

    /// Decodes codes `(batch, codebooks, frames)` to audio `(batch, channels, frames·hop)` in one pass.
    pub fn decode_codes(&self, codes: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        let codes = codes.to_device(self.options.device);
        if self.channels() == 1 {
            return self.codec.decode(&codes);
        }
        let c = self.config.decoder.num_codebooks;
        let pick = |first: i64| {
            let idx = Tensor::arange_start_step(first, c, 2, (Kind::Int64, codes.device()));
            self.codec.decode(&codes.index_select(1, &idx))
        };
        Tensor::cat(&[pick(0), pick(1)], 1)
    }
}

impl MusicGen {
    /// Decodes codes `(1, codebooks, frames)` through the streaming path, one frame arriving at a time
    /// as during generation, calling `on_chunk(start_frame, audio)` with audio `(channels, samples)`.
    pub fn stream_codes(
        &self,
        codes: &Tensor,
        chunk_frames: usize,
        mut on_chunk: impl FnMut(usize, Tensor),
    ) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let (c, frames) = (codes.size()[1] as usize, codes.size()[2]);
        let flat = sampling::to_vec_i64(codes)?;
        let channels = self.channels();
        let slice = |ch: usize, from: i64, to: i64| -> Vec<i64> {
            (ch..c)
                .step_by(channels)
                .flat_map(|k| {
                    flat[k * frames as usize + from as usize..k * frames as usize + to as usize].to_vec()
                })
                .collect()
        };
        let mut stream = stream::AudioStream::new(channels, frames, chunk_frames as i64, self.options.device);
        for available in 1..=frames {
            if let Some(chunk) = stream.advance(&self.codec, available, &slice) {
                on_chunk(chunk.start_frame as usize, chunk.audio);
            }
        }
        Ok(())
    }
}

/// Conditional rows followed by unconditional rows (zero states, all-zero mask), as transformers does.
fn with_unconditional(states: &Tensor, mask: &Tensor) -> (Tensor, Tensor) {
    (Tensor::cat(&[states, &states.zeros_like()], 0), Tensor::cat(&[mask, &mask.zeros_like()], 0))
}
