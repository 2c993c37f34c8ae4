//! The int8 matrix-vector product: int8 weights with one f32 scale per output row
//! (`maestro_gemv_i8`). Where the path has no int8 dot product the weights widen to f32 in
//! registers and every product accumulates in f32 against f32 activations: a decoding step is bound
//! by streaming the weights, which int8 quarters against f32, and a handful of activation rows
//! leaves the cores time to widen. The VNNI paths ([`Path::quantises_activations`]) instead
//! quantise each activation row to 8 bits on the fly and multiply bytes into int32 sums, which
//! needs each weight row's sum of its int8 values beside its scale ([`int8_scales`]).

use tch::{Device, Kind, Tensor};

use super::{active, ffi::maestro_gemv_i8, Path, MAX_PASS_ROWS};

/// The kernels' element-type code for int8 weights (`I8` in `csrc/isa.h`).
pub const I8: i32 = 3;

/// What the int8 kernels take beside int8 weights `w (n, k)` with row scales `scale (n)`: a
/// contiguous f32 `(2, n)`, the scales then each row's sum of its int8 weights (exact in f32: a
/// row of up to 132 000 weights of ±127 sums below 2²⁴).
pub fn int8_scales(w: &Tensor, scale: &Tensor) -> Tensor {
    let sums = w.sum_dim_intlist(1, false, Kind::Float);
    Tensor::stack(&[scale.to_kind(Kind::Float), sums], 0).contiguous()
}

/// The f32 output `(…, n)` of a quantised product over rows `x (…, k)`, and the number of rows;
/// `None` unless `x` and `weights` are contiguous CPU tensors and `x` is f32 with 1 to
/// [`MAX_PASS_ROWS`] rows.
pub(super) fn quantised_output(x: &Tensor, weights: &[&Tensor], n: i64) -> Option<(Tensor, i64)> {
    let shape = x.size();
    let rows = shape[..shape.len().checked_sub(1)?].iter().product::<i64>();
    let on_cpu = weights.iter().chain([&x]).all(|t| t.device() == Device::Cpu && t.is_contiguous());
    if !on_cpu || x.kind() != Kind::Float || !(1..=MAX_PASS_ROWS).contains(&rows) {
        return None;
    }
    let mut out_shape = shape;
    *out_shape.last_mut()? = n;
    Some((Tensor::empty(out_shape.as_slice(), (Kind::Float, Device::Cpu)), rows))
}

/// [`gemv_i8_on`] the [`active`] path.
pub fn gemv_i8(x: &Tensor, w: &Tensor, scales: &Tensor) -> Option<Tensor> {
    gemv_i8_on(active(), x, w, scales)
}

/// `x · (scale ⊙ w)ᵀ` for f32 rows `x (…, k)`, int8 weights `w (n, k)` and `scales (2, n)` from
/// [`int8_scales`], on kernel path `path`; `None` where the kernel does not apply (another device
/// or dtype, more than [`MAX_PASS_ROWS`] rows, a path this CPU lacks).
pub fn gemv_i8_on(path: Path, x: &Tensor, w: &Tensor, scales: &Tensor) -> Option<Tensor> {
    let (n, k) = match w.size()[..] {
        [n, k] => (n, k),
        _ => return None,
    };
    let applies = w.kind() == Kind::Int8
        && scales.kind() == Kind::Float
        && scales.size() == [2, n]
        && x.size().last() == Some(&k);
    let (y, rows) = quantised_output(x, &[w, scales], n).filter(|_| applies)?;
    // SAFETY: x (rows × k) f32, w (n × k) int8, scales (2 × n) f32 and y (rows × n) f32 are
    // contiguous CPU tensors alive for the call; the kernel reads x, w and scales and writes only y.
    let status = unsafe {
        maestro_gemv_i8(
            path as i32,
            x.data_ptr() as *const f32,
            rows,
            w.data_ptr() as *const i8,
            scales.data_ptr() as *const f32,
            n,
            k,
            y.data_ptr() as *mut f32,
        )
    };
    (status == 0).then_some(y)
}
