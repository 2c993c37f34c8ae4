//! Records the resource tests build on: a cached model with the fields a test varies given, the rest
//! plain (CPU, f32, idle, unpinned, just used).

use std::time::{Instant, SystemTime};

use super::{cache::CachedModel, device::Device, requirements::DType};

/// `model`, accounted at `bytes` (estimated and measured alike), last used at `last_used`.
pub(crate) fn cached(model: &str, bytes: u64, last_used: Instant) -> CachedModel {
    CachedModel {
        model: model.into(),
        device: Device::Cpu,
        dtype: DType::F32,
        estimated_bytes: bytes,
        measured_bytes: Some(bytes),
        loaded_at: SystemTime::now(),
        last_used,
        in_flight: 0,
        pinned: false,
        loaded: None,
        unloading: false,
    }
}
