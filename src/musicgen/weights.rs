//! Reading `model.safetensors` into tch tensors. The header is validated here, before any byte reaches
//! libtorch, so a truncated or corrupt file is an error rather than a crash; tensors are read one at a
//! time so loading never holds the whole file in memory.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use super::error::{MusicgenError, Result};

/// Element types a model can be run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
}

impl DType {
    /// The matching libtorch kind.
    pub fn kind(self) -> Kind {
        match self {
            DType::F32 => Kind::Float,
            DType::F16 => Kind::Half,
            DType::BF16 => Kind::BFloat16,
        }
    }

    /// Bytes per element.
    pub fn size_bytes(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// The safetensors / PyTorch spelling (`f32`, `f16`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        }
    }
}

/// One tensor's entry in the safetensors header.
#[derive(Debug, Clone, Deserialize)]
pub struct TensorEntry {
    /// Stored element type (`F32`, `F16`, `BF16`, ...).
    pub dtype: String,
    /// Stored shape.
    pub shape: Vec<i64>,
    /// Byte range inside the data section.
    pub data_offsets: [u64; 2],
}

impl TensorEntry {
    /// Number of elements.
    pub fn numel(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }
}

/// An opened, header-validated safetensors file.
pub struct SafetensorsFile {
    path: PathBuf,
    file: File,
    data_start: u64,
    entries: HashMap<String, TensorEntry>,
}

/// Largest header accepted; the safetensors format caps it at 100 MB.
const MAX_HEADER: u64 = 100 << 20;

impl SafetensorsFile {
    /// Opens `path` and checks that every tensor the header declares lies inside the file.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |source| MusicgenError::Io { path: path.to_owned(), source };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let corrupt = |reason: String| MusicgenError::CorruptWeights { path: path.to_owned(), reason };
        if len < 8 {
            return Err(corrupt(format!("{len} bytes, shorter than the 8-byte header length")));
        }
        let mut head = [0u8; 8];
        file.read_exact_at(&mut head, 0).map_err(io)?;
        let header_len = u64::from_le_bytes(head);
        if header_len > MAX_HEADER || 8 + header_len > len {
            return Err(corrupt(format!("header of {header_len} bytes does not fit in a {len}-byte file")));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact_at(&mut header, 8).map_err(io)?;
        let mut raw: HashMap<String, serde_json::Value> =
            serde_json::from_slice(&header).map_err(|e| corrupt(format!("header is not JSON: {e}")))?;
        raw.remove("__metadata__");
        let data_start = 8 + header_len;
        let mut entries = HashMap::with_capacity(raw.len());
        for (key, value) in raw {
            let entry: TensorEntry =
                serde_json::from_value(value).map_err(|e| corrupt(format!("entry `{key}`: {e}")))?;
            check_entry(&key, &entry, len - data_start).map_err(corrupt)?;
            entries.insert(key, entry);
        }
        Ok(Self { path: path.to_owned(), file, data_start, entries })
    }

    /// The header entries by key.
    pub fn entries(&self) -> &HashMap<String, TensorEntry> {
        &self.entries
    }

    /// Reads one tensor onto the CPU in its stored element type.
    fn read(&self, key: &str, entry: &TensorEntry) -> Result<Tensor> {
        let kind = stored_kind(&entry.dtype).ok_or_else(|| MusicgenError::CorruptWeights {
            path: self.path.clone(),
            reason: format!("tensor `{key}` has unsupported dtype {}", entry.dtype),
        })?;
        let [begin, end] = entry.data_offsets;
        let mut bytes = vec![0u8; (end - begin) as usize];
        self.file
            .read_exact_at(&mut bytes, self.data_start + begin)
            .map_err(|source| MusicgenError::Io { path: self.path.clone(), source })?;
        Ok(Tensor::f_from_data_size(&bytes, &entry.shape, kind)?)
    }
}

fn check_entry(key: &str, entry: &TensorEntry, data_len: u64) -> std::result::Result<(), String> {
    let [begin, end] = entry.data_offsets;
    if entry.shape.iter().any(|&d| d < 0) {
        return Err(format!("tensor `{key}` has a negative dimension {:?}", entry.shape));
    }
    if begin > end || end > data_len {
        return Err(format!("tensor `{key}` spans bytes {begin}..{end} of a {data_len}-byte data section"));
    }
    if let Some(size) = stored_size(&entry.dtype) {
        let want = entry.numel().checked_mul(size);
        if want != Some(end - begin) {
            return Err(format!(
                "tensor `{key}` {:?} {} needs {want:?} bytes, the header gives {}",
                entry.shape,
                entry.dtype,
                end - begin
            ));
        }
    }
    Ok(())
}

fn stored_kind(dtype: &str) -> Option<Kind> {
    Some(match dtype {
        "F32" => Kind::Float,
        "F16" => Kind::Half,
        "BF16" => Kind::BFloat16,
        "F64" => Kind::Double,
        "I64" => Kind::Int64,
        _ => return None,
    })
}

fn stored_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => return None,
    })
}

/// Hands out checked tensors of one checkpoint on a device.
pub struct WeightLoader<'a> {
    file: &'a SafetensorsFile,
    device: Device,
}

impl<'a> WeightLoader<'a> {
    /// A loader placing tensors on `device`.
    pub fn new(file: &'a SafetensorsFile, device: Device) -> Self {
        Self { file, device }
    }

    /// The tensor `key`, which must have `shape`, converted to `kind` on the device.
    pub fn tensor(&self, key: &str, shape: &[i64], kind: Kind) -> Result<Tensor> {
        let entry =
            self.file.entries.get(key).ok_or_else(|| MusicgenError::MissingTensor { key: key.to_owned() })?;
        if entry.shape != shape {
            return Err(MusicgenError::ShapeMismatch {
                key: key.to_owned(),
                expected: shape.to_vec(),
                found: entry.shape.clone(),
            });
        }
        let cpu = self.file.read(key, entry)?;
        Ok(cpu.f_to_kind(kind)?.f_to_device(self.device)?)
    }

    /// The first of `keys` present (tied weights stored under either name).
    pub fn tied(&self, keys: &[&str], shape: &[i64], kind: Kind) -> Result<Tensor> {
        let key = keys.iter().find(|k| self.file.entries.contains_key(**k)).unwrap_or(&keys[0]);
        self.tensor(key, shape, kind)
    }

    /// A weight-normed convolution weight `prefix.weight` of `shape`, from `weight_g`/`weight_v`, from
    /// `parametrizations.weight.original0`/`original1`, or already folded. The fold runs in f32.
    pub fn conv_weight(&self, prefix: &str, shape: &[i64], kind: Kind) -> Result<Tensor> {
        let has = |k: &str| self.file.entries.contains_key(k);
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
        self.file.entries.contains_key(key)
    }
}
