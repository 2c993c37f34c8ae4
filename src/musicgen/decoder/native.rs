//! The decoder's single-step fast path on the CPU: every row of a batch in one call to
//! `kernels::decoder_step`.

use tch::{Device, Kind, Tensor};

use super::{Cross, Decoder, DecoderState, Format, LAYER_NORM_EPS};
use crate::musicgen::kernels;

impl Decoder {
    /// One step for every row in a single call to the CPU kernel (`kernels::decoder_step`) on the
    /// active kernel path; `None` where it does not apply (another device, more rows than the
    /// kernel's limit for the dtype).
    pub(super) fn native_step(&self, codes: &Tensor, state: &mut DecoderState) -> Option<Tensor> {
        self.native_step_on(kernels::active(), codes, state)
    }

    /// [`Decoder::native_step`] on kernel path `path`.
    pub(super) fn native_step_on(
        &self,
        path: kernels::Path,
        codes: &Tensor,
        state: &mut DecoderState,
    ) -> Option<Tensor> {
        let dtype = kernels::dtype_code(self.kind)?;
        let cache_dtype = match state.self_k.first() {
            Some(k) => kernels::dtype_code(k.kind())?,
            None => dtype,
        };
        let (batch, c, v) = (codes.size()[0], self.cfg.num_codebooks, self.cfg.vocab_size);
        let on_cpu =
            [codes.device(), self.embed.device(), state.positions.device()].iter().all(|d| *d == Device::Cpu);
        // The kernel trusts these shapes: a mismatch goes to libtorch, which reports it.
        let shapes_agree = codes.size()[1] == c && state.cross_mask_f32.size()[0] == batch;
        let cross: Vec<&Cross> = self.layers.iter().filter_map(|l| l.cross.as_ref()).collect();
        if cross.len() != self.layers.len() {
            return None;
        }
        if !on_cpu || !shapes_agree || batch > kernels::max_rows(self.kind) || !kernels::supported() {
            return None;
        }
        let codes = codes.to_kind(Kind::Int64).contiguous();
        let logits = Tensor::empty([batch, c * v], (self.kind, Device::Cpu));
        let p = |t: &Tensor| t.data_ptr() as *const std::ffi::c_void;
        let layers: Vec<_> = (self.layers.iter().enumerate())
            .map(|(i, l)| (i, l, cross[i]))
            .map(|(i, l, x)| kernels::DecoderLayer {
                self_norm_weight: p(&l.self_norm.weight),
                self_norm_bias: p(&l.self_norm.bias),
                qkv: l.qkv.data(),
                self_out: l.self_out.data(),
                cross_norm_weight: p(&x.norm.weight),
                cross_norm_bias: p(&x.norm.bias),
                cross_q: x.q.data(),
                cross_out: x.out.data(),
                ffn_norm_weight: p(&l.ffn_norm.weight),
                ffn_norm_bias: p(&l.ffn_norm.bias),
                fc1: l.fc1.data(),
                fc2: l.fc2.data(),
                self_k: state.self_k[i].data_ptr(),
                self_v: state.self_v[i].data_ptr(),
                cross_k: p(&state.cross_k[i]),
                cross_v: p(&state.cross_v[i]),
                qkv_scale: l.qkv.scale_data(),
                self_out_scale: l.self_out.scale_data(),
                cross_q_scale: x.q.scale_data(),
                cross_out_scale: x.out.scale_data(),
                fc1_scale: l.fc1.scale_data(),
                fc2_scale: l.fc2.scale_data(),
            })
            .collect();
        let step = kernels::DecoderStep {
            batch,
            hidden: self.cfg.hidden_size,
            heads: self.cfg.num_attention_heads,
            ffn: self.cfg.ffn_dim,
            layers: layers.len() as i64,
            codebooks: c,
            vocab: v,
            capacity: state.capacity,
            position: state.pos,
            encoder_len: state.cross_k.first().map_or(1, |k| k.size()[2]),
            dtype,
            weight_dtype: match self.heads.format() {
                Format::Float => dtype,
                Format::Int8 => kernels::I8,
                Format::Int4 => kernels::I4,
            },
            eps: LAYER_NORM_EPS as f32,
            cache_dtype,
            layer: layers.as_ptr(),
            embed: p(&self.embed),
            positions: p(&state.positions),
            final_norm_weight: p(&self.final_norm.weight),
            final_norm_bias: p(&self.final_norm.bias),
            lm_heads: self.heads.data(),
            lm_heads_scale: self.heads.scale_data(),
            codes: codes.data_ptr() as *const i64,
            cross_mask: state.cross_mask_f32.data_ptr() as *const f32,
            logits: logits.data_ptr(),
        };
        // SAFETY: every pointer is into a contiguous CPU tensor of the decoder's kind (the caches:
        // `cache_dtype`; weights are made contiguous at load, caches and cross K/V in `new_state`,
        // the rest just above) with the shapes `DecoderStep` documents, and all of them outlive the
        // call; `state` is borrowed mutably, so nothing else touches its caches meanwhile.
        let ran = unsafe { kernels::decoder_step(path, &step) };
        ran.then(|| logits.view([batch, 1, c, v]).permute([0, 2, 1, 3]))
    }
}
