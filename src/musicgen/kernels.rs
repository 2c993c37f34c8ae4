//! Hand-written CPU kernels (`csrc/`) for what libtorch does slowly here: matrix-vector products,
//! a whole one-token decoder step ([`decoder_step`]), and an inference-mode guard tch does not expose.
//! Each kernel is compiled for every [`Path`] (AVX-512 and AVX2, each with and without VNNI, and
//! generic) and runs on [`active`]: the best path this CPU has under `--cpu-isa`.

use std::ffi::c_void;

use tch::{Device, Kind, Tensor};

mod ffi;
mod int4;
mod int8;
mod path;

use ffi::{
    maestro_decoder_step, maestro_gemv, maestro_inference_mode_enter, maestro_inference_mode_exit,
    maestro_isa_supported, maestro_lstm_layer, maestro_set_thread_team,
};
pub use int4::{gemv_i4, gemv_i4_on, pack_int4, q4_row_bytes, unpack_int4, I4, Q4_GROUP};
pub use int8::{gemv_i8, gemv_i8_on, int8_scales, I8};
pub use path::{active, Path, PathGuard};

/// The most activation rows [`linear`] sends to the kernel: a decoding step's batch (four requests
/// with guidance). The benchmark's kernel table shows the kernel still ahead of libtorch at 8 rows.
/// `kMaxStepRows` in `csrc/simd.h`, which the decoder step and the LSTM check.
pub const MAX_ROWS: i64 = 8;

/// The most activation rows [`gemv`] takes in one pass over the weights: a short prompt's tokens
/// ([`linear_blocked`]) read the weights once rather than once per 8 rows. `kMaxPassRows` in
/// `csrc/simd.h`.
pub const MAX_PASS_ROWS: i64 = 16;

/// A VNNI path quantises an int8 product's activations only above this many rows: at one guided
/// request (2 rows) f32 activations stream as fast and cost half the KL. `kQuantiseAboveRows` in
/// `csrc/isa.h`; `int8_matches_libtorch_on_every_path` fails if the two disagree.
pub const QUANTISE_ABOVE_ROWS: i64 = 2;

/// The most rows [`linear`] takes for weights of `kind`. Beyond 4 rows the kernel's bf16 widening
/// makes it compute-bound on two cores and libtorch's bf16 GEMM (oneDNN with AMX where the CPU has
/// it) streams faster: compare the bf16 rows of the MusicGen benchmark's kernel table at 2 and 8 rows.
pub fn max_rows(kind: Kind) -> i64 {
    if kind == Kind::BFloat16 {
        4
    } else {
        MAX_ROWS
    }
}

/// The kernels' element-type code for `kind` (f32, f16, bf16), `None` for any other.
pub fn dtype_code(kind: Kind) -> Option<i32> {
    match kind {
        Kind::Float => Some(0),
        Kind::Half => Some(1),
        Kind::BFloat16 => Some(2),
        _ => None,
    }
}

/// Whether the kernels were built: then every CPU runs them (the generic path at least).
pub fn supported() -> bool {
    static BUILT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // SAFETY: a pure CPU-feature query.
    *BUILT.get_or_init(|| unsafe { maestro_isa_supported(Path::Generic as i32) } == 1)
}

/// Whether the kernels split their loops over the calling thread's persistent team (`csrc/team.h`,
/// the default) or through libtorch's `at::parallel_for`, one OpenMP fork/join per loop; for every
/// thread of the process. The benchmarks set it to compare the two in one run.
pub fn use_thread_team(on: bool) {
    // SAFETY: stores one flag the kernels read atomically.
    unsafe { maestro_set_thread_team(i32::from(on)) }
}

/// `x · wᵀ`: the kernel where it is the faster path ([`linear`]), libtorch's `linear` otherwise.
pub fn linear_or_libtorch(x: &Tensor, w: &Tensor) -> Tensor {
    linear(x, w).unwrap_or_else(|| x.linear::<Tensor>(w, None))
}

