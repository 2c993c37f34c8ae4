//! What a model needs on one device for one batch: the one function ([`Requirements::need`]) every
//! memory question asks (validation, batch advice, loads, generations, suggestions), and the parts
//! it sums, so a verdict can say where each byte goes.
//!
//! On the CPU everything is host memory: weights, working set and the host runtime. On a GPU the
//! weights, the working set and the CUDA context are GPU memory and the host holds only the runtime.
//! What is already resident (a loaded model's weights, a context CUDA already created) is in the
//! measured usage, so free memory already excludes it: it is listed, never counted again.

use super::{DType, PartDTypes, Requirements, WeightBytes};
use crate::resources::device::Device;

/// What of a model is already in memory on the device asked about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resident {
    /// The model is loaded there in the dtype asked about.
    pub weights: bool,
    /// Its host runtime (tokenizer, staging, libraries) is up: it is loaded.
    pub runtime: bool,
    /// A CUDA context exists on the GPU (some model is loaded there).
    pub cuda_context: bool,
}

/// What a model needs on one device, for one batch and duration, by part.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    /// The device (`cpu` or `cuda:N`).
    pub device: Device,
    /// Batch rows.
    pub batch: u32,
    /// Seconds of audio per row.
    pub duration_s: f64,
    /// The dtype asked for.
    pub dtype: DType,
    /// Loaded weights, per part, each in its [`DType::parts`] type.
    pub weights: WeightBytes,
    /// KV caches and activations of `batch` rows of `duration_s` (guidance's rows included).
    pub working_set_bytes: u64,
    /// Encoding an audio prompt: the EnCodec encoder and the clip's activations (0 without one).
    pub audio_in_bytes: u64,
    /// Bringing a request's audio to the model's rate and channels, and the melody's chroma: the
    /// clip as sent, what it becomes and the resampler's buffers, on the host whatever the device
    /// (0 without audio input).
    pub conversion_bytes: u64,
    /// Host memory of the runtime around the model; on every device.
    pub host_runtime_bytes: u64,
    /// The CUDA context; 0 on the CPU.
    pub cuda_context_bytes: u64,
    /// What is already in memory and therefore not counted.
    pub resident: Resident,
    /// Lowest CUDA compute capability the model runs on.
    pub min_compute_capability: f64,
}

/// One term of a need: a name, its bytes, whether it is already in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    /// `weights (…)`, `working set (…)`, `host runtime`, `CUDA context`.
    pub name: String,
    /// Its bytes.
    pub bytes: u64,
    /// Already in memory: listed, not counted.
    pub resident: bool,
}

impl Requirements {
    /// What this model (in its dtype, for its duration) needs on `device` for `batch` rows, given
    /// what is already `resident` there. `device` is resolved (`cpu` or `cuda:N`); an unresolved
    /// `auto` counts as the CPU, where it falls back to.
    pub fn need(&self, device: Device, batch: u32, resident: Resident) -> Need {
        let on_gpu = matches!(device, Device::Cuda(_));
        Need {
            device,
            batch,
            duration_s: self.duration_s,
            dtype: self.dtype,
            weights: self.weights,
            working_set_bytes: self.per_sample_bytes.saturating_mul(u64::from(batch)),
            audio_in_bytes: 0,
            conversion_bytes: 0,
            host_runtime_bytes: self.host_runtime_bytes,
            cuda_context_bytes: if on_gpu { self.cuda_context_bytes } else { 0 },
            resident: Resident { cuda_context: on_gpu && resident.cuda_context, ..resident },
            min_compute_capability: self.min_compute_capability,
        }
    }
}

impl Need {
    /// Whether the device is a GPU.
    pub fn on_gpu(&self) -> bool {
        matches!(self.device, Device::Cuda(_))
    }

    /// The dtype of each part.
    pub fn dtypes(&self) -> PartDTypes {
        self.dtype.parts()
    }

    /// The terms that live in host memory: on the CPU weights, working set and runtime; on a GPU the
    /// runtime alone.
    pub fn host_terms(&self) -> Vec<Term> {
        let runtime = Term {
            name: "host runtime".into(),
            bytes: self.host_runtime_bytes,
            resident: self.resident.runtime,
        };
        if self.on_gpu() {
            return self.conversion_term().into_iter().chain([runtime]).collect();
        }
        [self.weights_term(), self.working_set_term()]
            .into_iter()
            .chain(self.audio_in_term())
            .chain(self.conversion_term())
            .chain([runtime])
            .collect()
    }

    /// The terms that live in GPU memory: weights, working set and the CUDA context; none on the CPU.
    pub fn gpu_terms(&self) -> Vec<Term> {
        if !self.on_gpu() {
            return Vec::new();
        }
        let context = Term {
            name: "CUDA context".into(),
            bytes: self.cuda_context_bytes,
            resident: self.resident.cuda_context,
        };
        [self.weights_term(), self.working_set_term()]
            .into_iter()
            .chain(self.audio_in_term())
            .chain([context])
            .collect()
    }

    /// Host bytes still to find: the host terms not already resident.
    pub fn host_bytes(&self) -> u64 {
        counted(&self.host_terms())
    }

    /// GPU bytes still to find: the GPU terms not already resident (0 on the CPU).
    pub fn gpu_bytes(&self) -> u64 {
        counted(&self.gpu_terms())
    }

    fn weights_term(&self) -> Term {
        Term {
            name: format!("weights ({})", self.weights.describe(self.dtype)),
            bytes: self.weights.total(),
            resident: self.resident.weights,
        }
    }

    /// Listed only with an audio prompt.
    fn audio_in_term(&self) -> Option<Term> {
        (self.audio_in_bytes > 0).then(|| Term {
            name: "audio prompt encode".into(),
            bytes: self.audio_in_bytes,
            resident: false,
        })
    }

    /// Listed only with audio input.
    fn conversion_term(&self) -> Option<Term> {
        (self.conversion_bytes > 0).then(|| Term {
            name: "audio input conversion".into(),
            bytes: self.conversion_bytes,
            resident: false,
        })
    }

    fn working_set_term(&self) -> Term {
        Term {
            name: format!("working set ({} × {} s)", self.batch, self.duration_s),
            bytes: self.working_set_bytes,
            resident: false,
        }
    }
}

fn counted(terms: &[Term]) -> u64 {
    terms.iter().filter(|t| !t.resident).fold(0u64, |sum, t| sum.saturating_add(t.bytes))
}

/// `2.00 GB weights (…) + 1.20 GB working set (2 × 10 s) + 1.00 GB host runtime`, then what is
/// already loaded and not counted.
pub fn describe(terms: &[Term]) -> String {
    let gb = |b: u64| b as f64 / 1e9;
    let show = |t: &Term| format!("{:.2} GB {}", gb(t.bytes), t.name);
    let counted: Vec<String> = terms.iter().filter(|t| !t.resident).map(show).collect();
    let resident: Vec<String> = terms.iter().filter(|t| t.resident).map(show).collect();
    let mut text = if counted.is_empty() { "nothing".to_owned() } else { counted.join(" + ") };
    if !resident.is_empty() {
        text.push_str(&format!("; already in memory, not counted again: {}", resident.join(", ")));
    }
    text
}

#[cfg(test)]
#[path = "../tests/need.rs"]
mod tests;
