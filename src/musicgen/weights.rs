//! Reading a checkpoint's tensors into tch tensors. The folder is opened through
//! [`crate::checkpoint`], whose header checks run before any byte reaches libtorch, so a truncated or
//! corrupt file is an error rather than a crash, whatever the layout. Each tensor is read straight
//! into the tensor that keeps it (a staging copy only when its stored type is converted), so a load
//! holds the weights it has loaded plus at most one stored tensor.
//! The dtype a model is asked for is the server's one [`DType`]; [`kind`] gives its libtorch kind.

use tch::{Device, Kind, Tensor};

use super::error::{MusicgenError, Result};
use crate::checkpoint::{Checkpoint, Dtype, TensorInfo};
pub use crate::resources::requirements::DType;

/// The libtorch kind of a dtype (for int8 and int4, of their activations and unquantised weights:
/// f32).
pub fn kind(dtype: DType) -> Kind {
    match dtype {
        DType::F32 | DType::Int8 | DType::Int4 => Kind::Float,
        DType::F16 => Kind::Half,
        DType::Bf16 => Kind::BFloat16,
    }
}

/// The libtorch kind a stored dtype is read as; the others cannot be loaded.
fn stored_kind(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        _ => return None,
    })
}

/// A tensor's stored shape as libtorch spells it.
fn shape_of(info: &TensorInfo) -> Vec<i64> {
    // The header check bounds the element count, so every dimension fits in an i64.
    info.shape.iter().map(|&d| d as i64).collect()
}

/// Hands out checked tensors of one checkpoint on a device.
pub struct WeightLoader<'a> {
    file: &'a Checkpoint,
    device: Device,
}

impl<'a> WeightLoader<'a> {
    /// A loader placing tensors on `device`.
    pub fn new(file: &'a Checkpoint, device: Device) -> Self {
        Self { file, device }
    }

    /// The tensor `key`, which must have `shape`, converted to `kind` on the device.
    pub fn tensor(&self, key: &str, shape: &[i64], kind: Kind) -> Result<Tensor> {
        let info = self.file.get(key).ok_or_else(|| MusicgenError::MissingTensor { key: key.to_owned() })?;
        let found = shape_of(info);
        if found != shape {
            return Err(MusicgenError::ShapeMismatch {
                key: key.to_owned(),
                expected: shape.to_vec(),
                found,
            });
        }
        let stored = stored_kind(info.dtype).ok_or_else(|| MusicgenError::CorruptWeights {
            path: self.file.file_of(info).to_owned(),
            reason: format!("tensor `{key}` has unsupported dtype {}", info.dtype),
        })?;
        let cpu = Tensor::f_empty(&found, (stored, Device::Cpu))?;
        let bytes = crate::checkpoint::stored_bytes(info) as usize;
        if bytes != cpu.numel() * stored.elt_size_in_bytes() {
            return Err(MusicgenError::CorruptWeights {
                path: self.file.file_of(info).to_owned(),
                reason: format!("tensor `{key}` stores {bytes} bytes for shape {found:?} of {stored:?}"),
            });
        }
        if bytes > 0 {
            // SAFETY: `cpu` is a fresh contiguous CPU tensor of `found` elements of `stored`, whose
            // byte size is the checkpoint's stored size for this entry (same shape, same dtype); the
            // slice lives only for this read, during which nothing else touches the tensor.
            let out = unsafe { std::slice::from_raw_parts_mut(cpu.data_ptr() as *mut u8, bytes) };
            self.file.read_into(info, out)?;
        }
        Ok(cpu.f_to_kind(kind)?.f_to_device(self.device)?)
    }

    /// The first of `keys` present (tied weights stored under either name).
    pub fn tied(&self, keys: &[&str], shape: &[i64], kind: Kind) -> Result<Tensor> {
        let key = keys.iter().find(|k| self.file.contains(k)).unwrap_or(&keys[0]);
        self.tensor(key, shape, kind)
    }

    /// A weight-normed convolution weight `prefix.weight` of `shape`, from `weight_g`/`weight_v`, from
    /// `parametrizations.weight.original0`/`original1`, or already folded. The fold runs in f32.
    pub fn conv_weight(&self, prefix: &str, shape: &[i64], kind: Kind) -> Result<Tensor> {
        let has = |k: &str| self.file.contains(k);
        let (g_key, v_key) = if has(&format!("{prefix}.weight_g")) {
            (format!("{prefix}.weight_g"), format!("{prefix}.weight_v"))
        } else if has(&format!("{prefix}.parametrizations.weight.original0")) {
            (
                format!("{prefix}.parametrizations.weight.original0"),
                format!("{prefix}.parametrizations.weight.original1"),
            )
        } else if has(&format!("{prefix}.weight")) {
            return self.tensor(&format!("{prefix}.weight"), shape, kind);
        } else {
            return Err(MusicgenError::MissingTensor { key: format!("{prefix}.weight_g") });
        };
        let v = self.tensor(&v_key, shape, Kind::Float)?;
        let g = self.tensor(&g_key, &[shape[0], 1, 1], Kind::Float)?;
        Ok(Tensor::f_internal_weight_norm(&v, &g, 0)?.f_to_kind(kind)?)
    }

    /// Whether the checkpoint holds `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.file.contains(key)
    }
}
