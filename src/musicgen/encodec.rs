//! The EnCodec decoder: residual quantizer lookup, first convolution, sequence-first LSTM with its
//! residual, then upsampling stages (ELU, transposed convolution, residual blocks) and a last convolution.
//! Convolutions fold weight norm at load and pad like transformers (reflect plus EnCodec's extra padding).
//! The stack is exposed in three parts so `stream` can carry the LSTM state across chunks.

use tch::{Kind, Tensor};

use super::config::EncodecConfig;
use super::error::{MusicgenError, Result};
use super::weights::WeightLoader;

struct Conv {
    weight: Tensor,
    /// For convolutions with at most [`FEW_OUTPUTS`] output channels: the taps stacked
    /// `(kernel · out, in)`, see [`Conv::forward`].
    taps: Option<Tensor>,
    bias: Tensor,
    stride: i64,
    dilation: i64,
    kernel: i64,
    causal: bool,
    reflect: bool,
}

impl Conv {
    fn load(
        w: &WeightLoader<'_>,
        cfg: &EncodecConfig,
        p: &str,
        io: (i64, i64),
        k: i64,
        dil: i64,
    ) -> Result<Self> {
        let kind = Kind::Float;
        let weight = w.conv_weight(&format!("{p}.conv"), &[io.1, io.0, k], kind)?;
        let taps = (io.1 <= FEW_OUTPUTS).then(|| weight.permute([2, 0, 1]).reshape([k * io.1, io.0]));
        Ok(Self {
            weight,
            taps,
            bias: w.tensor(&format!("{p}.conv.bias"), &[io.1], kind)?,
            stride: 1,
            dilation: dil,
            kernel: (k - 1) * dil + 1,
            causal: cfg.use_causal_conv,
            reflect: cfg.pad_mode == "reflect",
        })
    }

