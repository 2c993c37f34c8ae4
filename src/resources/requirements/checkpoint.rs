//! Requirements derived from a checkpoint on disk: what the folder is, first ([`kind`]: a melody or
//! otherwise unserved config is refused before anything is sized), exact weight bytes per part from
//! the checkpoint's headers in whichever layout ([`super::sizes_of`]) and the working set from the sizes in `config.json`
//! ([`super::ModelShape`]). A damaged header or config is an error, never a panic or a wrong answer.

use std::{path::Path, sync::Arc};

use serde::Deserialize;

use crate::checkpoint::{kind, Checkpoint};

use super::{
    config_error, read_json, sizes_of, weights::HeaderSizes, AudioInCost, DType, ModelShape, Requirements,
    RequirementsError, Source, BF16_COMPUTE_CAPABILITY, CUDA_CONTEXT_BYTES, DEFAULT_MAX_DURATION_S,
    HOST_RUNTIME_BYTES, MIN_COMPUTE_CAPABILITY,
};

#[derive(Deserialize)]
struct GenerationConfig {
    max_length: Option<u64>,
}

/// Requirements derived from the checkpoint in `dir` for generations of `duration_s` seconds in
/// `dtype`: [`CheckpointSizing::read`], then [`CheckpointSizing::requirements`].
pub fn from_checkpoint(dir: &Path, dtype: DType, duration_s: f64) -> Result<Requirements, RequirementsError> {
    Ok(CheckpointSizing::read(dir)?.requirements(dtype, duration_s))
}

/// What a checkpoint's files say about its needs, for every dtype and duration: read once, then
/// each question is arithmetic.
#[derive(Debug, Clone)]
pub struct CheckpointSizing {
    sizes: [(DType, HeaderSizes); DType::ALL.len()],
    shape: ModelShape,
    max_frames: Option<u64>,
    audio_in: AudioInCost,
}

impl CheckpointSizing {
    /// Reads `config.json`, the weights' headers and, when present, `generation_config.json` (its
    /// `max_length` in frames, when > 0, sets the maximum duration; default 30 s).
    pub fn read(dir: &Path) -> Result<Self, RequirementsError> {
        kind::check_config_file(&dir.join("config.json")).map_err(config_error)?;
        // One read of the headers for the weights and for what audio input costs.
        let file = Checkpoint::open_dir(dir)?;
        let sizes = DType::ALL.map(|d| (d, sizes_of(&file, d)));
        let shape = ModelShape::read(&dir.join("config.json"))?;
        let generation = dir.join("generation_config.json");
        let max_frames = if generation.is_file() {
            read_json::<GenerationConfig>(&generation)?.max_length.filter(|&frames| frames > 0)
        } else {
            None
        };
        let audio_in = AudioInCost::of(&file, &shape);
        Ok(Self { sizes, shape, max_frames, audio_in })
    }

    /// The requirements for generations of `duration_s` seconds in `dtype`.
    ///
    /// The host runtime is [`HOST_RUNTIME_BYTES`] plus the largest stored tensor (loads go tensor by
    /// tensor); the CUDA context is [`CUDA_CONTEXT_BYTES`]; bf16 needs compute capability 8.0. The
    /// default batch is 1.
    pub fn requirements(&self, dtype: DType, duration_s: f64) -> Requirements {
        let sizes = self.sizes.iter().find(|(d, _)| *d == dtype).map_or(self.sizes[0].1, |(_, s)| *s);
        Requirements {
            source: Source::Checkpoint,
            dtype,
            duration_s,
            weights: sizes.weights,
            per_sample_bytes: self.shape.working_set(dtype, 1, duration_s).total(),
            cuda_context_bytes: CUDA_CONTEXT_BYTES,
            host_runtime_bytes: HOST_RUNTIME_BYTES.saturating_add(sizes.largest_tensor_bytes),
            min_compute_capability: if dtype == DType::Bf16 {
                BF16_COMPUTE_CAPABILITY
            } else {
                MIN_COMPUTE_CAPABILITY
            },
            default_batch_size: 1,
            max_duration_s: self
                .max_frames
                .map_or(DEFAULT_MAX_DURATION_S, |f| f as f64 / self.shape.frame_rate()),
            audio_in: self.audio_in,
        }
    }
}

/// A folder's files as the operating system describes them: name, length, modification time and
/// inode of each entry (links followed). Equal identities mean the same checkpoint, short of an
/// edit that keeps a file's length within the file system's time resolution.
type Identity = Vec<(std::ffi::OsString, u64, Option<std::time::SystemTime>, u64)>;

fn identity(dir: &Path) -> std::io::Result<Identity> {
    use std::os::unix::fs::MetadataExt;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        // A dangling link is described as missing: it changes the identity when it is mended.
        let meta = std::fs::metadata(entry.path()).ok();
        let (len, modified, inode) = meta.map_or((0, None, 0), |m| (m.len(), m.modified().ok(), m.ino()));
        files.push((entry.file_name(), len, modified, inode));
        if files.len() > MAX_IDENTITY_ENTRIES {
            return Err(std::io::Error::other("too many entries to remember"));
        }
    }
    files.sort();
    Ok(files)
}

/// A folder's identity, when it was read (a count of reads), and what it said.
type Remembered = (Identity, u64, Arc<CheckpointSizing>);

/// Entries past which a folder is not remembered (it is read each time instead).
const MAX_IDENTITY_ENTRIES: usize = 4096;
/// Folders remembered at once; the oldest half is forgotten when it fills.
const MAX_REMEMBERED: usize = 256;

/// Sizings remembered per folder and [`Identity`], so that a question about another duration or
/// dtype of a checkpoint read before lists the folder (a few `stat` calls) instead of reading its
/// headers again, and a checkpoint replaced on disk is read again.
#[derive(Debug, Default)]
pub struct SizingCache {
    entries: std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, Remembered>>,
    reads: std::sync::atomic::AtomicU64,
}

impl SizingCache {
    /// The requirements of the checkpoint in `dir` (a blocking call): from the remembered sizing when
    /// the folder's identity is unchanged, else read.
    pub fn requirements(
        &self,
        dir: &Path,
        dtype: DType,
        duration_s: f64,
    ) -> Result<Requirements, RequirementsError> {
        use std::sync::atomic::Ordering;
        let Ok(id) = identity(dir) else { return from_checkpoint(dir, dtype, duration_s) };
        let remembered = {
            let entries = self.entries.lock().expect("sizing cache lock");
            entries.get(dir).filter(|(known, _, _)| *known == id).map(|(_, _, s)| s.clone())
        };
        if let Some(sizing) = remembered {
            return Ok(sizing.requirements(dtype, duration_s));
        }
        let sizing = Arc::new(CheckpointSizing::read(dir)?);
        let at = self.reads.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.entries.lock().expect("sizing cache lock");
        if entries.len() >= MAX_REMEMBERED {
            let cut = at.saturating_sub(MAX_REMEMBERED as u64 / 2);
            entries.retain(|_, (_, read, _)| *read >= cut);
        }
        entries.insert(dir.to_owned(), (id, at, sizing.clone()));
        Ok(sizing.requirements(dtype, duration_s))
    }

    /// How many times a checkpoint was read (not answered from memory).
    pub fn reads(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }
}
