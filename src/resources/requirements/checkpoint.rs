//! Requirements derived from a checkpoint on disk: what the folder is, first ([`kind`]: a melody or
//! otherwise unserved config is refused before anything is sized), exact weight bytes per part from
//! the checkpoint's headers in whichever layout ([`super::sizes_of`]) and the working set from the sizes in `config.json`
//! ([`super::ModelShape`]). A damaged header or config is an error, never a panic or a wrong answer.

use std::path::Path;

use serde::Deserialize;

use crate::checkpoint::{kind, Checkpoint};

use super::{
    config_error, read_json, sizes_of, AudioInCost, DType, ModelShape, Requirements, RequirementsError,
    Source, BF16_COMPUTE_CAPABILITY, CUDA_CONTEXT_BYTES, DEFAULT_MAX_DURATION_S, HOST_RUNTIME_BYTES,
    MIN_COMPUTE_CAPABILITY,
};

#[derive(Deserialize)]
struct GenerationConfig {
    max_length: Option<u64>,
}

/// Requirements derived from the checkpoint in `dir` for generations of `duration_s` seconds in
/// `dtype`. Reads `config.json`, the weights' headers and, when present, `generation_config.json`
/// (its `max_length` in frames, when > 0, sets the maximum duration; default 30 s).
///
/// The host runtime is [`HOST_RUNTIME_BYTES`] plus the largest stored tensor (loads go tensor by
/// tensor); the CUDA context is [`CUDA_CONTEXT_BYTES`]; bf16 needs compute capability 8.0. The
/// default batch is 1.
pub fn from_checkpoint(dir: &Path, dtype: DType, duration_s: f64) -> Result<Requirements, RequirementsError> {
    kind::check_config_file(&dir.join("config.json")).map_err(config_error)?;
    // One read of the headers for the weights and for what audio input costs.
    let file = Checkpoint::open_dir(dir)?;
    let sizes = sizes_of(&file, dtype);
    let shape = ModelShape::read(&dir.join("config.json"))?;
    let generation = dir.join("generation_config.json");
    let max_frames = if generation.is_file() {
        read_json::<GenerationConfig>(&generation)?.max_length.filter(|&frames| frames > 0)
    } else {
        None
    };
    Ok(Requirements {
        source: Source::Checkpoint,
        dtype,
        duration_s,
        weights: sizes.weights,
        per_sample_bytes: shape.working_set(dtype, 1, duration_s).total(),
        cuda_context_bytes: CUDA_CONTEXT_BYTES,
        host_runtime_bytes: HOST_RUNTIME_BYTES.saturating_add(sizes.largest_tensor_bytes),
        min_compute_capability: if dtype == DType::Bf16 {
            BF16_COMPUTE_CAPABILITY
        } else {
            MIN_COMPUTE_CAPABILITY
        },
        default_batch_size: 1,
        max_duration_s: max_frames.map_or(DEFAULT_MAX_DURATION_S, |f| f as f64 / shape.frame_rate()),
        audio_in: AudioInCost::of(&file, &shape),
    })
}
