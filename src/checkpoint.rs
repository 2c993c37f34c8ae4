//! The one reader of `model.safetensors` files, shared by requirement sizing (header only) and model
//! loading (tensor by tensor). Free of libtorch, so sizing works in a build without it.
//!
//! The header is parsed and validated by the `safetensors` crate over a memory map of the file: the
//! format's 100 MB header limit, a header length past the end of the file, shapes whose element count
//! overflows, tensors whose byte range disagrees with shape and dtype, and data the header does not
//! cover exactly are all errors, never panics. Only the header's pages are touched; the map is dropped
//! once the header is checked, and tensor bytes are read one tensor at a time with positioned reads,
//! so a load never holds the whole file in memory at once.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
pub use safetensors::{tensor::TensorInfo, Dtype};

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
}

/// A safetensors file whose header has been validated.
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    file: File,
    data_start: u64,
    tensors: HashMap<String, TensorInfo>,
}

impl Checkpoint {
    /// Opens `path` and validates its header.
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        let io = |source| CheckpointError::Io { path: path.to_owned(), source };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and private to this call; it only dangles if another process
        // truncates the file while the header is parsed, the risk every reader of a mapped file takes.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let (header_len, metadata) = SafeTensors::read_metadata(&map)
            .map_err(|e| CheckpointError::Corrupt { path: path.to_owned(), reason: describe(&e, &map) })?;
        let tensors = metadata.tensors().into_iter().map(|(name, info)| (name, info.clone())).collect();
        Ok(Self { path: path.to_owned(), file, data_start: 8 + header_len as u64, tensors })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every tensor the header declares, by name (`__metadata__` is not a tensor).
    pub fn tensors(&self) -> &HashMap<String, TensorInfo> {
        &self.tensors
    }

    /// The header entry of `name`.
    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    /// Whether the header declares `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The stored bytes of `info` (an entry of this checkpoint), read from the file now.
    pub fn read(&self, info: &TensorInfo) -> Result<Vec<u8>, CheckpointError> {
        let (begin, end) = info.data_offsets;
        let mut bytes = vec![0u8; end - begin];
        self.file
            .read_exact_at(&mut bytes, self.data_start + begin as u64)
            .map_err(|source| CheckpointError::Io { path: self.path.clone(), source })?;
        Ok(bytes)
    }
}

/// Elements of a tensor; the header check guarantees the product does not overflow.
pub fn numel(info: &TensorInfo) -> u64 {
    info.shape.iter().map(|&d| d as u64).product()
}

/// Bytes a tensor occupies in the file.
pub fn stored_bytes(info: &TensorInfo) -> u64 {
    let (begin, end) = info.data_offsets;
    (end - begin) as u64
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

/// The crate's reason, with the sizes that explain it: the file's length and the header length its
/// first 8 bytes declare.
fn describe(e: &safetensors::SafeTensorError, file: &[u8]) -> String {
    match file.first_chunk::<8>() {
        Some(prefix) => format!(
            "{e} (a {}-byte file declaring a {}-byte header)",
            file.len(),
            u64::from_le_bytes(*prefix)
        ),
        None => format!("{e} (a {}-byte file, shorter than the 8-byte header length)", file.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of an 8-byte length, `header`, then `data_len` zero bytes.
    fn file(header: &[u8], data_len: usize) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.resize(bytes.len() + data_len, 0);
        bytes
    }

    fn open(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, bytes).unwrap();
        Checkpoint::open(&path)
    }

    fn corrupt(bytes: &[u8]) -> String {
        match open(bytes) {
            Err(CheckpointError::Corrupt { reason, .. }) => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_valid_file_gives_its_tensors_and_their_bytes() {
        let header = br#"{"__metadata__": {"format": "pt"},
            "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "n": {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]}}"#;
        let mut bytes = file(header, 0);
        bytes.extend(1.5f32.to_le_bytes().iter().chain(&(-2.0f32).to_le_bytes()));
        bytes.extend(7i64.to_le_bytes());
        let c = open(&bytes).unwrap();
        assert_eq!(c.tensors().len(), 2);
        let w = c.get("w").unwrap();
        assert_eq!((w.dtype, numel(w), stored_bytes(w), is_float(w.dtype)), (Dtype::F32, 2, 8, true));
        assert_eq!(c.read(w).unwrap(), [1.5f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat());
        let n = c.get("n").unwrap();
        assert!(!is_float(n.dtype) && c.contains("n") && !c.contains("__metadata__"));
        assert_eq!(c.read(n).unwrap(), 7i64.to_le_bytes());
    }

    #[test]
    fn a_header_longer_than_the_file_is_an_error() {
        let reason = corrupt(&(1000u64).to_le_bytes());
        assert!(
            reason.contains("invalid header length") && reason.contains("declaring a 1000-byte"),
            "{reason}"
        );
        let reason = corrupt(&u64::MAX.to_le_bytes());
        assert!(reason.contains("header too large") && reason.contains(&u64::MAX.to_string()), "{reason}");
        let mut cut = file(br#"{"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}"#, 8);
        cut.truncate(20);
        assert!(corrupt(&cut).contains("a 20-byte file"));
        for short in [&[][..], &[1, 2, 3]] {
            assert!(corrupt(short).contains("shorter than the 8-byte header length"));
        }
    }

    #[test]
    fn overflowing_or_inconsistent_shapes_are_errors() {
        let tensor = |shape: &str, offsets: &str| {
            format!(r#"{{"t": {{"dtype": "F32", "shape": {shape}, "data_offsets": {offsets}}}}}"#)
        };
        let huge = tensor("[4294967296, 4294967296, 4294967296]", "[0, 8]");
        assert!(corrupt(&file(huge.as_bytes(), 8)).contains("overflow"));
        let times_dtype = tensor("[4611686018427387904]", "[0, 8]");
        assert!(corrupt(&file(times_dtype.as_bytes(), 8)).contains("overflow"));
        assert!(corrupt(&file(tensor("[3]", "[0, 8]").as_bytes(), 8)).contains("invalid shape"));
        assert!(corrupt(&file(tensor("[2]", "[8, 0]").as_bytes(), 8)).contains("invalid offset"));
        assert!(corrupt(&file(tensor("[2]", "[0, 8]").as_bytes(), 4)).contains("not fully covered"));
        assert!(corrupt(&file(tensor("[-2]", "[0, 8]").as_bytes(), 8)).contains("invalid JSON"));
        assert!(corrupt(&file(b"not json", 0)).contains("invalid JSON"));
    }

    #[test]
    fn a_missing_file_is_an_io_error() {
        let err = Checkpoint::open(Path::new("/nonexistent/model.safetensors")).unwrap_err();
        assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
    }
}
