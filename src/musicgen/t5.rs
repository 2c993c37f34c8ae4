//! The T5 text encoder: bidirectional relative position buckets (computed once, shared by every layer),
//! unscaled attention, RMS layer norm with f32 variance, ReLU (or gated-GELU) feed-forward. A prompt
//! is a few tokens, so its projections go through the CPU kernel in blocks of rows.

use tch::{Kind, Tensor};

use super::config::T5Config;
use super::error::Result;
use super::kernels::linear_blocked as linear;
use super::weights::WeightLoader;

struct T5Layer {
    qkv: Tensor,
    o: Tensor,
    attn_norm: Tensor,
    wi: Vec<Tensor>,
    wo: Tensor,
    ff_norm: Tensor,
}

/// The T5 encoder stack.
pub struct T5Encoder {
    cfg: T5Config,
    embed: Tensor,
    relative_bias: Tensor,
    layers: Vec<T5Layer>,
    final_norm: Tensor,
    kind: Kind,
}

impl T5Encoder {
    /// Loads `text_encoder.*` in `kind`.
    pub fn load(w: &WeightLoader<'_>, cfg: &T5Config, kind: Kind) -> Result<Self> {
        let p = "text_encoder.encoder";
        let (d, inner) = (cfg.d_model, cfg.num_heads * cfg.d_kv);
        let embed = w.tied(
            &["text_encoder.shared.weight", "text_encoder.encoder.embed_tokens.weight"],
            &[cfg.vocab_size, d],
            kind,
        )?;
        let relative_bias = w.tensor(
            &format!("{p}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
            &[cfg.relative_attention_num_buckets, cfg.num_heads],
            kind,
        )?;
        let gated = cfg.feed_forward_proj == "gated-gelu";
        let mut layers = Vec::with_capacity(cfg.num_layers as usize);
        for i in 0..cfg.num_layers {
            let a = format!("{p}.block.{i}.layer.0");
            let f = format!("{p}.block.{i}.layer.1");
            let proj = |n: &str| w.tensor(&format!("{a}.SelfAttention.{n}.weight"), &[inner, d], kind);
            let wi = if gated {
                vec![
                    w.tensor(&format!("{f}.DenseReluDense.wi_0.weight"), &[cfg.d_ff, d], kind)?,
                    w.tensor(&format!("{f}.DenseReluDense.wi_1.weight"), &[cfg.d_ff, d], kind)?,
                ]
            } else {
                vec![w.tensor(&format!("{f}.DenseReluDense.wi.weight"), &[cfg.d_ff, d], kind)?]
            };
            layers.push(T5Layer {
                qkv: Tensor::cat(&[proj("q")?, proj("k")?, proj("v")?], 0),
                o: w.tensor(&format!("{a}.SelfAttention.o.weight"), &[d, inner], kind)?,
                attn_norm: w.tensor(&format!("{a}.layer_norm.weight"), &[d], kind)?,
                wi,
                wo: w.tensor(&format!("{f}.DenseReluDense.wo.weight"), &[d, cfg.d_ff], kind)?,
                ff_norm: w.tensor(&format!("{f}.layer_norm.weight"), &[d], kind)?,
            });
        }
        let final_norm = w.tensor(&format!("{p}.final_layer_norm.weight"), &[d], kind)?;
        Ok(Self { cfg: cfg.clone(), embed, relative_bias, layers, final_norm, kind })
    }

    /// Last hidden states `(batch, seq, d_model)` for int64 `input_ids` and `attention_mask`.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Tensor {
        let seq = input_ids.size()[1];
        let mask = (attention_mask.to_kind(Kind::Float).neg() + 1.0) * f64::from(f32::MIN);
        let bias = self.position_bias(seq) + mask.unsqueeze(1).unsqueeze(1).to_kind(self.kind);
        let mut h = Tensor::embedding(&self.embed, input_ids, -1, false, false);
        for layer in &self.layers {
            let normed = self.rms_norm(&h, &layer.attn_norm);
            h += self.attention(layer, &normed, &bias);
            let normed = self.rms_norm(&h, &layer.ff_norm);
            h += self.feed_forward(layer, &normed);
        }
        self.rms_norm(&h, &self.final_norm)
    }

    fn attention(&self, layer: &T5Layer, x: &Tensor, bias: &Tensor) -> Tensor {
        let (b, s) = (x.size()[0], x.size()[1]);
        let heads = |t: &Tensor| t.view([b, s, self.cfg.num_heads, self.cfg.d_kv]).transpose(1, 2);
        let qkv = linear(x, &layer.qkv).chunk(3, -1);
        let (q, k, v) = (heads(&qkv[0]), heads(&qkv[1]), heads(&qkv[2]));
        let scores = q.matmul(&k.transpose(2, 3)) + bias;
        let out = scores.softmax(-1, Kind::Float).to_kind(self.kind).matmul(&v);
        linear(&out.transpose(1, 2).reshape([b, s, -1]), &layer.o)
    }

    fn feed_forward(&self, layer: &T5Layer, x: &Tensor) -> Tensor {
        let hidden = match layer.wi.as_slice() {
            [wi] => linear(x, wi).relu(),
            [wi0, wi1] => linear(x, wi0).gelu("tanh") * linear(x, wi1),
            _ => unreachable!("one or two input projections"),
        };
        linear(&hidden, &layer.wo)
    }

    /// RMS norm with the variance in f32, as transformers' `T5LayerNorm`.
    fn rms_norm(&self, h: &Tensor, weight: &Tensor) -> Tensor {
        let variance = h.to_kind(Kind::Float).pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
        let normed = h * (variance + self.cfg.layer_norm_epsilon).rsqrt();
        weight * normed.to_kind(self.kind)
    }

    /// `(1, heads, seq, seq)` relative position bias, with the bucket arithmetic in f32 like transformers.
    fn position_bias(&self, seq: i64) -> Tensor {
        let opts = (Kind::Int64, self.embed.device());
        let context = Tensor::arange(seq, opts).unsqueeze(1);
        let memory = Tensor::arange(seq, opts).unsqueeze(0);
        let relative = memory - context;
        let half = self.cfg.relative_attention_num_buckets / 2;
        let max_exact = half / 2;
        let sign = relative.gt(0).to_kind(Kind::Int64) * half;
        let distance = relative.abs();
        let ratio = (self.cfg.relative_attention_max_distance as f64 / max_exact as f64).ln();
        let large = ((distance.to_kind(Kind::Float) / max_exact as f64).log() / ratio
            * (half - max_exact) as f64)
            .to_kind(Kind::Int64)
            + max_exact;
        let large = large.clamp_max(half - 1);
        let buckets = sign + distance.where_self(&distance.lt(max_exact), &large);
        Tensor::embedding(&self.relative_bias, &buckets, -1, false, false).permute([2, 0, 1]).unsqueeze(0)
    }
}