    /// Frames of input this convolution reads left and right of each output (stride 1).
    fn context(&self) -> (i64, i64) {
        let total = self.kernel - self.stride;
        if self.causal {
            (total, 0)
        } else {
            (total - total / 2, total / 2)
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let len = x.size()[2];
        let extra = (len + self.stride - 1) / self.stride * self.stride - len;
        let (left, right) = self.context();
        let padded = pad1d(x, left, right + extra, self.reflect);
        match &self.taps {
            Some(taps) if self.stride == 1 => self.shifted_sum(taps, &padded),
            _ => padded.conv1d(&self.weight, Some(&self.bias), [self.stride], [0], [self.dilation], 1),
        }
    }

    /// The convolution as one product of every tap with the whole input, then the taps' rows summed
    /// at their shifts. libtorch's CPU `conv1d` with one or two output channels (EnCodec's last
    /// convolution) takes a slow matrix-vector path; the codec column of the MusicGen benchmark's
    /// breakdown shows the whole codec's time.
    fn shifted_sum(&self, taps: &Tensor, padded: &Tensor) -> Tensor {
        let (batch, _, len) = padded.size3().expect("(batch, channels, samples)");
        let (out, k) = (self.bias.size()[0], taps.size()[0] / self.bias.size()[0]);
        let n = len - (k - 1) * self.dilation;
        let z = taps.matmul(padded).view([batch, k, out, len]);
        let mut y = z.select(1, 0).narrow(2, 0, n) + self.bias.view([1, out, 1]);
        for j in 1..k {
            y += z.select(1, j).narrow(2, j * self.dilation, n);
        }
        y
    }
}

/// Output channels up to which [`Conv`] sums shifted products instead of calling `conv1d`.
const FEW_OUTPUTS: i64 = 2;

/// transformers' `_pad1d`: reflect padding that first appends zeros when the input is too short.
fn pad1d(x: &Tensor, left: i64, right: i64, reflect: bool) -> Tensor {
    if !reflect {
        return x.constant_pad_nd([left, right]);
    }
    let len = x.size()[2];
    let max_pad = left.max(right);
    if len > max_pad {
        return x.pad([left, right], "reflect", None);
    }
    let extra = max_pad - len + 1;
    let padded = x.constant_pad_nd([0, extra]).pad([left, right], "reflect", None);
    let end = padded.size()[2] - extra;
    padded.narrow(2, 0, end)
}

/// A transposed convolution with kernel `2 × stride` (EnCodec's upsampling), computed as one matrix
/// product and an overlap-add: output frame `m` (`stride` samples) is the first half of input frame
/// `m`'s product plus the second half of frame `m − 1`'s. libtorch's own `conv_transpose1d` goes to
/// oneDNN on CPU, which builds a new primitive descriptor on every call: for streamed chunks that
/// setup cost more than the arithmetic (a third of the tiny model's run time, per `perf`). The
/// product comes out channel-major, so the overlap-add writes one preallocated output in place.
struct ConvT {
    /// `(out · kernel, in)`: row `o · kernel + j` is tap `j` of output channel `o`.
    weight: Tensor,
    bias: Tensor,
    out_channels: i64,
    stride: i64,
    trim: (i64, i64),
}

impl ConvT {
    fn load(w: &WeightLoader<'_>, cfg: &EncodecConfig, p: &str, io: (i64, i64), ratio: i64) -> Result<Self> {
        let k = 2 * ratio;
        let total = k - ratio;
        let right =
            if cfg.use_causal_conv { (total as f64 * cfg.trim_right_ratio).ceil() as i64 } else { total / 2 };
        let weight = w.conv_weight(&format!("{p}.conv"), &[io.0, io.1, k], Kind::Float)?;
        Ok(Self {
            weight: weight.permute([1, 2, 0]).reshape([io.1 * k, io.0]),
            bias: w.tensor(&format!("{p}.conv.bias"), &[io.1], Kind::Float)?.view([1, io.1, 1]),
            out_channels: io.1,
            stride: ratio,
            trim: (total - right, right),
        })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let (batch, _, frames) = x.size3().expect("(batch, channels, frames)");
        let (s, out) = (self.stride, self.out_channels);
        let products = self.weight.matmul(x).view([batch, out, 2 * s, frames]);
        let y = Tensor::empty([batch, out, frames + 1, s], (Kind::Float, x.device()));
        y.narrow(2, 0, frames).copy_(&products.narrow(2, 0, s).transpose(2, 3));
        let _ = y.narrow(2, frames, 1).zero_();
        let mut overlap = y.narrow(2, 1, frames);
        overlap += products.narrow(2, s, s).transpose(2, 3);
        let len = (frames + 1) * s;
        let mut y = y.view([batch, out, len]);
        y += &self.bias;
        y.narrow(2, self.trim.0, len - self.trim.0 - self.trim.1)
    }
}

struct ResBlock {
    inner: Conv,
    outer: Conv,
    shortcut: Option<Conv>,
}

impl ResBlock {
    /// ELU, dilated convolution, ELU, 1×1 convolution, plus the input (or its 1×1 shortcut).
    fn forward(&self, h: &Tensor) -> Tensor {
        let inner = self.inner.forward(&h.elu());
        let outer = self.outer.forward(&inner.elu());
        match &self.shortcut {
            Some(conv) => conv.forward(h) + outer,
            None => h + outer,
        }
    }
}

enum Stage {
    Elu,
    Up(ConvT),
    Res(ResBlock),
}

/// LSTM state `(h, c)`, each `(layers, batch, dim)`.
pub type LstmState = (Tensor, Tensor);

/// The EnCodec decoder weights: f32, except the LSTM's hidden-to-hidden weights where the loader
/// asks for f16 (see [`EncodecDecoder::load`]).
pub struct EncodecDecoder {
    codebooks: Tensor,
    codebook_size: i64,
    first: Conv,
    lstm_params: Vec<Tensor>,
    lstm_layers: i64,
    lstm_dim: i64,
    stages: Vec<Stage>,
    last: Conv,
    hop: i64,
}

impl EncodecDecoder {
    /// Loads `audio_encoder.decoder.*` and the codebooks of `num_quantizers` quantizers, the LSTM's
    /// hidden-to-hidden weights in `recurrent` (f32 or, on the CPU, f16 or bf16). Those weights are
    /// the only ones the codec reads once per frame rather than once per chunk: on the CPU they are
    /// half of its time in f32, which f16 halves again (docs/building.md, "The codec").
    pub fn load(
        w: &WeightLoader<'_>,
        cfg: &EncodecConfig,
        num_quantizers: i64,
        recurrent: Kind,
    ) -> Result<Self> {
        if cfg.norm_type != "weight_norm" {
            return Err(MusicgenError::Unsupported(format!("EnCodec norm_type {}", cfg.norm_type)));
        }
        let (p, nf) = ("audio_encoder.decoder.layers", cfg.num_filters);
        let mut scale = 1i64 << cfg.upsampling_ratios.len();
        let dim = scale * nf;
        let codebooks = (0..num_quantizers)
            .map(|q| {
                let key = format!("audio_encoder.quantizer.layers.{q}.codebook.embed");
                w.tensor(&key, &[cfg.codebook_size, cfg.codebook_dim()], Kind::Float)
            })
            .collect::<Result<Vec<_>>>()?;
        let first = Conv::load(w, cfg, &format!("{p}.0"), (cfg.hidden_size, dim), cfg.kernel_size, 1)?;
        let lstm_params = load_lstm(w, &format!("{p}.1.lstm"), (cfg.num_lstm_layers, dim), recurrent)?;
        let (mut stages, mut idx) = (Vec::new(), 2);
        for &ratio in &cfg.upsampling_ratios {
            let current = scale * nf;
            stages.push(Stage::Elu);
            stages.push(Stage::Up(ConvT::load(
                w,
                cfg,
                &format!("{p}.{}", idx + 1),
                (current, current / 2),
                ratio,
            )?));
            idx += 2;
            for j in 0..cfg.num_residual_layers {
                let dilation = cfg.dilation_growth_rate.pow(j as u32);
                stages.push(Stage::Res(load_res(w, cfg, &format!("{p}.{idx}"), current / 2, dilation)?));
                idx += 1;
            }
            scale /= 2;
        }
        stages.push(Stage::Elu);
        let last = Conv::load(
            w,
            cfg,
            &format!("{p}.{}", idx + 1),
            (nf, cfg.audio_channels),
            cfg.last_kernel_size,
            1,
        )?;
        Ok(Self {
            codebooks: Tensor::cat(&codebooks, 0),
            codebook_size: cfg.codebook_size,
            first,
            lstm_params,
            lstm_layers: cfg.num_lstm_layers,
            lstm_dim: dim,
            stages,
            last,
            hop: cfg.hop_length(),
        })
    }

