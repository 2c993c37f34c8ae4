//! What the loader reads of a model folder's small files, at most: the JSON files (a shard index,
//! `config.json` and the configs beside it) are read whole and parsed into memory, so each is
//! refused past a size far above any real one before a byte of it is parsed, rather than letting a
//! file anyone placed under a model root decide how much memory a listing takes. The limits on the
//! weights' own headers live with their readers ([`super::safetensors::MAX_HEADER_BYTES`],
//! [`super::archive::MAX_PICKLE_BYTES`] and the pickle reader's limits in [`super::pickle`]).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::CheckpointError;

/// Largest shard index (`model.safetensors.index.json`, `pytorch_model.bin.index.json`) read: the
/// published MusicGen indexes are under 200 KiB, one line per tensor.
pub const MAX_INDEX_BYTES: u64 = 16 << 20;

/// Largest `config.json`, `generation_config.json` or `preprocessor_config.json` read: the published
/// ones are under 10 KiB.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// How far a file went past a limit, with the numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is {value}, over the limit of {limit}")]
pub struct Excess {
    /// What was measured, and where (`the size in bytes of this shard index`).
    pub what: String,
    /// What the file reached.
    pub value: u64,
    /// The limit.
    pub limit: u64,
}

/// The bytes of `path` (a `what`, named in the refusal), which must be at most `limit` bytes long.
/// The size is checked before reading and the read stops one byte past the limit, so a file that
/// grows in between is refused too.
pub fn read_bounded(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, CheckpointError> {
    let file = File::open(path).map_err(CheckpointError::io(path))?;
    let size = file.metadata().map_err(CheckpointError::io(path))?.len();
    let over = |value| CheckpointError::OverLimit {
        path: path.to_owned(),
        excess: Excess { what: format!("the size in bytes of this {what}"), value, limit },
    };
    if size > limit {
        return Err(over(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(CheckpointError::io(path))?;
    if bytes.len() as u64 > limit {
        return Err(over(bytes.len() as u64));
    }
    Ok(bytes)
}