/// Rows up to which [`linear_blocked`] runs the kernel pass by pass: up to here libtorch's f32
/// GEMM is no faster than reading the weights once per pass of up to [`MAX_PASS_ROWS`] rows,
/// beyond it GEMM wins (the MusicGen benchmark's T5 table compares the two at each row count).
pub const MAX_BLOCKED_ROWS: i64 = 12;

/// `x · wᵀ` for a short f32 or f16 sequence (a prompt's tokens through T5, the decoder's
/// cross-attention keys and values): the kernel in passes of up to [`MAX_PASS_ROWS`] rows up to
/// [`MAX_BLOCKED_ROWS`] rows, [`linear_or_libtorch`] otherwise. libtorch's f16 `linear` streams
/// 1.5–3x fewer bytes per second than the kernel at 2 and at 8 rows (the benchmark's kernel table).
pub fn linear_blocked(x: &Tensor, w: &Tensor) -> Tensor {
    let rows = x.size().split_last().map_or(0, |(_, lead)| lead.iter().product::<i64>());
    // bf16 goes to oneDNN, which streams bf16 weights well at many rows (see `max_rows`).
    let blocks = matches!(x.kind(), Kind::Float | Kind::Half);
    if !blocks || rows <= max_rows(x.kind()) || rows > MAX_BLOCKED_ROWS {
        return linear_or_libtorch(x, w);
    }
    gemv_blocked(x, w).unwrap_or_else(|| x.linear::<Tensor>(w, None))
}

/// [`gemv`] over `x (…, k)` in as few passes as its rows need (up to [`MAX_PASS_ROWS`] rows each,
/// [`max_rows`] for bf16), split evenly; `None` where the kernel does not apply.
pub fn gemv_blocked(x: &Tensor, w: &Tensor) -> Option<Tensor> {
    let shape = x.size();
    let (k, lead) = shape.split_last()?;
    let rows = lead.iter().product::<i64>();
    let per_pass = if x.kind() == Kind::BFloat16 { max_rows(x.kind()) } else { MAX_PASS_ROWS };
    let passes = ((rows + per_pass - 1) / per_pass).max(1);
    let block = (rows + passes - 1) / passes;
    let parts: Option<Vec<Tensor>> =
        x.reshape([rows, *k]).split(block.max(1), 0).iter().map(|p| gemv(&p.contiguous(), w)).collect();
    let mut out_shape = lead.to_vec();
    out_shape.push(w.size().first().copied()?);
    Some(Tensor::cat(&parts?, 0).view(out_shape.as_slice()))
}

/// [`gemv`] where it beats libtorch: at most [`max_rows`] rows for the dtype.
pub fn linear(x: &Tensor, w: &Tensor) -> Option<Tensor> {
    let rows = x.size().split_last().map_or(0, |(_, lead)| lead.iter().product::<i64>());
    if rows > max_rows(x.kind()) {
        return None;
    }
    gemv(x, w)
}

/// [`gemv_on`] the [`active`] path.
pub fn gemv(x: &Tensor, w: &Tensor) -> Option<Tensor> {
    gemv_on(active(), x, w)
}

/// `x · wᵀ` for a few rows `x (…, k)` and a weight `w (n, k)` on the CPU, reading `w` once for all
/// rows and accumulating in f32, on kernel path `path`; `None` when the kernel cannot run it
/// (another device or dtype, more than [`MAX_PASS_ROWS`] rows, a path this CPU lacks).
pub fn gemv_on(path: Path, x: &Tensor, w: &Tensor) -> Option<Tensor> {
    let kind = x.kind();
    let code = dtype_code(kind)?;
    let (n, k) = match w.size()[..] {
        [n, k] => (n, k),
        _ => return None,
    };
    let shape = x.size();
    let rows = shape[..shape.len() - 1].iter().product::<i64>();
    let applies = x.device() == Device::Cpu
        && w.device() == Device::Cpu
        && w.kind() == kind
        && shape.last() == Some(&k)
        && (1..=MAX_PASS_ROWS).contains(&rows)
        && x.is_contiguous()
        && w.is_contiguous()
        && supported();
    if !applies {
        return None;
    }
    let mut out_shape = shape;
    *out_shape.last_mut()? = n;
    let y = Tensor::empty(out_shape.as_slice(), (kind, Device::Cpu));
    // SAFETY: x (rows × k), w (n × k) and y (rows × n) are contiguous CPU tensors of `kind`, alive for
    // the call; the kernel reads x and w and writes only y.
    let status =
        unsafe { maestro_gemv(path as i32, x.data_ptr(), rows, w.data_ptr(), n, k, code, y.data_ptr()) };
    (status == 0).then_some(y)
}

