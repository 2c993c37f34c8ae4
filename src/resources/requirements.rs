//! What a model needs in host and GPU memory before it is loaded, from one of three sources: the
//! built-in table (overridable from the config file), the checkpoint on disk (safetensors header and
//! `config.json`, never the weights themselves), or a measurement after a real load.
//!
//! Sizes in the table are in GB = 10^9 bytes. Every figure splits into a fixed part (weights, CUDA
//! context, runtime) and a per-sample working set that grows linearly with batch and duration, which
//! is what lets one entry answer for any batch size and duration.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// One gigabyte as the table counts it: 10^9 bytes.
pub const GB: u64 = 1_000_000_000;
/// Device memory a CUDA context takes before any tensor is allocated.
pub const CUDA_CONTEXT_BYTES: u64 = 500_000_000;
/// Host memory of the runtime around a checkpoint model (libtorch, CUDA host libraries, tokenizer).
pub const HOST_RUNTIME_BYTES: u64 = GB;
/// Classifier-free guidance runs a conditional and an unconditional row for every sample.
pub const CFG_FACTOR: u64 = 2;
/// EnCodec's widest intermediate convolution holds this many channels per output sample.
pub const ENCODEC_CHANNEL_FACTOR: u64 = 64;
/// Text tokens assumed per prompt for the cross-attention cache and encoder activations.
pub const PROMPT_TOKENS: u64 = 64;
/// Decoder frames per second when `config.json` does not give the codec's hop length.
pub const DEFAULT_FRAME_RATE: f64 = 50.0;
/// Longest generation when neither the table nor `generation_config.json` says otherwise.
pub const DEFAULT_MAX_DURATION_S: f64 = 30.0;
/// Lowest compute capability a checkpoint model is run on; bf16 needs 8.0 (Ampere).
pub const MIN_COMPUTE_CAPABILITY: f64 = 6.0;

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

/// The floating-point type a model's weights are run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DType {
    /// 32-bit float, the default.
    #[default]
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
}

impl DType {
    /// Bytes per element.
    pub fn bytes(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::Bf16 => 2,
        }
    }

    /// Parses `f32`, `f16` or `bf16` (any case); the empty string means `f32`.
    pub fn parse(value: &str) -> Result<Self, UnknownDType> {
        match value.to_ascii_lowercase().as_str() {
            "" | "f32" => Ok(DType::F32),
            "f16" => Ok(DType::F16),
            "bf16" => Ok(DType::Bf16),
            _ => Err(UnknownDType { value: value.to_owned() }),
        }
    }

    /// `f32`, `f16` or `bf16`.
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dtype name that is none of those [`DType::parse`] knows; the message is the rule and the value,
/// for whoever names the field (`dtype`, `--dtype`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be one of \"f32\", \"f16\", \"bf16\" (empty means \"f32\"), got {value:?}")]
pub struct UnknownDType {
    /// The value given.
    pub value: String,
}

/// Why requirements could not be worked out.
#[derive(Debug, thiserror::Error)]
pub enum RequirementsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The safetensors header is unusable; nothing was loaded.
    #[error("corrupt checkpoint {}: {reason}", path.display())]
    Corrupt {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
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
    /// Loaded weights.
    pub weights_bytes: u64,
    /// Working set of one batch row for the requested duration, guidance's second row included.
    pub per_sample_bytes: u64,
    /// CUDA context, counted on GPU devices only.
    pub cuda_context_bytes: u64,
    /// Host memory needed while the model runs on a GPU (runtime, load staging); batch-independent.
    pub host_memory_bytes: u64,
    /// GPU memory at `default_batch_size`: `gpu_bytes_for(default_batch_size)`.
    pub gpu_memory_bytes: u64,
    /// Lowest CUDA compute capability the model runs on.
    pub min_compute_capability: f64,
    /// The batch `gpu_memory_bytes` is computed for.
    pub default_batch_size: u32,
    /// Longest generation the model supports, in seconds.
    pub max_duration_s: f64,
}

impl Requirements {
    /// GPU memory for `batch` rows: weights + `batch` × per-sample + CUDA context.
    pub fn gpu_bytes_for(&self, batch: u32) -> u64 {
        self.weights_bytes
            .saturating_add(self.working_set_bytes(batch))
            .saturating_add(self.cuda_context_bytes)
    }

    /// Host memory for `batch` rows. On a GPU: `host_memory_bytes`. On the CPU the weights and working
    /// set live in host memory too: `host_memory_bytes` + weights + `batch` × per-sample (the GPU
    /// figure without the CUDA context).
    pub fn host_bytes_for(&self, batch: u32, on_gpu: bool) -> u64 {
        if on_gpu {
            return self.host_memory_bytes;
        }
        self.host_memory_bytes
            .saturating_add(self.weights_bytes)
            .saturating_add(self.working_set_bytes(batch))
    }

    /// Working set of `batch` rows: `batch` × per-sample.
    pub fn working_set_bytes(&self, batch: u32) -> u64 {
        self.per_sample_bytes.saturating_mul(u64::from(batch))
    }

    /// These figures with measured weights and per-sample bytes in place of the estimates.
    pub fn measured(mut self, weights_bytes: u64, per_sample_bytes: u64) -> Self {
        self.source = Source::Measured;
        self.weights_bytes = weights_bytes;
        self.per_sample_bytes = per_sample_bytes;
        self.gpu_memory_bytes = self.gpu_bytes_for(self.default_batch_size);
        self
    }
}

