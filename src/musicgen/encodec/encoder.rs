//! The EnCodec encoder and residual vector quantisation, as transformers' `EncodecModel.encode`
//! runs them for MusicGen (no normalisation, no chunking: the config check refuses both): a first
//! convolution, per downsampling ratio (reversed) residual blocks, ELU and a strided convolution,
//! then the LSTM with its residual, ELU and a last convolution; then, per quantizer, the nearest
//! codebook entry to what the previous ones left. Same weight norm and padding rules as the decoder.

use tch::{Kind, Tensor};

use super::{load_lstm, load_res, lstm_forward, Conv, ResBlock};
use crate::musicgen::config::EncodecConfig;
use crate::musicgen::error::{MusicgenError, Result};
use crate::musicgen::weights::WeightLoader;

enum Stage {
    Res(ResBlock),
    EluDown(Conv),
}

/// The EnCodec encoder weights and the quantizer's codebooks, in f32.
pub struct EncodecEncoder {
    first: Conv,
    stages: Vec<Stage>,
    lstm_params: Vec<Tensor>,
    lstm_shape: (i64, i64),
    last: Conv,
    /// One `(codebook_size, dim)` table per quantizer used.
    codebooks: Vec<Tensor>,
    hop: i64,
}

impl EncodecEncoder {
    /// Loads `audio_encoder.encoder.*` and the codebooks of `num_quantizers` quantizers.
    pub fn load(w: &WeightLoader<'_>, cfg: &EncodecConfig, num_quantizers: i64) -> Result<Self> {
        if cfg.norm_type != "weight_norm" {
            return Err(MusicgenError::Unsupported(format!("EnCodec norm_type {}", cfg.norm_type)));
        }
        let (p, nf) = ("audio_encoder.encoder.layers", cfg.num_filters);
        let first = Conv::load(w, cfg, &format!("{p}.0"), (cfg.audio_channels, nf), cfg.kernel_size, 1)?;
        let (mut stages, mut idx, mut scale) = (Vec::new(), 1, 1);
        for &ratio in cfg.upsampling_ratios.iter().rev() {
            let current = scale * nf;
            for j in 0..cfg.num_residual_layers {
                let dilation = cfg.dilation_growth_rate.pow(j as u32);
                stages.push(Stage::Res(load_res(w, cfg, &format!("{p}.{idx}"), current, dilation)?));
                idx += 1;
            }
            // The ELU is layer `idx`, the strided convolution the next.
            let mut down =
                Conv::load(w, cfg, &format!("{p}.{}", idx + 1), (current, 2 * current), 2 * ratio, 1)?;
            down.stride = ratio;
            down.taps = None;
            stages.push(Stage::EluDown(down));
            idx += 2;
            scale *= 2;
        }
        let dim = scale * nf;
        let lstm_params = load_lstm(w, &format!("{p}.{idx}.lstm"), (cfg.num_lstm_layers, dim), Kind::Float)?;
        let last =
            Conv::load(w, cfg, &format!("{p}.{}", idx + 2), (dim, cfg.hidden_size), cfg.last_kernel_size, 1)?;
        let codebooks = (0..num_quantizers)
            .map(|q| {
                let key = format!("audio_encoder.quantizer.layers.{q}.codebook.embed");
                w.tensor(&key, &[cfg.codebook_size, cfg.codebook_dim()], Kind::Float)
            })
            .collect::<Result<Vec<_>>>()?;
        let lstm_shape = (cfg.num_lstm_layers, dim);
        Ok(Self { first, stages, lstm_params, lstm_shape, last, codebooks, hop: cfg.hop_length() })
    }

    /// Samples per frame: a clip of `n` samples encodes to `ceil(n / hop)` frames.
    pub fn hop(&self) -> i64 {
        self.hop
    }

    /// The latent `(batch, dim, frames)` of audio `(batch, channels, samples)`.
    pub fn embed(&self, audio: &Tensor) -> Tensor {
        let mut h = self.first.forward(&audio.to_kind(Kind::Float));
        for stage in &self.stages {
            h = match stage {
                Stage::Res(block) => block.forward(&h),
                Stage::EluDown(conv) => conv.forward(&h.elu()),
            };
        }
        let (h, _) = lstm_forward(&self.lstm_params, self.lstm_shape, &h, None);
        self.last.forward(&h.elu())
    }

    /// Codes `(batch, quantizers, frames)` of audio `(batch, channels, samples)`: per quantizer the
    /// codebook entry nearest the residual (transformers' `-(|x|² − 2x·e + |e|²)` arg-max).
    pub fn encode(&self, audio: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        let mut residual = self.embed(audio).permute([0, 2, 1]);
        let mut codes = Vec::with_capacity(self.codebooks.len());
        for table in &self.codebooks {
            let squared = residual.pow_tensor_scalar(2).sum_dim_intlist(-1, true, Kind::Float);
            let scores = -(squared - residual.matmul(&table.tr()) * 2.0
                + table.pow_tensor_scalar(2).sum_dim_intlist(-1, false, Kind::Float));
            let index = scores.argmax(-1, false);
            residual -= Tensor::embedding(table, &index, -1, false, false);
            codes.push(index);
        }
        Tensor::stack(&codes, 1)
    }
}
