//! One safetensors file: its header, parsed and validated by the `safetensors` crate over a memory
//! map of the file. The format's 100 MB header limit, a header length past the end of the file,
//! shapes whose element count overflows, tensors whose byte range disagrees with shape and dtype, and
//! data the header does not cover exactly are all errors, never panics. Only the header's pages are
//! touched; the map is dropped once the header is checked, and tensor bytes are read later with
//! positioned reads (a mapped file truncated under a load would be a SIGBUS, a read is an error).

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use safetensors::SafeTensors;

use super::{CheckpointError, Place, TensorInfo};

/// Opens `path`, validates its header and returns its tensors, each read from file number `file`.
pub(super) fn open(path: &Path, file: usize) -> Result<(File, HashMap<String, TensorInfo>), CheckpointError> {
    let handle = File::open(path).map_err(CheckpointError::io(path))?;
    // SAFETY: the map is read-only and private to this call; it only dangles if another process
    // truncates the file while the header is parsed, the risk every reader of a mapped file takes.
    let map = unsafe { memmap2::Mmap::map(&handle) }.map_err(CheckpointError::io(path))?;
    let (header_len, metadata) =
        SafeTensors::read_metadata(&map).map_err(|e| CheckpointError::corrupt(path, describe(&e, &map)))?;
    let data_start = 8 + header_len as u64;
    let tensors = metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| {
            let (begin, end) = info.data_offsets;
            let entry = TensorInfo {
                dtype: info.dtype,
                shape: info.shape.clone(),
                bytes: (end - begin) as u64,
                file,
                place: Place::Contiguous(data_start + begin as u64),
            };
            (name, entry)
        })
        .collect();
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
