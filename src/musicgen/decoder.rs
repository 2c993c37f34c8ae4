//! The MusicGen decoder: summed codebook embeddings, sinusoidal positions, pre-LN layers (causal
//! self-attention over a preallocated KV cache, cross-attention whose K/V are computed once, GELU FFN) and
//! one LM head per codebook, with all heads fused into a single matrix.
//!
//! A melody checkpoint's decoder has no cross-attention: its conditioning (projected chroma, then
//! projected text) is a prefix of the decoder's own sequence, fed with the first codes. Rows of a
//! batch whose prefixes differ in length are left-padded, the padding masked from every query and the
//! positions shifted, so each row computes what it would alone.

use tch::{Device, Kind, Tensor};

use super::config::DecoderConfig;
use super::error::Result;
use super::kernels;
use super::weights::WeightLoader;

/// nn.LayerNorm's default epsilon; the decoder config does not carry one.
const LAYER_NORM_EPS: f64 = 1e-5;

struct Norm {
    weight: Tensor,
    bias: Tensor,
}

impl Norm {
    fn load(w: &WeightLoader<'_>, prefix: &str, h: i64, kind: Kind) -> Result<Self> {
        Ok(Self {
            weight: w.tensor(&format!("{prefix}.weight"), &[h], kind)?.contiguous(),
            bias: w.tensor(&format!("{prefix}.bias"), &[h], kind)?.contiguous(),
        })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.weight.size()[0];
        x.layer_norm([h], Some(&self.weight), Some(&self.bias), LAYER_NORM_EPS, true)
    }
}

struct Cross {
    norm: Norm,
    q: Proj,
    kv: Tensor,
    out: Proj,
}

struct Layer {
    self_norm: Norm,
    qkv: Proj,
    self_out: Proj,
    /// None in a melody decoder.
    cross: Option<Cross>,
    ffn_norm: Norm,
    fc1: Proj,
    fc2: Proj,
}

/// Per-generation decoder state: KV caches sized for the whole generation and the cross-attention K/V.
pub struct DecoderState {
    self_k: Vec<Tensor>,
    self_v: Vec<Tensor>,
    cross_k: Vec<Tensor>,
    cross_v: Vec<Tensor>,
    cross_mask: Tensor,
    /// The same mask as `(batch, seq)` f32, for the native step.
    cross_mask_f32: Tensor,
    positions: Tensor,
    pos: i64,
    capacity: i64,
    prefix: Option<prefix::Prefix>,
}

/// The decoder weights.
pub struct Decoder {
    cfg: DecoderConfig,
    embed: Tensor,
    codebook_offsets: Tensor,
    layers: Vec<Layer>,
    final_norm: Norm,
    heads: Proj,
    kind: Kind,
}

