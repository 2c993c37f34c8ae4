//! A melody decoder's conditioning prefix: rows left-padded to one width, the padding masked as keys
//! and subtracted from each row's positions.

use tch::{Kind, Tensor};

use super::{mask_value, sinusoids, Decoder, DecoderState};

/// A melody decoder's conditioning, prepended by the first forward call.
pub(super) struct Prefix {
    /// `(batch, len, hidden)`, each row left-padded with zeros.
    pub(super) states: Tensor,
    /// `(batch, 1)` i64: each row's padding, masked as keys and subtracted from its positions.
    pub(super) pads: Tensor,
    pub(super) padded: bool,
    pub(super) pending: bool,
}

impl Decoder {
    /// A melody decoder's state: `states` `(batch, len, hidden)` holds each row's conditioning in its
    /// last `lens[row]` positions, and the cache has room for it and `steps` more positions.
    pub fn new_prefixed_state(&self, states: &Tensor, lens: &[i64], steps: i64) -> DecoderState {
        let (b, len, dev) = (states.size()[0], states.size()[1], states.device());
        let (heads, hd) = (self.cfg.num_attention_heads, self.cfg.head_dim());
        let capacity = len + steps;
        let pads: Vec<i64> = lens.iter().map(|l| len - l).collect();
        let cache = || Tensor::zeros([b, heads, capacity, hd], (self.kind, dev));
        let none = Tensor::zeros([b, 1], (Kind::Float, dev));
        DecoderState {
            self_k: self.layers.iter().map(|_| cache()).collect(),
            self_v: self.layers.iter().map(|_| cache()).collect(),
            cross_k: Vec::new(),
            cross_v: Vec::new(),
            cross_mask: none.view([b, 1, 1, 1]).to_kind(self.kind),
            cross_mask_f32: none,
            positions: sinusoids(capacity.max(self.cfg.max_position_embeddings), self.cfg.hidden_size, dev)
                .to_kind(self.kind),
            pos: 0,
            capacity,
            prefix: Some(Prefix {
                states: states.to_kind(self.kind),
                padded: pads.iter().any(|&p| p > 0),
                pads: Tensor::from_slice(&pads).to_device(dev).view([b, 1]),
                pending: true,
            }),
        }
    }

    /// Sinusoidal positions of the next `len` positions: one table slice, or per row where rows are
    /// left-padded (the padding's own positions clamp to 0; nothing attends to them).
    pub(super) fn positions(&self, state: &DecoderState, len: i64) -> Tensor {
        match state.prefix.as_ref().filter(|p| p.padded) {
            None => state.positions.narrow(0, state.pos, len),
            Some(p) => {
                let at = Tensor::arange_start(state.pos, state.pos + len, (Kind::Int64, p.pads.device()));
                let index = (at.unsqueeze(0) - &p.pads).clamp_min(0);
                let b = index.size()[0];
                state.positions.index_select(0, &index.view([-1])).view([b, len, -1])
            }
        }
    }

    /// `(batch, 1, 1, keys)` additive mask hiding each row's left padding, where there is any.
    pub(super) fn key_mask(&self, state: &DecoderState, len: i64) -> Option<Tensor> {
        let p = state.prefix.as_ref().filter(|p| p.padded)?;
        let keys = Tensor::arange(state.pos + len, (Kind::Int64, p.pads.device())).unsqueeze(0);
        let hidden = keys.lt_tensor(&p.pads).to_kind(Kind::Float) * mask_value(self.kind);
        Some(hidden.to_kind(self.kind).unsqueeze(1).unsqueeze(1))
    }
}
