//! The one loader of MusicGen checkpoints: it resolves a model folder's layout (one safetensors
//! file, safetensors shards with `model.safetensors.index.json`, a `torch.save` pickle, or pickle
//! shards with `pytorch_model.bin.index.json`, see [`layout`]) into named tensors, so requirement
//! sizing (headers only) and model loading (tensor by tensor) never see files. Free of libtorch, so
//! sizing works in a build without it; [`kind`] says what a folder is before anything is loaded.
//!
//! Opening reads headers only: the safetensors header (validated by the `safetensors` crate,
//! [`safetensors`]) or the pickle and zip directory of a `torch.save` archive (a restricted reader
//! that runs no pickle code, [`pickle`] and [`archive`]). Tensor bytes are read later, one tensor at
//! a time, with positioned reads straight into the caller's buffer, so a load holds at most the
//! tensor being read besides what it keeps.
//!
//! Every file is untrusted: a size, count, offset, stride or shape read from one is combined with
//! checked arithmetic, and what a file may cost to open is bounded ([`limits`]), so a hostile
//! checkpoint is an error naming the file and the reason, never a panic, an abort or a memory spike.

pub mod archive;
pub mod config;
pub mod convert;
pub mod fuzz;
pub mod kind;
pub mod layout;
pub mod limits;
pub mod pickle;
pub mod safetensors;

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub use ::safetensors::Dtype;
pub use layout::Layout;

/// Why a checkpoint cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be opened, mapped or read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The header is unusable; nothing was loaded.
    #[error("corrupt checkpoint {}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the sizes involved.
        reason: String,
    },
    /// The folder holds none of the files a layout starts from.
    #[error("no weights in {}: looked for {}", dir.display(), layout::ENTRY_FILES.join(", "))]
    NoWeights {
        /// The model folder.
        dir: PathBuf,
    },
    /// An index routes tensors to a shard that is not there.
    #[error("{} routes `{key}` to {shard}, which is missing", index.display())]
    MissingShard {
        /// The index file.
        index: PathBuf,
        /// The shard's file name.
        shard: String,
        /// One tensor routed to it.
        key: String,
    },
    /// An index routes a tensor to a shard that does not hold it.
    #[error("{} routes `{key}` to {shard}, which lacks it", index.display())]
    KeyNotInShard {
        /// The index file.
        index: PathBuf,
        /// The shard's file name.
        shard: String,
        /// The tensor.
        key: String,
    },
    /// A pickle names a global other than the few that rebuild tensors; nothing of it was run.
    #[error(
        "refusing {}: its pickle names `{global}`, and only tensors, storages and dicts are read \
         (no pickle code is run)", path.display()
    )]
    Refused {
        /// The pickle checkpoint.
        path: PathBuf,
        /// The global, `module.name`.
        global: String,
    },
    /// The file goes past one of the loader's limits (a file size, the pickle's nesting depth, memo
    /// or opcode count); nothing of it is used.
    #[error("refusing {}: {excess}", path.display())]
    OverLimit {
        /// The file.
        path: PathBuf,
        /// The limit and what the file reached.
        excess: limits::Excess,
    },
    /// `config.json` describes a model or a setting that is not served; nothing was loaded.
    #[error("{} describes a model Maestro does not serve: {reason}", path.display())]
    Unsupported {
        /// The config file.
        path: PathBuf,
        /// What is not served, naming the field and its value.
        reason: String,
    },
}

impl CheckpointError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            CheckpointError::Io { path, .. }
            | CheckpointError::Corrupt { path, .. }
            | CheckpointError::Refused { path, .. }
            | CheckpointError::OverLimit { path, .. }
            | CheckpointError::Unsupported { path, .. } => path,
            CheckpointError::NoWeights { dir } => dir,
            CheckpointError::MissingShard { index, .. } | CheckpointError::KeyNotInShard { index, .. } => {
                index
            }
        }
    }

    fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        CheckpointError::Corrupt { path: path.to_owned(), reason: reason.into() }
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| CheckpointError::Io { path: path.to_owned(), source }
    }
}

