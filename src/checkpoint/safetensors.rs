//! One safetensors file: its header, parsed and validated by the `safetensors` crate over a memory
//! map of the file. A header longer than [`MAX_HEADER_BYTES`], a header length past the end of the file,
//! shapes whose element count overflows, tensors whose byte range disagrees with shape and dtype, and
//! data the header does not cover exactly are all errors, never panics. Only the header's pages are
//! touched; the map is dropped once the header is checked, and tensor bytes are read later with
//! positioned reads (a mapped file truncated under a load would be a SIGBUS, a read is an error).

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use safetensors::SafeTensors;

use super::limits::Excess;
use super::{CheckpointError, Place, TensorInfo};

/// Largest header read, in bytes (the format itself allows 100 MB). The header is JSON parsed
/// whole, one entry per tensor: a published MusicGen header is a few hundred KiB.
pub const MAX_HEADER_BYTES: u64 = 16 << 20;

/// Opens `path`, validates its header and returns its tensors, each read from file number `file`.
pub(super) fn open(path: &Path, file: usize) -> Result<(File, HashMap<String, TensorInfo>), CheckpointError> {
    let handle = File::open(path).map_err(CheckpointError::io(path))?;
    // SAFETY: the map is read-only and private to this call; it only dangles if another process
    // truncates the file while the header is parsed, the risk every reader of a mapped file takes.
    let map = unsafe { memmap2::Mmap::map(&handle) }.map_err(CheckpointError::io(path))?;
    if let Some(declared) = map.first_chunk::<8>().map(|b| u64::from_le_bytes(*b)) {
        if declared > MAX_HEADER_BYTES {
            return Err(CheckpointError::OverLimit {
                path: path.to_owned(),
                excess: Excess {
                    what: "the header length in bytes its first 8 bytes declare".into(),
                    value: declared,
                    limit: MAX_HEADER_BYTES,
                },
            });
        }
    }
    let (header_len, metadata) =
        SafeTensors::read_metadata(&map).map_err(|e| CheckpointError::corrupt(path, describe(&e, &map)))?;
    let data_start = 8 + header_len as u64;
    let mut tensors = HashMap::new();
    for (name, info) in metadata.tensors() {
        // The crate checked that the offsets are ordered and cover the data; checked again here, as
        // they came from the file.
        let (begin, end) = info.data_offsets;
        let bytes = end.checked_sub(begin).map(|b| b as u64);
        let at = data_start.checked_add(begin as u64);
        let (Some(bytes), Some(at)) = (bytes, at) else {
            let reason = format!("`{name}` has data_offsets [{begin}, {end}]");
            return Err(CheckpointError::corrupt(path, reason));
        };
        let entry = TensorInfo {
            dtype: info.dtype,
            shape: info.shape.clone(),
            bytes,
            file,
            place: Place::Contiguous(at),
        };
        tensors.insert(name, entry);
    }
    Ok((handle, tensors))
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