/// One row of the requirements table, as the config file spells it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableEntry {
    /// Host memory in GB (10^9 bytes).
    pub host_gb: f64,
    /// GPU memory in GB (10^9 bytes) at the default batch and the maximum duration.
    pub gpu_gb: f64,
    /// Lowest CUDA compute capability.
    pub min_compute_capability: f64,
    /// The batch the GPU figure is for.
    pub default_batch_size: u32,
    /// Longest generation in seconds; default 30.
    #[serde(default = "default_max_duration")]
    pub max_duration_s: f64,
}

fn default_max_duration() -> f64 {
    DEFAULT_MAX_DURATION_S
}

impl TableEntry {
    /// Checks that every field is usable; `id` names the entry in the error.
    pub fn validate(&self, id: &str) -> Result<(), RequirementsError> {
        let fail = |reason: String| Err(RequirementsError::Table { id: id.to_owned(), reason });
        for (field, value) in [("host_gb", self.host_gb), ("gpu_gb", self.gpu_gb)] {
            if !(value.is_finite() && value > 0.0) {
                return fail(format!("{field}: must be a finite number > 0, got {value}"));
            }
        }
        let cc = self.min_compute_capability;
        if !(cc.is_finite() && cc >= 0.0) {
            return fail(format!("min_compute_capability: must be a finite number >= 0, got {cc}"));
        }
        if self.default_batch_size == 0 {
            return fail("default_batch_size: must be >= 1, got 0".to_owned());
        }
        let max = self.max_duration_s;
        if !(max.is_finite() && max > 0.0) {
            return fail(format!("max_duration_s: must be a finite number > 0, got {max}"));
        }
        Ok(())
    }

    /// The entry's figures for `dtype` and a generation of `duration_s` seconds.
    ///
    /// The table does not split its figures, so: the host figure is read as weights (f32) plus the
    /// CUDA context; the rest of the GPU figure is the working set of `default_batch_size` rows at
    /// `max_duration_s`, split evenly across rows and scaled linearly with duration. f16 and bf16
    /// halve the weights only; the working set keeps its f32 size (EnCodec and logits stay f32).
    pub fn requirements(&self, dtype: DType, duration_s: f64) -> Requirements {
        let (host, gpu) = (gb(self.host_gb), gb(self.gpu_gb));
        let fixed = host.min(gpu);
        let weights_f32 = fixed.saturating_sub(CUDA_CONTEXT_BYTES);
        let batch = self.default_batch_size.max(1);
        let per_sample_at_max = (gpu - fixed) / u64::from(batch);
        let share = if self.max_duration_s > 0.0 { duration_s / self.max_duration_s } else { 1.0 };
        let mut requirements = Requirements {
            source: Source::Table,
            dtype,
            weights_bytes: weights_f32 / DType::F32.bytes() * dtype.bytes(),
            per_sample_bytes: (per_sample_at_max as f64 * share.max(0.0)).ceil() as u64,
            cuda_context_bytes: fixed - weights_f32,
            host_memory_bytes: host,
            gpu_memory_bytes: 0,
            min_compute_capability: self.min_compute_capability,
            default_batch_size: batch,
            max_duration_s: self.max_duration_s,
        };
        requirements.gpu_memory_bytes = requirements.gpu_bytes_for(batch);
        requirements
    }
}

/// GB (10^9 bytes) to bytes; negative and NaN become 0.
fn gb(value: f64) -> u64 {
    (value * GB as f64).round() as u64
}

/// The published MusicGen checkpoints: `(id, host GB, GPU GB, min compute capability, default batch)`.
const BUILTIN: [(&str, f64, f64, f64, u32); 3] = [
    ("facebook/musicgen-small", 3.0, 6.0, 6.0, 2),
    ("facebook/musicgen-medium", 6.0, 12.0, 7.0, 1),
    ("facebook/musicgen-large", 12.0, 24.0, 8.0, 1),
];

/// The requirements table: the built-in rows, replaced or extended by the config file's.
#[derive(Debug, Clone, PartialEq)]
pub struct Registry {
    table: BTreeMap<String, TableEntry>,
}

impl Registry {
    /// The built-in table with `overrides` replacing rows of the same id and adding new ones.
    pub fn new(overrides: HashMap<String, TableEntry>) -> Self {
        let builtin =
            BUILTIN.iter().map(|&(id, host_gb, gpu_gb, min_compute_capability, default_batch_size)| {
                let entry = TableEntry {
                    host_gb,
                    gpu_gb,
                    min_compute_capability,
                    default_batch_size,
                    max_duration_s: DEFAULT_MAX_DURATION_S,
                };
                (id.to_owned(), entry)
            });
        Self { table: builtin.chain(overrides).collect() }
    }

    /// The row for `id`.
    pub fn table(&self, id: &str) -> Option<&TableEntry> {
        self.table.get(id)
    }

    /// Every row, sorted by id.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &TableEntry)> {
        self.table.iter().map(|(id, entry)| (id.as_str(), entry))
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new(HashMap::new())
    }
}

mod checkpoint;

pub use checkpoint::{from_checkpoint, weights_from_header, HeaderSizes};

#[cfg(test)]
#[path = "tests/requirements.rs"]
mod tests;
