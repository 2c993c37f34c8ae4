//! `maestro-server convert-checkpoint DIR`: writes a folder's weights, in whatever layout it holds,
//! as one `model.safetensors` beside them, which then wins over the pickle files ([`super::Layout`])
//! and is mapped and validated instead of unpickled. Tensors are copied one at a time (the process
//! holds one tensor at once), in name order, into a temporary file in the folder that is renamed
//! into place only once complete and re-opened, so an interrupted conversion leaves no half file
//! under the name a load would read.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{stored_bytes, Checkpoint, CheckpointError, Layout};

/// What a conversion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// The layout read.
    pub from: Layout,
    /// The file written.
    pub path: PathBuf,
    /// Tensors written.
    pub tensors: usize,
    /// Bytes of tensor data written.
    pub bytes: u64,
}

/// Converts the weights of `dir` into `dir/model.safetensors`; a folder that already has one is
/// left alone (an error saying so).
pub fn convert_dir(dir: &Path) -> Result<Converted, CheckpointError> {
    let out = dir.join(Layout::Safetensors.entry_file());
    if out.exists() {
        return Err(CheckpointError::corrupt(
            &out,
            "already exists: the folder loads from it, nothing to convert",
        ));
    }
    let source = Checkpoint::open_dir(dir)?;
    let partial = dir.join(".model.safetensors.partial");
    let written = write_safetensors(&source, &partial).and_then(|bytes| {
        std::fs::rename(&partial, &out).map_err(CheckpointError::io(&out))?;
        Ok(bytes)
    });
    let bytes = written.inspect_err(|_| {
        let _ = std::fs::remove_file(&partial);
    })?;
    let check = Checkpoint::open(&out)?;
    if check.tensors().len() != source.tensors().len() {
        let reason = format!("wrote {} tensors of {}", check.tensors().len(), source.tensors().len());
        return Err(CheckpointError::corrupt(&out, reason));
    }
    Ok(Converted { from: source.layout(), path: out, tensors: source.tensors().len(), bytes })
}

/// Writes every tensor of `source` to a safetensors file at `path`; returns the data bytes.
pub fn write_safetensors(source: &Checkpoint, path: &Path) -> Result<u64, CheckpointError> {
    let names: BTreeMap<&str, _> = source.tensors().iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({ "format": "pt" }));
    let mut offset = 0u64;
    for (name, info) in &names {
        let end = offset.checked_add(stored_bytes(info)).ok_or_else(|| {
            CheckpointError::corrupt(
                source.path(),
                format!("tensors past u64::MAX bytes in all, at `{name}`"),
            )
        })?;
        let entry = serde_json::json!({ "dtype": info.dtype.to_string(), "shape": info.shape, "data_offsets": [offset, end] });
        header.insert((*name).to_owned(), entry);
        offset = end;
    }
    let mut text = serde_json::to_vec(&header).expect("a JSON map serializes");
    // The format pads the header with spaces so the data starts 8-byte aligned.
    text.resize(text.len().div_ceil(8) * 8, b' ');
    let file = File::create(path).map_err(CheckpointError::io(path))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let io = CheckpointError::io(path);
    w.write_all(&(text.len() as u64).to_le_bytes()).and_then(|()| w.write_all(&text)).map_err(io)?;
    let mut buffer = Vec::new();
    for info in names.values() {
        buffer.resize(stored_bytes(info) as usize, 0);
        source.read_into(info, &mut buffer)?;
        w.write_all(&buffer).map_err(CheckpointError::io(path))?;
    }
    let file =
        w.into_inner().map_err(|e| CheckpointError::Io { path: path.to_owned(), source: e.into_error() })?;
    file.sync_all().map_err(CheckpointError::io(path))?;
    Ok(offset)
}
