//! What a model needs, from one of three sources: the built-in table (overridable from the config
//! file, `requirements/table.rs`), the checkpoint on disk (safetensors header and `config.json`, never
//! the weights themselves: `requirements/checkpoint.rs`), or a measurement after a real load.
//!
//! [`Requirements`] holds a model's figures for one dtype and duration: weights by part
//! (`requirements/weights.rs`, in the part types of the one [`DType`]), the working set of one sample
//! (`requirements/working_set.rs`), the host runtime and the CUDA context. [`Requirements::need`]
//! (`requirements/need.rs`) turns them into what one device needs for one batch; that is the only
//! place bytes are added up. Sizes in the table are in GB = 10^9 bytes.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::checkpoint::limits::{read_bounded, MAX_CONFIG_BYTES};
use crate::checkpoint::CheckpointError;

/// One gigabyte as the table counts it: 10^9 bytes.
pub const GB: u64 = 1_000_000_000;
/// Device memory a CUDA context takes before any tensor is allocated.
pub const CUDA_CONTEXT_BYTES: u64 = 500_000_000;
/// Host memory of the runtime around a model (libtorch, CUDA host libraries, tokenizer).
pub const HOST_RUNTIME_BYTES: u64 = GB;
/// Classifier-free guidance runs a conditional and an unconditional row for every sample.
pub const CFG_FACTOR: u64 = 2;
/// Text tokens assumed per prompt for the cross-attention cache and encoder activations.
pub const PROMPT_TOKENS: u64 = 64;
/// Decoder frames per second when `config.json` does not give the codec's hop length.
pub const DEFAULT_FRAME_RATE: f64 = 50.0;
/// Longest generation when neither the table nor `generation_config.json` says otherwise.
pub const DEFAULT_MAX_DURATION_S: f64 = 30.0;
/// Lowest compute capability a checkpoint model is run on.
pub const MIN_COMPUTE_CAPABILITY: f64 = 6.0;
/// Lowest compute capability for bf16 (Ampere).
pub const BF16_COMPUTE_CAPABILITY: f64 = 8.0;

/// Where a set of figures came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The built-in or configured table.
    Table,
    /// Derived from the checkpoint's header and config.
    Checkpoint,
    /// Observed after a real load and generation.
    Measured,
}

impl Source {
    /// `table`, `checkpoint` or `measured`, as reports spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Table => "table",
            Source::Checkpoint => "checkpoint",
            Source::Measured => "measured",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why requirements could not be worked out.
#[derive(Debug, thiserror::Error)]
pub enum RequirementsError {
    /// The checkpoint's files could not be read, are refused, or describe a model that is not
    /// served: the checkpoint reader's own error.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// `config.json` or `generation_config.json` lacks a field or is not JSON.
    #[error("bad model config {}: {reason}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A table entry from the config file has an impossible value.
    #[error("requirements table entry {id:?}: {reason}")]
    Table {
        /// The model id of the entry.
        id: String,
        /// The field, the rule and the value.
        reason: String,
    },
}

/// What a model needs, for one dtype and one requested duration.
#[derive(Debug, Clone, PartialEq)]
pub struct Requirements {
    /// Where the figures come from.
    pub source: Source,
    /// The dtype they are for.
    pub dtype: DType,
    /// The seconds of audio `per_sample_bytes` is for.
    pub duration_s: f64,
    /// Loaded weights per part.
    pub weights: WeightBytes,
    /// Working set of one batch row for `duration_s`, guidance's second row included.
    pub per_sample_bytes: u64,
    /// CUDA context, counted on GPU devices only.
    pub cuda_context_bytes: u64,
    /// Host memory of the runtime around the model (libraries, tokenizer, load staging), on every
    /// device; batch-independent.
    pub host_runtime_bytes: u64,
    /// Lowest CUDA compute capability the model runs on.
    pub min_compute_capability: f64,
    /// The batch a request without one gets.
    pub default_batch_size: u32,
    /// One window in seconds (its `max_length`): longer generations decode window by window and are
    /// sized as one.
    pub max_duration_s: f64,
    /// What encoding an audio prompt adds while a generation that has one holds its lease.
    pub audio_in: AudioInCost,
}

impl Requirements {
    /// All weight bytes.
    pub fn weights_bytes(&self) -> u64 {
        self.weights.total()
    }

    /// GPU memory for `batch` rows on a GPU that holds nothing of the model yet: the GPU total of
    /// [`Requirements::need`].
    pub fn gpu_bytes_for(&self, batch: u32) -> u64 {
        self.need(Device::Cuda(0), batch, Resident::default()).gpu_bytes()
    }

    /// Host memory for `batch` rows on a GPU (`on_gpu`: the runtime) or on the CPU (everything), with
    /// nothing of the model loaded yet: the host total of [`Requirements::need`].
    pub fn host_bytes_for(&self, batch: u32, on_gpu: bool) -> u64 {
        let device = if on_gpu { Device::Cuda(0) } else { Device::Cpu };
        self.need(device, batch, Resident::default()).host_bytes()
    }

    /// These figures with measured weight bytes in place of the estimate (spread over the parts in the
    /// estimate's proportions).
    pub fn measured(mut self, weights_bytes: u64) -> Self {
        self.source = Source::Measured;
        self.weights = self.weights.scaled_to(weights_bytes);
        self
    }
}

/// A config file's refusal: unparsable is a bad config, the rest (unreadable, over its size limit)
/// the checkpoint reader's own error.
fn config_error(e: CheckpointError) -> RequirementsError {
    match e {
        CheckpointError::Corrupt { path, reason } => RequirementsError::Config { path, reason },
        other => other.into(),
    }
}

impl RequirementsError {
    /// Whether the folder describes a model Maestro does not serve (rather than one it cannot read).
    pub fn unsupported(&self) -> bool {
        matches!(self, RequirementsError::Checkpoint(CheckpointError::Unsupported { .. }))
    }
}

/// `config.json` or `generation_config.json`, refused unread past [`MAX_CONFIG_BYTES`].
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RequirementsError> {
    let text = read_bounded(path, MAX_CONFIG_BYTES, "model config").map_err(config_error)?;
    serde_json::from_slice(&text)
        .map_err(|e| RequirementsError::Config { path: path.to_owned(), reason: e.to_string() })
}

mod checkpoint;
mod clip_encoding;
mod dtype;
mod need;
mod table;
mod weights;
mod working_set;

pub use checkpoint::{from_checkpoint, CheckpointSizing, SizingCache};
pub use clip_encoding::AudioInCost;
pub use dtype::{quantised_weight, DType, PartDTypes, UnknownDType};
pub use need::{describe, Need, Resident, Term};
pub use table::{Registry, TableEntry, TABLE_AUDIO_DECODER_PARAMS, TABLE_TEXT_ENCODER_PARAMS};
pub use weights::{
    sizes_of, weights_from_dir, weights_from_header, HeaderSizes, ParameterCounts, Part, WeightBytes,
};
pub use working_set::{CodecShape, DecoderShape, ModelShape, TextShape, WorkingSet, CODEC_CONTEXT_FRAMES};

use super::device::Device;

#[cfg(test)]
#[path = "tests/requirements.rs"]
mod tests;