impl Decoder {
    /// Loads `decoder.*` in `kind`, the projections and LM heads held in `format` ([`proj::Proj`]); `cross` says whether the layers cross-attend (not in a melody checkpoint).
    pub fn load(
        w: &WeightLoader<'_>,
        cfg: &DecoderConfig,
        (kind, format): (Kind, Format),
        device: Device,
        cross: bool,
    ) -> Result<Self> {
        let (h, f, v, c) = (cfg.hidden_size, cfg.ffn_dim, cfg.vocab_size, cfg.num_codebooks);
        let p = "decoder.model.decoder";
        let embeds = (0..c)
            .map(|k| w.tensor(&format!("{p}.embed_tokens.{k}.weight"), &[v + 1, h], kind))
            .collect::<Result<Vec<_>>>()?;
        let heads = (0..c)
            .map(|k| w.tensor(&format!("decoder.lm_heads.{k}.weight"), &[v, h], kind))
            .collect::<Result<Vec<_>>>()?;
        let arena = Arena::new(arena_sizes(cfg, kind, format, cross), device);
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| load_layer(w, &format!("{p}.layers.{i}"), (h, f), (kind, format), cross, &arena))
            .collect::<Result<Vec<_>>>()?;
        let codebook_offsets = (Tensor::arange(c, (Kind::Int64, device)) * (v + 1)).view([1, c, 1]);
        Ok(Self {
            cfg: cfg.clone(),
            embed: Tensor::cat(&embeds, 0),
            codebook_offsets,
            layers,
            final_norm: Norm::load(w, &format!("{p}.layer_norm"), h, kind)?,
            heads: Proj::new(Tensor::cat(&heads, 0), format, &arena),
            kind,
        })
    }

    /// The decoder's element type.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The self-attention caches' element type for a state of `rows` rows: f16 beside int8 or int4 weights
    /// where the native step will run it (half the bytes a late step reads from the cache: 386 MB
    /// at step 503 of musicgen-small in f32, as much again as its int8 weights), else the decoder's
    /// own. The op-by-op path widens an f16 cache per step, which the native step never needs.
    pub(super) fn cache_kind(&self, rows: i64) -> Kind {
        let native = rows <= kernels::max_rows(self.kind)
            && kernels::supported()
            && self.layers.iter().all(|l| l.cross.is_some());
        if self.heads.format() != Format::Float && native {
            Kind::Half
        } else {
            self.kind
        }
    }

    /// A state for `capacity` decoder positions, with the cross-attention K/V of `encoder_states`
    /// `(batch, seq, hidden)` and an additive mask from `encoder_mask` `(batch, seq)` (0 = padding).
    pub fn new_state(&self, encoder_states: &Tensor, encoder_mask: &Tensor, capacity: i64) -> DecoderState {
        let (b, dev) = (encoder_states.size()[0], encoder_states.device());
        let (heads, hd) = (self.cfg.num_attention_heads, self.cfg.head_dim());
        let enc = encoder_states.to_kind(self.kind);
        // Rows whose states are all zero (guidance's unconditional half) have zero keys and values,
        // the projections having no bias: only the others go through the products, which for a
        // short prompt run through the kernel in one pass. `ne` keeps a row with a NaN live, so a
        // NaN still shows in its logits instead of turning into zeros.
        let live = enc.abs().amax([1, 2], false).ne(0.0).nonzero().view([-1]);
        let all_live = live.size()[0] == b;
        let enc_live = if all_live { enc.shallow_clone() } else { enc.index_select(0, &live) };
        let (mut cross_k, mut cross_v) = (Vec::new(), Vec::new());
        for layer in self.layers.iter().filter_map(|l| l.cross.as_ref()) {
            let projected = kernels::linear_blocked(&enc_live, &layer.kv);
            let kv = if all_live {
                projected
            } else {
                let mut shape = enc.size();
                shape[2] = projected.size()[2];
                Tensor::zeros(shape.as_slice(), (self.kind, dev)).index_copy(0, &live, &projected)
            };
            let kv = kv.chunk(2, -1);
            cross_k.push(split_heads(&kv[0], heads, hd).contiguous());
            cross_v.push(split_heads(&kv[1], heads, hd).contiguous());
        }
        let cache = || Tensor::zeros([b, heads, capacity, hd], (self.cache_kind(b), dev));
        DecoderState {
            self_k: self.layers.iter().map(|_| cache()).collect(),
            self_v: self.layers.iter().map(|_| cache()).collect(),
            cross_k,
            cross_v,
            cross_mask: additive_mask(encoder_mask, self.kind),
            cross_mask_f32: additive_mask(encoder_mask, Kind::Float).view([b, -1]),
            positions: sinusoids(capacity.max(self.cfg.max_position_embeddings), self.cfg.hidden_size, dev)
                .to_kind(self.kind),
            pos: 0,
            capacity,
            prefix: None,
        }
    }

    /// Logits `(batch, codebooks, steps, vocab)` for codes `(batch, codebooks, steps)` appended at the
    /// state's position. Panics if the cache capacity would be exceeded (callers size it up front).
    pub fn forward(&self, codes: &Tensor, state: &mut DecoderState) -> Tensor {
        let steps = codes.size()[2];
        let prefix = state.prefix.as_ref().filter(|p| p.pending).map_or(0, |p| p.states.size()[1]);
        assert!(state.pos + prefix + steps <= state.capacity, "decoder cache overflow");
        if steps == 1 && state.prefix.is_none() {
            if let Some(logits) = self.native_step(codes, state) {
                state.pos += 1;
                return logits;
            }
        }
        self.forward_libtorch(codes, state)
    }

    /// [`Decoder::forward`] op by op through libtorch: any number of steps, any device.
    fn forward_libtorch(&self, codes: &Tensor, state: &mut DecoderState) -> Tensor {
        let steps = codes.size()[2];
        // transformers computes `embed_scale` but never applies it, so neither do we.
        let embedded = Tensor::embedding(&self.embed, &(codes + &self.codebook_offsets), -1, false, false);
        let mut h = embedded.sum_dim_intlist(1, false, self.kind);
        let mut prefixed = 0;
        if let Some(prefix) = state.prefix.as_mut().filter(|p| p.pending) {
            prefix.pending = false;
            prefixed = prefix.states.size()[1];
            h = Tensor::cat(&[&prefix.states, &h], 1);
        }
        let len = prefixed + steps;
        h += self.positions(state, len);
        let key_mask = self.key_mask(state, len);
        for (i, layer) in self.layers.iter().enumerate() {
            let normed = layer.self_norm.forward(&h);
            h = &h + self.self_attention(layer, i, &normed, key_mask.as_ref(), state);
            if let Some(cross) = &layer.cross {
                h = &h + self.cross_attention(cross, i, &cross.norm.forward(&h), state);
            }
            let ffn = layer.fc1.apply(&layer.ffn_norm.forward(&h)).gelu("none");
            h += layer.fc2.apply(&ffn);
        }
        state.pos += len;
        let h = if prefixed > 0 { h.narrow(1, prefixed, steps) } else { h };
        let (b, c, v) = (codes.size()[0], self.cfg.num_codebooks, self.cfg.vocab_size);
        let logits = self.heads.apply(&self.final_norm.forward(&h));
        logits.view([b, steps, c, v]).permute([0, 2, 1, 3])
    }

    fn self_attention(
        &self,
        layer: &Layer,
        i: usize,
        x: &Tensor,
        key_mask: Option<&Tensor>,
        state: &mut DecoderState,
    ) -> Tensor {
        let (heads, hd) = (self.cfg.num_attention_heads, self.cfg.head_dim());
        let (pos, steps) = (state.pos, x.size()[1]);
        let qkv = layer.qkv.apply(x).chunk(3, -1);
        state.self_k[i].narrow(2, pos, steps).copy_(&split_heads(&qkv[1], heads, hd));
        state.self_v[i].narrow(2, pos, steps).copy_(&split_heads(&qkv[2], heads, hd));
        let keys = state.self_k[i].narrow(2, 0, pos + steps).to_kind(self.kind);
        let values = state.self_v[i].narrow(2, 0, pos + steps).to_kind(self.kind);
        let q = split_heads(&qkv[0], heads, hd);
        let scale = (hd as f64).powf(-0.5);
        let mask = match (steps > 1 && (pos > 0 || key_mask.is_some()), key_mask) {
            (true, Some(keys)) => Some(causal_mask(pos, steps, x.device(), self.kind) + keys),
            (true, None) => Some(causal_mask(pos, steps, x.device(), self.kind)),
            (false, keys) => keys.map(Tensor::shallow_clone),
        };
        let out = if let Some(mask) = mask {
            Tensor::scaled_dot_product_attention(&q, &keys, &values, Some(mask), 0.0, false, scale, false)
        } else {
            Tensor::scaled_dot_product_attention::<Tensor>(
                &q,
                &keys,
                &values,
                None,
                0.0,
                steps > 1,
                scale,
                false,
            )
        };
        layer.self_out.apply(&merge_heads(&out))
    }

    fn cross_attention(&self, layer: &Cross, i: usize, x: &Tensor, state: &DecoderState) -> Tensor {
        let (heads, hd) = (self.cfg.num_attention_heads, self.cfg.head_dim());
        let q = split_heads(&layer.q.apply(x), heads, hd);
        let scale = (hd as f64).powf(-0.5);
        let out = Tensor::scaled_dot_product_attention(
            &q,
            &state.cross_k[i],
            &state.cross_v[i],
            Some(&state.cross_mask),
            0.0,
            false,
            scale,
            false,
        );
        layer.out.apply(&merge_heads(&out))
    }
}

