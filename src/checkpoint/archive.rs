//! A `torch.save` file (`pytorch_model.bin`, or one pickle shard): a zip archive holding
//! `<prefix>/data.pkl` (the pickled state dict, read by [`super::pickle`]) and one uncompressed record
//! `<prefix>/data/<key>` per storage. Opening reads the zip directory and the pickle only; each
//! tensor's place is the storage record's offset in the file, so its bytes are read later with one
//! positioned read, like a safetensors tensor. The legacy (pre-1.6) non-zip format is refused.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use zip::{result::ZipError, CompressionMethod, ZipArchive};

use super::pickle::{self, PickleError, PickledTensor};
use super::{element_bytes, CheckpointError, Place, TensorInfo};

/// Largest `data.pkl` read: a state dict's pickle is kilobytes; anything near this is not one.
const MAX_PICKLE_BYTES: u64 = 64 << 20;

/// Opens the archive at `path` and returns its tensors, each read from file number `file`.
pub(super) fn open(path: &Path, file: usize) -> Result<(File, HashMap<String, TensorInfo>), CheckpointError> {
    let handle = File::open(path).map_err(CheckpointError::io(path))?;
    let mut zip = ZipArchive::new(handle.try_clone().map_err(CheckpointError::io(path))?)
        .map_err(|e| not_an_archive(path, e))?;
    let prefix = data_pickle_prefix(path, &zip)?;
    if let Ok(mut order) = zip.by_name(&format!("{prefix}byteorder")) {
        let mut text = String::new();
        let _ = order.by_ref().take(16).read_to_string(&mut text);
        if text.trim() != "little" {
            return Err(CheckpointError::corrupt(
                path,
                format!("byteorder {text:?} (only little-endian is read)"),
            ));
        }
    }
    let pickled = {
        let mut record = zip.by_name(&format!("{prefix}data.pkl")).map_err(|e| zip_error(path, e))?;
        if record.size() > MAX_PICKLE_BYTES {
            let reason = format!("data.pkl is {} bytes (at most {MAX_PICKLE_BYTES} read)", record.size());
            return Err(CheckpointError::corrupt(path, reason));
        }
        let mut bytes = Vec::with_capacity(record.size() as usize);
        record.read_to_end(&mut bytes).map_err(CheckpointError::io(path))?;
        bytes
    };
    let tensors = pickle::read_state_dict(&pickled).map_err(|e| match e {
        PickleError::Refused(global) => CheckpointError::Refused { path: path.to_owned(), global },
        PickleError::Malformed(reason) => CheckpointError::corrupt(path, format!("data.pkl: {reason}")),
    })?;
    let mut storages: HashMap<String, (u64, u64)> = HashMap::new();
    let mut out = HashMap::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let key = &tensor.storage.key;
        let (start, size) = match storages.get(key) {
            Some(&found) => found,
            None => {
                let found = storage_record(path, &mut zip, &prefix, &tensor)?;
                storages.insert(key.clone(), found);
                found
            }
        };
        let element = element_bytes(tensor.storage.dtype);
        if tensor.storage.numel.saturating_mul(element) > size {
            return Err(CheckpointError::corrupt(
                path,
                format!("storage {key} of `{name}` declares {} elements of {element} bytes in a {size}-byte record", tensor.storage.numel),
            ));
        }
        out.insert(name, info(tensor, start, file));
    }
    Ok((handle, out))
}

/// The `TensorInfo` of a pickled view whose storage starts at byte `start` of the file.
fn info(t: PickledTensor, start: u64, file: usize) -> TensorInfo {
    let element = element_bytes(t.storage.dtype);
    let numel: u64 = t.shape.iter().map(|&d| d as u64).product();
    let place = if t.is_contiguous() {
        Place::Contiguous(start + t.offset * element)
    } else {
        Place::Strided { storage: start, offset: t.offset, strides: t.strides.clone() }
    };
    TensorInfo { dtype: t.storage.dtype, shape: t.shape, bytes: numel * element, file, place }
}

/// `<prefix>/` of the one `data.pkl` in the archive (torch names the folder after the file, or
/// `archive`, depending on its version).
fn data_pickle_prefix(path: &Path, zip: &ZipArchive<File>) -> Result<String, CheckpointError> {
    let mut found = zip.file_names().filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1);
    match (found.next(), found.next()) {
        (Some(name), None) => Ok(name.trim_end_matches("data.pkl").to_owned()),
        (None, _) => Err(CheckpointError::corrupt(
            path,
            "a zip archive without <folder>/data.pkl: not a torch.save file",
        )),
        (Some(_), Some(_)) => {
            Err(CheckpointError::corrupt(path, "a zip archive with several data.pkl records"))
        }
    }
}

/// Offset and length of the storage record `tensor` views; it must be stored uncompressed, as
/// `torch.save` writes it, so its bytes can be read in place.
fn storage_record(
    path: &Path,
    zip: &mut ZipArchive<File>,
    prefix: &str,
    tensor: &PickledTensor,
) -> Result<(u64, u64), CheckpointError> {
    let name = format!("{prefix}data/{}", tensor.storage.key);
    let record = zip.by_name(&name).map_err(|e| match e {
        ZipError::FileNotFound => {
            CheckpointError::corrupt(path, format!("data.pkl names storage {name}, which the archive lacks"))
        }
        other => zip_error(path, other),
    })?;
    if record.compression() != CompressionMethod::Stored {
        let reason = format!(
            "storage {name} is compressed ({}); torch.save stores them uncompressed",
            record.compression()
        );
        return Err(CheckpointError::corrupt(path, reason));
    }
    Ok((record.data_start(), record.size()))
}

fn not_an_archive(path: &Path, e: ZipError) -> CheckpointError {
    match e {
        ZipError::Io(source) => CheckpointError::Io { path: path.to_owned(), source },
        other => CheckpointError::corrupt(
            path,
            format!("not a zip archive ({other}); torch.save files before torch 1.6 are not read: load and save it with a newer torch"),
        ),
    }
}

fn zip_error(path: &Path, e: ZipError) -> CheckpointError {
    match e {
        ZipError::Io(source) => CheckpointError::Io { path: path.to_owned(), source },
        other => CheckpointError::corrupt(path, other.to_string()),
    }
}
