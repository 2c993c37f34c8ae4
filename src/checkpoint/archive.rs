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

use super::limits::Excess;
use super::pickle::{self, PickleError, PickledTensor};
use super::{element_bytes, CheckpointError, Place, TensorInfo};

/// Largest `data.pkl` read: a state dict's pickle is kilobytes (357 KB for 2 500 tensors); anything
/// near this is not one.
pub const MAX_PICKLE_BYTES: u64 = 64 << 20;

/// Opens the archive at `path` and returns its tensors, each read from file number `file`.
pub(super) fn open(path: &Path, file: usize) -> Result<(File, HashMap<String, TensorInfo>), CheckpointError> {
    let handle = File::open(path).map_err(CheckpointError::io(path))?;
    let file_len = handle.metadata().map_err(CheckpointError::io(path))?.len();
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
    let pickled = read_pickle(path, &mut zip, &prefix)?;
    let tensors = pickle::read_state_dict(&pickled).map_err(|e| pickle_error(path, e))?;
    let mut storages: HashMap<String, (u64, u64)> = HashMap::new();
    let mut out = HashMap::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let key = &tensor.storage.key;
        let (start, size) = match storages.get(key) {
            Some(&found) => found,
            None => {
                let found = storage_record(path, &mut zip, &prefix, &tensor, file_len)?;
                storages.insert(key.clone(), found);
                found
            }
        };
        let element = element_bytes(tensor.storage.dtype);
        let declared = tensor.storage.numel.checked_mul(element);
        if declared.is_none_or(|bytes| bytes > size) {
            return Err(CheckpointError::corrupt(
                path,
                format!("storage {key} of `{name}` declares {} elements of {element} bytes in a {size}-byte record", tensor.storage.numel),
            ));
        }
        let entry = info(&tensor, start, file).ok_or_else(|| {
            let reason = format!(
                "`{name}` (offset {}, size {:?}) overflows its byte range",
                tensor.offset, tensor.shape
            );
            CheckpointError::corrupt(path, reason)
        })?;
        out.insert(name, entry);
    }
    Ok((handle, out))
}

/// The bytes of `<prefix>data.pkl`, refused past [`MAX_PICKLE_BYTES`]; the read stops one byte past
/// the limit whatever size the record declares.
fn read_pickle(path: &Path, zip: &mut ZipArchive<File>, prefix: &str) -> Result<Vec<u8>, CheckpointError> {
    let record = zip.by_name(&format!("{prefix}data.pkl")).map_err(|e| zip_error(path, e))?;
    let too_large = |value| CheckpointError::OverLimit {
        path: path.to_owned(),
        excess: Excess { what: "the size in bytes of its data.pkl".into(), value, limit: MAX_PICKLE_BYTES },
    };
    if record.size() > MAX_PICKLE_BYTES {
        return Err(too_large(record.size()));
    }
    let mut bytes = Vec::with_capacity(record.size() as usize);
    record.take(MAX_PICKLE_BYTES + 1).read_to_end(&mut bytes).map_err(CheckpointError::io(path))?;
    if bytes.len() as u64 > MAX_PICKLE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// The pickle reader's refusal as the checkpoint's, naming the file.
fn pickle_error(path: &Path, e: PickleError) -> CheckpointError {
    match e {
        PickleError::Refused(global) => CheckpointError::Refused { path: path.to_owned(), global },
        PickleError::Malformed(reason) => CheckpointError::corrupt(path, format!("data.pkl: {reason}")),
        PickleError::OverLimit { limit, value, at } => CheckpointError::OverLimit {
            path: path.to_owned(),
            excess: Excess {
                what: format!("{limit} in its data.pkl (at byte {at})"),
                value: value as u64,
                limit: limit.max() as u64,
            },
        },
    }
}

/// The `TensorInfo` of a pickled view whose storage starts at byte `start` of the file; `None` when
/// its byte count or position overflows.
fn info(t: &PickledTensor, start: u64, file: usize) -> Option<TensorInfo> {
    let element = element_bytes(t.storage.dtype);
    let numel = t.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64))?;
    let place = if t.is_contiguous() {
        Place::Contiguous(t.offset.checked_mul(element)?.checked_add(start)?)
    } else {
        Place::Strided { storage: start, offset: t.offset, strides: t.strides.clone() }
    };
    let bytes = numel.checked_mul(element)?;
    Some(TensorInfo { dtype: t.storage.dtype, shape: t.shape.clone(), bytes, file, place })
}

/// `<prefix>/` of the one `data.pkl` in the archive (torch names the folder after the file, or
/// `archive`, depending on its version).
fn data_pickle_prefix(path: &Path, zip: &ZipArchive<File>) -> Result<String, CheckpointError> {
    // A name that does not decode is not torch's (it writes ASCII names); it cannot be data.pkl.
    let mut found = zip
        .file_names()
        .filter_map(Result::ok)
        .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1);
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
/// `torch.save` writes it, so its bytes can be read in place, and lie inside the file's
/// `file_len` bytes.
fn storage_record(
    path: &Path,
    zip: &mut ZipArchive<File>,
    prefix: &str,
    tensor: &PickledTensor,
    file_len: u64,
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
    let (start, size) = (record.data_start(), record.size());
    match start.and_then(|start| start.checked_add(size).filter(|&end| end <= file_len).map(|_| start)) {
        Some(start) => Ok((start, size)),
        None => Err(CheckpointError::corrupt(
            path,
            format!("storage {name} declares {size} bytes at byte {start:?}, past the {file_len}-byte file"),
        )),
    }
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