    /// Samples per frame.
    pub fn hop(&self) -> i64 {
        self.hop
    }

    /// Decodes codes `(batch, quantizers, frames)` to audio `(batch, channels, frames·hop)`.
    pub fn decode(&self, codes: &Tensor) -> Tensor {
        let latent = self.first_conv(&self.embed(codes));
        let (seq, _) = self.lstm(&latent, None);
        self.upsample(&seq)
    }

    /// Sum of the codebook vectors: `(batch, dim, frames)` in f32.
    pub fn embed(&self, codes: &Tensor) -> Tensor {
        let q = codes.size()[1];
        let offsets = (Tensor::arange(q, (Kind::Int64, codes.device())) * self.codebook_size).view([1, q, 1]);
        let vectors = Tensor::embedding(&self.codebooks, &(codes + offsets), -1, false, false);
        vectors.sum_dim_intlist(1, false, Kind::Float).permute([0, 2, 1])
    }

    /// The first convolution, `(batch, hidden, n)` → `(batch, dim, n)`.
    pub fn first_conv(&self, latent: &Tensor) -> Tensor {
        self.first.forward(latent)
    }

    /// Frames the first convolution reads left and right of each output.
    pub fn first_context(&self) -> (i64, i64) {
        self.first.context()
    }

    /// The LSTM with its residual over `(batch, dim, n)`, continuing from `state` when given.
    pub fn lstm(&self, x: &Tensor, state: Option<&LstmState>) -> (Tensor, LstmState) {
        lstm_forward(&self.lstm_params, (self.lstm_layers, self.lstm_dim), x, state)
    }

    /// Upsampling stages and last convolution: `(batch, dim, n)` → `(batch, channels, n·hop)`.
    pub fn upsample(&self, x: &Tensor) -> Tensor {
        let mut h = x.shallow_clone();
        for stage in &self.stages {
            h = match stage {
                Stage::Elu => h.elu(),
                Stage::Up(conv) => conv.forward(&h),
                Stage::Res(block) => block.forward(&h),
            };
        }
        self.last.forward(&h)
    }

    /// Frames of LSTM output on each side of a frame that reach its samples after `upsample`, so
    /// a window decode equals the full decode except within this many frames of either edge. A
    /// transposed convolution (kernel 2 × stride, trimmed by less than a stride) mixes each input
    /// sample with one neighbour on either side; a convolution reads `context()` samples; each
    /// stage counts at its own rate. Rounded up, one more when the sum is whole.
    pub fn upsample_context(&self) -> i64 {
        let (mut rate, mut reach) = (1f64, 0f64);
        let conv_reach = |c: &Conv, rate: f64| {
            let (left, right) = c.context();
            left.max(right) as f64 / rate
        };
        for stage in &self.stages {
            match stage {
                Stage::Elu => {}
                Stage::Up(conv) => {
                    reach += 1.0 / rate;
                    rate *= conv.stride as f64;
                }
                Stage::Res(b) => {
                    let block = conv_reach(&b.inner, rate) + conv_reach(&b.outer, rate);
                    reach += block.max(b.shortcut.as_ref().map_or(0.0, |s| conv_reach(s, rate)));
                }
            }
        }
        reach += conv_reach(&self.last, rate);
        reach.floor() as i64 + 1
    }
}

fn load_res(w: &WeightLoader<'_>, cfg: &EncodecConfig, p: &str, dim: i64, dilation: i64) -> Result<ResBlock> {
    let hidden = dim / cfg.compress;
    let k = cfg.residual_kernel_size;
    let shortcut = if cfg.use_conv_shortcut {
        Some(Conv::load(w, cfg, &format!("{p}.shortcut"), (dim, dim), 1, 1)?)
    } else {
        None
    };
    Ok(ResBlock {
        inner: Conv::load(w, cfg, &format!("{p}.block.1"), (dim, hidden), k, dilation)?,
        outer: Conv::load(w, cfg, &format!("{p}.block.3"), (hidden, dim), 1, 1)?,
        shortcut,
    })
}

pub mod encoder;
mod lstm;

use lstm::{load_lstm, lstm_forward};

#[cfg(test)]
mod tests;
