//! EnCodec's LSTM (encoder and decoder alike): weights, and the recurrence with its residual.

use tch::{Kind, Tensor};

use super::LstmState;
use crate::musicgen::error::Result;
use crate::musicgen::kernels;
use crate::musicgen::weights::WeightLoader;

/// EnCodec's LSTM with its residual over `(batch, dim, n)` (`layers` deep, `dim` wide), continuing
/// from `state` when given: on the CPU layer by layer, the input projections of the whole window in
/// one product, then the frames in one native call (`kernels::lstm_layer`: the hidden-to-hidden
/// product and the gates), or op by op where that does not apply; elsewhere libtorch's own LSTM.
/// The codec's time per generation is in the MusicGen benchmark's breakdown table.
pub(super) fn lstm_forward(
    params: &[Tensor],
    (layers, dim): (i64, i64),
    x: &Tensor,
    state: Option<&LstmState>,
) -> (Tensor, LstmState) {
    let seq = x.permute([2, 0, 1]);
    let zeros = || Tensor::zeros([layers, x.size()[0], dim], (Kind::Float, x.device()));
    let (h0, c0) = state.map_or_else(|| (zeros(), zeros()), |(h, c)| (h.shallow_clone(), c.shallow_clone()));
    let (out, h, c) = if seq.device() == tch::Device::Cpu {
        let mut input = seq.shallow_clone();
        let (mut hs, mut cs) = (Vec::new(), Vec::new());
        for (l, p) in params.chunks(4).enumerate() {
            let (w_ih, w_hh, bias) = (&p[0], &p[1], &p[2] + &p[3]);
            // Contiguous first: libtorch's `linear` on the permuted window took 4x as long (13–19 ms
            // against 3–4 for one chunk's 25 rows; docs/building.md, "The codec").
            let projected = input.contiguous().linear(w_ih, Some(&bias));
            let (h, c) = (h0.get(l as i64), c0.get(l as i64));
            let (out, h, c) = kernels::lstm_layer(&projected, w_hh, &h, &c)
                .unwrap_or_else(|| lstm_layer_libtorch(&projected, &w_hh.to_kind(Kind::Float), h, c));
            input = out;
            hs.push(h);
            cs.push(c);
        }
        (input, Tensor::stack(&hs, 0), Tensor::stack(&cs, 0))
    } else {
        seq.lstm(&[h0, c0], params, true, layers, 0.0, false, false, false)
    };
    ((out + seq).permute([1, 2, 0]), (h, c))
}

/// One LSTM layer frame by frame through libtorch ops: [`kernels::lstm_layer`]'s fallback, with the
/// hidden-to-hidden product still through the kernel where it applies.
pub(super) fn lstm_layer_libtorch(
    projected: &Tensor,
    w_hh: &Tensor,
    mut h: Tensor,
    mut c: Tensor,
) -> (Tensor, Tensor, Tensor) {
    let mut outputs = Vec::with_capacity(projected.size()[0] as usize);
    for t in 0..projected.size()[0] {
        let recurrent = kernels::linear_or_libtorch(&h, w_hh);
        // torch's gate order: input, forget, cell, output.
        let gates = (projected.get(t) + recurrent).chunk(4, -1);
        c = gates[1].sigmoid() * &c + gates[0].sigmoid() * gates[2].tanh();
        h = gates[3].sigmoid() * c.tanh();
        outputs.push(h.shallow_clone());
    }
    (Tensor::stack(&outputs, 0), h, c)
}

/// The LSTM's parameters in torch's order per layer (`weight_ih`, `weight_hh`, `bias_ih`,
/// `bias_hh`), all f32 except the hidden-to-hidden weights, which are `recurrent`: f16 halves the
/// bytes every frame reads (the CPU kernel widens them in registers; libtorch's GPU LSTM needs f32).
pub(super) fn load_lstm(
    w: &WeightLoader<'_>,
    p: &str,
    (layers, dim): (i64, i64),
    recurrent: Kind,
) -> Result<Vec<Tensor>> {
    let mut params = Vec::new();
    for l in 0..layers {
        params.push(w.tensor(&format!("{p}.weight_ih_l{l}"), &[4 * dim, dim], Kind::Float)?);
        params.push(w.tensor(&format!("{p}.weight_hh_l{l}"), &[4 * dim, dim], recurrent)?);
        params.push(w.tensor(&format!("{p}.bias_ih_l{l}"), &[4 * dim], Kind::Float)?);
        params.push(w.tensor(&format!("{p}.bias_hh_l{l}"), &[4 * dim], Kind::Float)?);
    }
    Ok(params)
}
