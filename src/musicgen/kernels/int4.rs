//! The int4 matrix-vector product (`maestro_gemv_i4`) and its row format: llama.cpp's Q4_0
//! arithmetic, one f16 scale per group of [`Q4_GROUP`] inputs and 4-bit codes, each row stored as
//! its codes then its scales (`csrc/isa.h`), so a row is one stream. Every path widens the codes to
//! f32 in registers, a group at a time for all activation rows, and keeps the activations in f32.

use tch::{Kind, Tensor};

use super::{active, ffi::maestro_gemv_i4, int8::quantised_output, Path};

/// The kernels' element-type code for int4 weights (`I4` in `csrc/isa.h`).
pub const I4: i32 = 4;

/// Inputs per int4 group, each group with its own f16 scale (`kQ4Group` in `csrc/isa.h`).
pub const Q4_GROUP: i64 = 32;

/// Groups in a row of `k` inputs (the last one padded with zeros).
fn groups(k: i64) -> i64 {
    (k + Q4_GROUP - 1) / Q4_GROUP
}

/// Bytes of one int4 row of `k` inputs: per group 16 code bytes and a 2-byte scale.
pub fn q4_row_bytes(k: i64) -> i64 {
    groups(k) * (Q4_GROUP / 2 + 2)
}

/// `w (n, k)` as int4 rows `(n, q4_row_bytes(k))` u8. Per group of [`Q4_GROUP`] inputs, as Q4_0:
/// the scale d is the group's value of largest magnitude (with its sign) over −8, rounded to f16
/// (and held within f16's range), and each code q = clamp(round(w / d) + 8, 0, 15) stands for
/// (q − 8) · d; so the group's extreme value comes back exactly and zero stays zero, with 16 levels
/// where a symmetric ±7 would use 15. An all-zero group gets d = 0 and codes 8. Computed in f32
/// whatever `w`'s dtype.
pub fn pack_int4(w: &Tensor) -> Tensor {
    let w = w.to_kind(Kind::Float);
    let (n, k) = (w.size()[0], w.size()[1]);
    let g = groups(k);
    let grouped = w.constant_pad_nd([0, g * Q4_GROUP - k]).view([n, g, Q4_GROUP]);
    let extreme = grouped.gather(2, &grouped.abs().argmax(2, true), false);
    let max_half = 65504.0; // f16's largest finite value
    let d = (extreme / -8.0).clamp(-max_half, max_half).to_kind(Kind::Half);
    let inverse = d.to_kind(Kind::Float).reciprocal().nan_to_num(0.0, 0.0, 0.0);
    let q = (&grouped * inverse).round().g_add_scalar(8).clamp(0, 15).to_kind(Kind::Uint8);
    let half_group = Q4_GROUP / 2;
    let codes = q.narrow(2, 0, half_group) + q.narrow(2, half_group, half_group) * 16;
    let scales = d.view([n, g]).view_dtype(Kind::Uint8);
    Tensor::cat(&[codes.view([n, g * half_group]), scales], 1).contiguous()
}

/// The f32 weights `(n, k)` that int4 rows `packed` ([`pack_int4`]) stand for.
pub fn unpack_int4(packed: &Tensor, k: i64) -> Tensor {
    let (n, g, half_group) = (packed.size()[0], groups(k), Q4_GROUP / 2);
    let codes = packed.narrow(1, 0, g * half_group).to_kind(Kind::Int).reshape([n, g, half_group]);
    let q = Tensor::cat(&[codes.remainder(16), codes.floor_divide_scalar(16)], 2).to_kind(Kind::Float) - 8.0;
    let d = packed.narrow(1, g * half_group, 2 * g).contiguous().view_dtype(Kind::Half).to_kind(Kind::Float);
    (q * d.unsqueeze(2)).view([n, g * Q4_GROUP]).narrow(1, 0, k).contiguous()
}

/// [`gemv_i4_on`] the [`active`] path.
pub fn gemv_i4(x: &Tensor, w: &Tensor) -> Option<Tensor> {
    gemv_i4_on(active(), x, w)
}

/// `x · Wᵀ` for f32 rows `x (…, k)` and int4 rows `w (n, q4_row_bytes(k))` ([`pack_int4`]), on
/// kernel path `path`; `None` where the kernel does not apply (another device or dtype, rows of
/// another width, more than [`super::MAX_PASS_ROWS`] rows, a path this CPU lacks).
pub fn gemv_i4_on(path: Path, x: &Tensor, w: &Tensor) -> Option<Tensor> {
    let k = *x.size().last()?;
    let n = match w.size()[..] {
        [n, bytes] if bytes == q4_row_bytes(k) && w.kind() == Kind::Uint8 => n,
        _ => return None,
    };
    let (y, rows) = quantised_output(x, &[w], n)?;
    // SAFETY: x (rows × k) f32, w (n × q4_row_bytes(k)) u8 and y (rows × n) f32 are contiguous CPU
    // tensors alive for the call; the kernel reads x and w and writes only y.
    let status = unsafe {
        maestro_gemv_i4(
            path as i32,
            x.data_ptr() as *const f32,
            rows,
            w.data_ptr() as *const u8,
            n,
            k,
            y.data_ptr() as *mut f32,
        )
    };
    (status == 0).then_some(y)
}