/// One tensor of a checkpoint: what sizing needs (dtype, shape, bytes) and where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The stored element type.
    pub dtype: Dtype,
    /// The shape, outermost first.
    pub shape: Vec<usize>,
    bytes: u64,
    file: usize,
    place: Place,
}

/// Where a tensor's bytes are in its file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Place {
    /// Row-major bytes starting at this absolute offset.
    Contiguous(u64),
    /// A strided view of a pickle storage: the storage's absolute offset, the view's first element
    /// and its strides, in elements.
    Strided { storage: u64, offset: u64, strides: Vec<u64> },
}

/// The tensors of a model folder (or of one safetensors file), by name.
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    layout: Layout,
    files: Vec<(PathBuf, File)>,
    tensors: HashMap<String, TensorInfo>,
}

impl Checkpoint {
    /// Opens one safetensors file and validates its header.
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        let (file, tensors) = safetensors::open(path, 0)?;
        Ok(Self {
            path: path.to_owned(),
            layout: Layout::Safetensors,
            files: vec![(path.to_owned(), file)],
            tensors,
        })
    }

    /// Opens the weights of the model folder `dir` in whichever layout it holds (safetensors first,
    /// see [`Layout::detect`]), reading headers and indexes only.
    pub fn open_dir(dir: &Path) -> Result<Self, CheckpointError> {
        let layout = Layout::detect(dir).ok_or_else(|| CheckpointError::NoWeights { dir: dir.to_owned() })?;
        let entry = dir.join(layout.entry_file());
        if !layout.is_sharded() {
            let (file, tensors) = match layout {
                Layout::Pickle => archive::open(&entry, 0)?,
                _ => safetensors::open(&entry, 0)?,
            };
            return Ok(Self { path: entry.clone(), layout, files: vec![(entry, file)], tensors });
        }
        let index = layout::Index::read(&entry)?;
        let mut files = Vec::new();
        let mut tensors = HashMap::new();
        for (n, (shard, keys)) in index.shards().into_iter().enumerate() {
            let path = dir.join(shard);
            if !path.is_file() {
                return Err(CheckpointError::MissingShard {
                    index: entry,
                    shard: shard.into(),
                    key: keys[0].into(),
                });
            }
            let (file, mut found) = match layout {
                Layout::PickleShards => archive::open(&path, n)?,
                _ => safetensors::open(&path, n)?,
            };
            for key in keys {
                let info = found.remove(key).ok_or_else(|| CheckpointError::KeyNotInShard {
                    index: entry.clone(),
                    shard: shard.into(),
                    key: key.into(),
                })?;
                tensors.insert(key.to_owned(), info);
            }
            files.push((path, file));
        }
        Ok(Self { path: entry, layout, files, tensors })
    }

    /// The file opened first: the safetensors or pickle file, or the index of a sharded layout.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How the weights are laid out.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Every file tensors are read from, in index order.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(p, _)| p.as_path())
    }

    /// Every tensor, by name (`__metadata__` is not a tensor).
    pub fn tensors(&self) -> &HashMap<String, TensorInfo> {
        &self.tensors
    }

    /// Every tensor once, by name: a name whose entry is the very bytes of an earlier name (two
    /// names over one pickle storage, as tied weights are saved) is left out, so sizes count what a
    /// load reads.
    pub fn distinct_tensors(&self) -> Vec<(&str, &TensorInfo)> {
        let mut names: Vec<(&str, &TensorInfo)> = self.tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        names.sort_by_key(|(name, _)| *name);
        let mut seen = std::collections::HashSet::new();
        names.retain(|(_, info)| seen.insert((info.file, &info.place, info.dtype.to_string(), &info.shape)));
        names
    }

    /// The entry of `name`.
    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    /// Whether the checkpoint holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The file `info` (an entry of this checkpoint) is read from.
    pub fn file_of(&self, info: &TensorInfo) -> &Path {
        &self.files[info.file].0
    }

    /// The stored bytes of `info` (an entry of this checkpoint), row-major, read from its file now.
    pub fn read(&self, info: &TensorInfo) -> Result<Vec<u8>, CheckpointError> {
        let len = usize::try_from(info.bytes).map_err(|_| {
            CheckpointError::corrupt(self.file_of(info), format!("a {}-byte tensor", info.bytes))
        })?;
        let mut bytes = vec![0u8; len];
        self.read_into(info, &mut bytes)?;
        Ok(bytes)
    }

    /// Reads the stored bytes of `info` into `out`, which must be [`stored_bytes`] long: a load can
    /// read straight into the tensor it keeps, with no staging copy.
    pub fn read_into(&self, info: &TensorInfo, out: &mut [u8]) -> Result<(), CheckpointError> {
        let (path, file) = &self.files[info.file];
        if out.len() as u64 != info.bytes {
            return Err(CheckpointError::corrupt(
                path,
                format!("a {}-byte buffer for a {}-byte tensor", out.len(), info.bytes),
            ));
        }
        match &info.place {
            Place::Contiguous(at) => file.read_exact_at(out, *at).map_err(CheckpointError::io(path)),
            Place::Strided { storage, offset, strides } => {
                let element = element_bytes(info.dtype);
                // Opening checked these against the storage; checked again, as they came from the file.
                let bytes = pickle::span(&info.shape, strides).and_then(|s| s.checked_mul(element));
                let start = offset.checked_mul(element).and_then(|o| o.checked_add(*storage));
                let (Some(len), Some(start)) = (bytes.and_then(|b| usize::try_from(b).ok()), start) else {
                    let reason = format!("a view (offset {offset}, strides {strides:?}) that overflows");
                    return Err(CheckpointError::corrupt(path, reason));
                };
                let mut source = vec![0u8; len];
                file.read_exact_at(&mut source, start).map_err(CheckpointError::io(path))?;
                gather(&source, &info.shape, strides, element as usize, out);
                Ok(())
            }
        }
    }
}

