//! The requirements table: the published MusicGen checkpoints' figures, replaced or extended by the
//! config file's `[resources.requirements."<id>"]` rows, and how a row's two totals split into the
//! parts [`Requirements`] keeps.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::{
    DType, ParameterCounts, Requirements, RequirementsError, Source, WeightBytes, BF16_COMPUTE_CAPABILITY,
    CUDA_CONTEXT_BYTES, DEFAULT_MAX_DURATION_S, GB, HOST_RUNTIME_BYTES,
};

/// Parameters of the text encoder every published MusicGen shares: t5-base's encoder (109.6 M) and
/// the projection into the decoder.
pub const TABLE_TEXT_ENCODER_PARAMS: u64 = 111_000_000;
/// Parameters of the EnCodec 32 kHz decoder and codebooks every published MusicGen shares.
pub const TABLE_AUDIO_DECODER_PARAMS: u64 = 29_500_000;

/// One row of the requirements table, as the config file spells it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableEntry {
    /// Host memory in GB (10^9 bytes) of the model loaded on the CPU before it generates: its f32
    /// weights plus the host runtime.
    pub host_gb: f64,
    /// GPU memory in GB (10^9 bytes) at the default batch and the maximum duration: the weights, the
    /// CUDA context and the working set of `default_batch_size` rows.
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

    /// The host runtime inside `host_gb`: [`HOST_RUNTIME_BYTES`], or half of `host_gb` when that
    /// is less.
    pub fn host_runtime_bytes(&self) -> u64 {
        HOST_RUNTIME_BYTES.min(gb(self.host_gb) / 2)
    }

    /// The weights' parameters: `host_gb` less the runtime, in f32, split into the shared T5 and
    /// EnCodec parts ([`TABLE_TEXT_ENCODER_PARAMS`], [`TABLE_AUDIO_DECODER_PARAMS`], as far as the
    /// total goes) and the decoder (the rest).
    pub fn parameters(&self) -> ParameterCounts {
        let total = gb(self.host_gb).saturating_sub(self.host_runtime_bytes()) / DType::F32.bytes();
        let text_encoder = TABLE_TEXT_ENCODER_PARAMS.min(total);
        let audio_decoder = TABLE_AUDIO_DECODER_PARAMS.min(total - text_encoder);
        let decoder = total - text_encoder - audio_decoder;
        ParameterCounts { text_encoder, decoder, audio_decoder, unused: 0 }
    }

    /// The entry's figures for `dtype` and a generation of `duration_s` seconds: the weights of
    /// [`TableEntry::parameters`] in `dtype`'s part types; the rest of the GPU figure after the f32
    /// weights and the CUDA context is the working set of `default_batch_size` rows at
    /// `max_duration_s`, split evenly across rows and scaled linearly with duration (it keeps its
    /// size in every dtype). bf16 needs compute capability 8.0 whatever the row says.
    pub fn requirements(&self, dtype: DType, duration_s: f64) -> Requirements {
        let parameters = self.parameters();
        let weights_f32 = WeightBytes::of_params(&parameters, DType::F32).total();
        let fixed = weights_f32.saturating_add(CUDA_CONTEXT_BYTES);
        let batch = self.default_batch_size.max(1);
        let per_sample_at_max = gb(self.gpu_gb).saturating_sub(fixed) / u64::from(batch);
        let share = if self.max_duration_s > 0.0 { duration_s / self.max_duration_s } else { 1.0 };
        let mut min_compute_capability = self.min_compute_capability;
        if dtype == DType::Bf16 {
            min_compute_capability = min_compute_capability.max(BF16_COMPUTE_CAPABILITY);
        }
        Requirements {
            source: Source::Table,
            dtype,
            duration_s,
            weights: WeightBytes::of_params(&parameters, dtype),
            per_sample_bytes: (per_sample_at_max as f64 * share.max(0.0)).ceil() as u64,
            cuda_context_bytes: CUDA_CONTEXT_BYTES,
            host_runtime_bytes: self.host_runtime_bytes(),
            min_compute_capability,
            default_batch_size: batch,
            max_duration_s: self.max_duration_s,
            audio_in: super::AudioInCost::published(TABLE_AUDIO_DECODER_PARAMS),
        }
    }
}

/// GB (10^9 bytes) to bytes; negative and NaN become 0.
fn gb(value: f64) -> u64 {
    (value * GB as f64).round() as u64
}

/// The published MusicGen checkpoints: `(id, host GB, GPU GB, min compute capability, default batch)`.
/// A stereo row is its mono sibling plus four more codebooks' embeddings and LM heads (vocab 2048 ×
/// hidden 1024 / 1536 / 2048, f32) and a second EnCodec pass, rounded up to 0.1 GB.
const BUILTIN: [(&str, f64, f64, f64, u32); 6] = [
    ("facebook/musicgen-small", 3.0, 6.0, 6.0, 2),
    ("facebook/musicgen-medium", 6.0, 12.0, 7.0, 1),
    ("facebook/musicgen-large", 12.0, 24.0, 8.0, 1),
    ("facebook/musicgen-stereo-small", 3.1, 6.2, 6.0, 2),
    ("facebook/musicgen-stereo-medium", 6.1, 12.2, 7.0, 1),
    ("facebook/musicgen-stereo-large", 12.2, 24.2, 8.0, 1),
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
