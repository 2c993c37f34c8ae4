//! A projection weight `(out, in)` as the decoder holds it: in the decoder's float type; int8 with
//! one f32 scale per output row (`DType::Int8`: weight-only, symmetric, per output channel), kept
//! with each row's sum of its int8 weights for the VNNI kernels (`kernels::int8_scales`); or int4
//! with one f16 scale per group of 32 inputs (`DType::Int4`, `kernels::pack_int4`).
//!
//! int8 per output channel rather than per group of 32 or 64 inputs: one scale multiplies a whole
//! row's sum once, so the kernels' inner loop is the f16 loop with a different widening, and the
//! step reads 1 byte per weight (groups of 32 add an eighth); the quality tests
//! (`decoder::quality`) measure what per-channel costs beside groups of 32, 64 and 128
//! (docs/building.md, "What int8 costs"). 4 bits per channel would lose too much (the same tests
//! measure it): int4 takes groups, as llama.cpp's Q4_0 and MLX's 4-bit MusicGen do.

use std::ffi::c_void;

use tch::{Kind, Tensor};

use super::arena::Arena;
use crate::musicgen::kernels;

/// How a decoder holds its projections and LM heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// The decoder's own float kind.
    Float,
    /// int8, one f32 scale per output row.
    Int8,
    /// int4, one f16 scale per group of [`kernels::Q4_GROUP`] inputs.
    Int4,
}

/// One projection's weights, quantised or not.
pub(crate) struct Proj {
    /// `(out, in)` in the decoder's kind or int8, or `(out, q4_row_bytes(in))` u8 int4 rows.
    w: Tensor,
    /// `(2, out)` f32 for int8 weights: the row scales, then the rows' sums (`kernels::int8_scales`).
    scale: Option<Tensor>,
    format: Format,
    /// Inputs per row (`in`).
    cols: i64,
}

impl Proj {
    /// `w (out, in)` as loaded, quantised to `format`, copied into `arena`.
    pub fn new(w: Tensor, format: Format, arena: &Arena) -> Self {
        let cols = w.size()[1];
        let (w, scale) = match format {
            Format::Float => (w, None),
            Format::Int8 => {
                let (w, scale) = quantise(&w);
                (w, Some(scale))
            }
            Format::Int4 => (kernels::pack_int4(&w), None),
        };
        let w = arena.adopt(w);
        Self { w, scale: scale.map(|s| arena.adopt(s)), format, cols }
    }

    /// Bytes of an `(rows, cols)` projection in [`Arena`] slots: the weights in `kind` or
    /// `format`, and with int8 its scales and row sums.
    pub fn arena_sizes(rows: i64, cols: i64, kind: Kind, format: Format) -> [i64; 2] {
        match format {
            Format::Float => [rows * cols * kind.elt_size_in_bytes() as i64, 0],
            Format::Int8 => [rows * cols, rows * 8],
            Format::Int4 => [rows * kernels::q4_row_bytes(cols), 0],
        }
    }

    /// `x · wᵀ`: the kernel for a few rows, libtorch otherwise (quantised weights then widened first).
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let kernel = match (self.format, &self.scale) {
            (Format::Float, _) => return kernels::linear_or_libtorch(x, &self.w),
            (Format::Int8, Some(scale)) => kernels::gemv_i8(x, &self.w, scale),
            _ => kernels::gemv_i4(x, &self.w),
        };
        kernel.unwrap_or_else(|| x.linear::<Tensor>(&self.dequantised().to_kind(x.kind()), None))
    }

    /// The weights in f32 (quantised ones times their scales).
    pub fn dequantised(&self) -> Tensor {
        match (self.format, &self.scale) {
            (Format::Int8, Some(scale)) => self.w.to_kind(Kind::Float) * scale.get(0).unsqueeze(1),
            (Format::Int4, _) => kernels::unpack_int4(&self.w, self.cols),
            _ => self.w.to_kind(Kind::Float),
        }
    }

    /// The weights' data, for the native step.
    pub fn data(&self) -> *const c_void {
        self.w.data_ptr() as *const c_void
    }

    /// The per-row scales and sums' data (`(2, out)` f32), null unless int8.
    pub fn scale_data(&self) -> *const f32 {
        self.scale.as_ref().map_or(std::ptr::null(), |s| s.data_ptr() as *const f32)
    }

    /// How the weights are held.
    pub fn format(&self) -> Format {
        self.format
    }
}

/// `w (out, in)` as int8 and one f32 scale per row: scale = max |row| / 127, q = round(w / scale),
/// so each row's largest weight maps to ±127 and zero stays exactly zero. Computed in f32 whatever
/// `w`'s dtype; an all-zero row gets scale 0 and zeros. The scales come as `kernels::int8_scales`
/// `(2, out)`: with the rows' sums.
pub fn quantise(w: &Tensor) -> (Tensor, Tensor) {
    let w = w.to_kind(Kind::Float);
    let scale = w.abs().amax([1], true) / 127.0;
    let q = (&w / scale.clamp_min(f64::from(f32::MIN_POSITIVE))).round().clamp(-127, 127);
    let q = q.to_kind(Kind::Int8).contiguous();
    let scales = kernels::int8_scales(&q, &scale.squeeze_dim(1));
    (q, scales)
}

/// `w (out, in)` rounded symmetrically to ±`levels` (127 for int8, 7 for 4 bits) with one scale per
/// `group` consecutive inputs of a row (per row when `None`; a row's last group may be shorter),
/// returned dequantised in f32: what per-group scales would cost in quality, measured without a
/// per-group kernel (`decoder::quality`).
#[cfg(test)]
pub fn fake_quantised(w: &Tensor, group: Option<i64>, levels: i64) -> Tensor {
    let w = w.to_kind(Kind::Float);
    let (rows, cols) = (w.size()[0], w.size()[1]);
    let g = group.unwrap_or(cols);
    let padded = (cols + g - 1) / g * g;
    let grouped = w.constant_pad_nd([0, padded - cols]).view([rows, padded / g, g]);
    let scale = grouped.abs().amax([2], true) / levels as f64;
    let q = (&grouped / scale.clamp_min(f64::from(f32::MIN_POSITIVE))).round().clamp(-levels, levels);
    (q * scale).view([rows, padded]).narrow(1, 0, cols).contiguous()
}

#[cfg(test)]
impl Proj {
    /// This f32 projection with its weights replaced by [`fake_quantised`] ones (still f32).
    pub fn fake_quantise(&mut self, group: Option<i64>, levels: i64) {
        assert_eq!(self.format, Format::Float, "fake quantisation starts from float weights");
        self.w = fake_quantised(&self.w, group, levels);
    }
}