/// Copies the strided view `source` (elements of `element` bytes) into row-major `out`. `source`
/// is the view's whole span, so no element offset computed here exceeds its length.
fn gather(source: &[u8], shape: &[usize], strides: &[u64], element: usize, out: &mut [u8]) {
    let mut index = vec![0usize; shape.len()];
    for chunk in out.chunks_exact_mut(element) {
        let at: u64 = index.iter().zip(strides).map(|(&i, &s)| i as u64 * s).sum();
        let at = at as usize * element;
        chunk.copy_from_slice(&source[at..at + element]);
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
}

/// Bytes of one element of `dtype` (every type a pickle storage or a loaded tensor has is at least
/// a byte wide).
fn element_bytes(dtype: Dtype) -> u64 {
    (dtype.bitsize() / 8) as u64
}

/// Elements of a tensor; opening refuses a shape whose product overflows (saturating here all the
/// same, so no entry can make this panic).
pub fn numel(info: &TensorInfo) -> u64 {
    info.shape.iter().fold(1u64, |n, &d| n.saturating_mul(d as u64))
}

/// Bytes a tensor occupies as stored (row-major).
pub fn stored_bytes(info: &TensorInfo) -> u64 {
    info.bytes
}

/// Whether a stored dtype is a floating-point type (converted when a model is loaded in another
/// precision; integers and booleans keep their stored size).
pub fn is_float(dtype: Dtype) -> bool {
    !matches!(
        dtype,
        Dtype::BOOL
            | Dtype::U8
            | Dtype::I8
            | Dtype::I16
            | Dtype::U16
            | Dtype::I32
            | Dtype::U32
            | Dtype::I64
            | Dtype::U64
    )
}

#[cfg(test)]
mod tests;