fn load_layer(
    w: &WeightLoader<'_>,
    p: &str,
    (h, f): (i64, i64),
    (kind, format): (Kind, Format),
    cross: bool,
    arena: &Arena,
) -> Result<Layer> {
    let proj = |name: &str| -> Result<Tensor> { w.tensor(&format!("{p}.{name}.weight"), &[h, h], kind) };
    let cross = if cross {
        Some(Cross {
            norm: Norm::load(w, &format!("{p}.encoder_attn_layer_norm"), h, kind)?,
            q: Proj::new(proj("encoder_attn.q_proj")?, format, arena),
            kv: Tensor::cat(&[proj("encoder_attn.k_proj")?, proj("encoder_attn.v_proj")?], 0),
            out: Proj::new(proj("encoder_attn.out_proj")?, format, arena),
        })
    } else {
        None
    };
    let qkv = [proj("self_attn.q_proj")?, proj("self_attn.k_proj")?, proj("self_attn.v_proj")?];
    Ok(Layer {
        self_norm: Norm::load(w, &format!("{p}.self_attn_layer_norm"), h, kind)?,
        qkv: Proj::new(Tensor::cat(&qkv, 0), format, arena),
        self_out: Proj::new(proj("self_attn.out_proj")?, format, arena),
        cross,
        ffn_norm: Norm::load(w, &format!("{p}.final_layer_norm"), h, kind)?,
        fc1: Proj::new(w.tensor(&format!("{p}.fc1.weight"), &[f, h], kind)?, format, arena),
        fc2: Proj::new(w.tensor(&format!("{p}.fc2.weight"), &[h, f], kind)?, format, arena),
    })
}