/// One layer's weights and caches for [`decoder_step`]: pointers to contiguous CPU tensors
/// (`csrc/decoder_step.cpp`, `MaestroDecoderLayer`, documents the shapes). The six projections have
/// the step's `weight_dtype` and, when that is int8, `(2, rows)` f32 scales and row sums
/// ([`int8_scales`]; `*_scale`, else null); the rest has the step's `dtype`.
#[repr(C)]
pub struct DecoderLayer {
    pub self_norm_weight: *const c_void,
    pub self_norm_bias: *const c_void,
    pub qkv: *const c_void,
    pub self_out: *const c_void,
    pub cross_norm_weight: *const c_void,
    pub cross_norm_bias: *const c_void,
    pub cross_q: *const c_void,
    pub cross_out: *const c_void,
    pub ffn_norm_weight: *const c_void,
    pub ffn_norm_bias: *const c_void,
    pub fc1: *const c_void,
    pub fc2: *const c_void,
    pub self_k: *mut c_void,
    pub self_v: *mut c_void,
    pub cross_k: *const c_void,
    pub cross_v: *const c_void,
    pub qkv_scale: *const f32,
    pub self_out_scale: *const f32,
    pub cross_q_scale: *const f32,
    pub cross_out_scale: *const f32,
    pub fc1_scale: *const f32,
    pub fc2_scale: *const f32,
}

/// The sizes, pointers and outputs of one [`decoder_step`] (`MaestroDecoderStep` in
/// `csrc/decoder_step.cpp`).
#[repr(C)]
pub struct DecoderStep {
    pub batch: i64,
    pub hidden: i64,
    pub heads: i64,
    pub ffn: i64,
    pub layers: i64,
    pub codebooks: i64,
    pub vocab: i64,
    pub capacity: i64,
    pub position: i64,
    pub encoder_len: i64,
    pub dtype: i32,
    pub weight_dtype: i32,
    pub eps: f32,
    /// The self-attention caches' element type: `dtype`, or f16 beside int8 weights.
    pub cache_dtype: i32,
    pub layer: *const DecoderLayer,
    pub embed: *const c_void,
    pub positions: *const c_void,
    pub final_norm_weight: *const c_void,
    pub final_norm_bias: *const c_void,
    pub lm_heads: *const c_void,
    pub lm_heads_scale: *const f32,
    pub codes: *const i64,
    pub cross_mask: *const f32,
    pub logits: *mut c_void,
}

/// Runs one whole decoder step natively on kernel path `path`; `false` (nothing written) when the
/// kernel declines (arguments outside what it handles, a path this CPU lacks).
///
/// # Safety
/// Every pointer in `step` and in its `layer` array (`layers` entries) must point to a live,
/// contiguous CPU buffer of the documented shape and element type, and no other thread may touch
/// the caches or `logits` during the call.
pub unsafe fn decoder_step(path: Path, step: &DecoderStep) -> bool {
    // SAFETY: upheld by the caller, see above.
    unsafe { maestro_decoder_step(path as i32, step) == 0 }
}

/// One LSTM layer over every frame of `gates_in (frames, batch, 4·dim)` (the input projections plus
/// both biases), from the state `h`, `c (batch, dim)`: returns every frame's hidden state
/// `(frames, batch, dim)` and the final `(h, c)`. `w_hh` may be f32, f16 or bf16 (widened in
/// registers); everything else is f32. `None` where the kernel does not apply (another device or
/// dtype, more than [`MAX_ROWS`] rows); torch's gate order. On the [`active`] path.
pub fn lstm_layer(
    gates_in: &Tensor,
    w_hh: &Tensor,
    h: &Tensor,
    c: &Tensor,
) -> Option<(Tensor, Tensor, Tensor)> {
    lstm_layer_on(active(), gates_in, w_hh, h, c)
}

/// [`lstm_layer`] on kernel path `path` (`None` also where this CPU lacks it).
pub fn lstm_layer_on(
    path: Path,
    gates_in: &Tensor,
    w_hh: &Tensor,
    h: &Tensor,
    c: &Tensor,
) -> Option<(Tensor, Tensor, Tensor)> {
    let (frames, batch, width) = gates_in.size3().ok()?;
    let dim = width / 4;
    let f32_cpu = |t: &Tensor| t.device() == Device::Cpu && t.kind() == Kind::Float;
    let dtype = dtype_code(w_hh.kind())?;
    let applies = [gates_in, h, c].into_iter().all(f32_cpu)
        && w_hh.device() == Device::Cpu
        && width == 4 * dim
        && w_hh.size() == [width, dim]
        && h.size() == [batch, dim]
        && c.size() == [batch, dim]
        && (1..=MAX_ROWS).contains(&batch)
        && supported();
    if !applies {
        return None;
    }
    let (gates_in, w_hh) = (gates_in.contiguous(), w_hh.contiguous());
    let (h, c) = (h.copy(), c.copy());
    let out = Tensor::empty([frames, batch, dim], (Kind::Float, Device::Cpu));
    // SAFETY: every buffer is a contiguous CPU tensor of the shape checked above (f32, and w_hh of
    // the type `dtype` names), alive for the call; the kernel reads gates_in and w_hh and writes
    // only h, c and out, which nothing else holds.
    let status = unsafe {
        maestro_lstm_layer(
            path as i32,
            gates_in.data_ptr() as *const f32,
            frames,
            batch,
            dim,
            w_hh.data_ptr() as *const c_void,
            dtype,
            h.data_ptr() as *mut f32,
            c.data_ptr() as *mut f32,
            out.data_ptr() as *mut f32,
        )
    };
    (status == 0).then_some((out, h, c))
}

/// c10::InferenceMode on this thread while it lives: no autograd bookkeeping on any tensor op.
/// Tensors made inside cannot later take part in autograd, which nothing in Maestro does.
pub struct InferenceMode(*mut c_void);

impl InferenceMode {
    /// Enters inference mode on the calling thread.
    pub fn enter() -> Self {
        // SAFETY: returns an owned guard, released exactly once in Drop on the same thread (the
        // type is neither Send nor Sync because of the raw pointer).
        Self(unsafe { maestro_inference_mode_enter() })
    }
}

impl Drop for InferenceMode {
    fn drop(&mut self) {
        // SAFETY: the guard from `enter`, released once, on the thread that made it.
        unsafe { maestro_inference_mode_exit(self.0) }
    }
}

/// The paths this process can run, for tests and benchmarks, each printed; a path this CPU cannot
/// run is printed with the reason instead. On x86-64 the kernels must have been built, so a build
/// that left them out fails (panics) rather than skipping every path.
pub fn paths_here() -> Vec<Path> {
    assert!(
        supported() || !cfg!(target_arch = "x86_64"),
        "the CPU kernels are unavailable on x86-64: the build left them out (build.rs warns `CPU kernels not built`)"
    );
    let mut here = Vec::new();
    for path in Path::ALL {
        match path.unavailable() {
            None => here.push(path),
            Some(why) => eprintln!("kernel path {path}: not tested here ({why})"),
        }
    }
    eprintln!("kernel paths tested here: {here:?}");
    here
}

#[cfg(test)]
mod tests;