/// The [`Arena`] slots of every projection and the LM heads, in load order (any order fits: each
/// slot is sized on its own).
fn arena_sizes(cfg: &DecoderConfig, kind: Kind, format: Format, cross: bool) -> Vec<i64> {
    let (h, f) = (cfg.hidden_size, cfg.ffn_dim);
    let mut shapes = vec![(3 * h, h), (h, h), (f, h), (h, f)];
    if cross {
        shapes.extend([(h, h), (h, h)]);
    }
    let layers = shapes.iter().cycle().take(shapes.len() * cfg.num_hidden_layers as usize);
    let heads = (cfg.num_codebooks * cfg.vocab_size, h);
    layers.chain([&heads]).flat_map(|&(rows, cols)| Proj::arena_sizes(rows, cols, kind, format)).collect()
}

/// `(batch, seq, heads·hd)` → `(batch, heads, seq, hd)` view.
fn split_heads(x: &Tensor, heads: i64, hd: i64) -> Tensor {
    let (b, s) = (x.size()[0], x.size()[1]);
    x.view([b, s, heads, hd]).transpose(1, 2)
}

fn merge_heads(x: &Tensor) -> Tensor {
    let (b, s) = (x.size()[0], x.size()[2]);
    x.transpose(1, 2).reshape([b, s, -1])
}

/// A finite large negative: a fully masked row (the unconditional half of guidance) then averages its
/// values, which are exactly zero, instead of producing NaN as an all -inf row would.
fn mask_value(kind: Kind) -> f64 {
    if kind == Kind::Half {
        -3.0e4
    } else {
        -1.0e9
    }
}

fn additive_mask(mask: &Tensor, kind: Kind) -> Tensor {
    let keep = mask.to_kind(Kind::Float);
    ((keep.neg() + 1.0) * mask_value(kind)).to_kind(kind).unsqueeze(1).unsqueeze(1)
}

fn causal_mask(pos: i64, steps: i64, device: Device, kind: Kind) -> Tensor {
    let q = Tensor::arange(steps, (Kind::Int64, device)).unsqueeze(1) + pos;
    let k = Tensor::arange(pos + steps, (Kind::Int64, device)).unsqueeze(0);
    (k.gt_tensor(&q).to_kind(Kind::Float) * mask_value(kind)).to_kind(kind)
}

/// transformers' sinusoidal table: `[cos, sin]` halves, frequencies `exp(-i·ln(10000)/(half−1))`, f32.
fn sinusoids(n: i64, dim: i64, device: Device) -> Tensor {
    let half = dim / 2;
    let step = (10000f64).ln() / (half - 1) as f64;
    let freq = (Tensor::arange(half, (Kind::Float, device)) * -step).exp();
    let angles = Tensor::arange(n, (Kind::Float, device)).unsqueeze(1) * freq.unsqueeze(0);
    let table = Tensor::cat(&[angles.cos(), angles.sin()], 1);
    if dim % 2 == 1 {
        Tensor::cat(&[table, Tensor::zeros([n, 1], (Kind::Float, device))], 1)
    } else {
        table
    }
}

#[cfg(test)]
impl Decoder {
    /// Rounds every projection and LM head to ±`levels` per row or per `group` inputs, kept in f32
    /// ([`proj::fake_quantised`]), for the per-group measurement in `quality`.
    fn fake_quantise(&mut self, group: Option<i64>, levels: i64) {
        for layer in &mut self.layers {
            for proj in [&mut layer.qkv, &mut layer.self_out, &mut layer.fc1, &mut layer.fc2] {
                proj.fake_quantise(group, levels);
            }
            if let Some(cross) = &mut layer.cross {
                cross.q.fake_quantise(group, levels);
                cross.out.fake_quantise(group, levels);
            }
        }
        self.heads.fake_quantise(group, levels);
    }
}

mod arena;
mod native;
mod prefix;
mod proj;
#[cfg(test)]
mod quality;

use arena::Arena;
pub(crate) use proj::Format;
use proj::Proj;
#[cfg(test)]
mod tests;
