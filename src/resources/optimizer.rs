//! Optimisation suggestions: concrete advice with numbers, derived from the latest snapshot, the model
//! cache and the configured thresholds. One rule per function, each pure; the gRPC layer renders
//! their output.
//!
//! A suggestion promises only what the server does when it is followed: an eviction frees what the
//! eviction action of `Cleanup` reports (the bytes the cache entry accounts), says whether a plain
//! `Cleanup` takes the model or only a forced one, and f16 saves half the decoder's weights (T5 and
//! EnCodec stay f32), as the one memory model (`requirements`) works it out.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use super::{
    cache::{CachedModel, RECENT},
    device::Device,
    requirements::DType,
};
use crate::{
    alerts::Severity,
    monitor::snapshot::{GpuDevice, HostStats, Snapshot},
};

/// One suggestion.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    /// `evict_idle_model`, `use_half_precision`, `empty_cuda_cache`, `check_cooling`, `swap_in_use`,
    /// `reduce_batch`.
    pub kind: &'static str,
    /// How pressing it is.
    pub severity: Severity,
    /// The advice, with numbers.
    pub message: String,
    /// `host`, `gpu:N` or a model id.
    pub resource: String,
    /// Bytes it would save (0 when not about memory).
    pub bytes_saved: u64,
}

/// The configured levels the rules compare against.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Memory % (host, or a model's GPU) at which memory counts as under pressure: the health
    /// WARNING level (`--health-warning-percent`).
    pub pressure_percent: f64,
    /// GPU °C at which cooling is advised: the health WARNING level (`--health-gpu-temp-warning-c`).
    pub hot_gpu_celsius: f64,
    /// Time unused after which an idle model's eviction is advised without pressure
    /// (`--suggest-evict-idle-s`).
    pub evict_idle_after: Duration,
}

/// What libtorch's CUDA caching allocator reports for one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocatorStats {
    /// Bytes handed to live tensors.
    pub allocated_bytes: u64,
    /// Bytes the allocator holds from the driver (allocated plus cached).
    pub reserved_bytes: u64,
}

fn gb(bytes: u64) -> f64 {
    bytes as f64 / 1e9
}

/// Suggestions for the current state, most pressing first. `f16_savings` holds, per f32 cached
/// model, what loading it in f16 would save (the manager's `half_precision_savings`: f32 weights less
/// f16 weights, half the decoder); a model missing there gets no f16 advice.
/// Each rule below adds its own; the sort is stable, so equal suggestions keep the order the rules
/// produced them in.
pub fn suggest(
    s: &Snapshot,
    cached: &[CachedModel],
    f16_savings: &BTreeMap<String, u64>,
    t: &Thresholds,
    now: Instant,
) -> Vec<Suggestion> {
    let mut out: Vec<Suggestion> = cached.iter().filter_map(|m| evict_idle_model(s, m, t, now)).collect();
    out.extend(cached.iter().filter_map(|m| half_precision(m, f16_savings.get(&m.model).copied())));
    for d in &s.gpu.devices {
        out.extend(empty_cuda_cache(d, allocator_stats(d), t));
        out.extend(check_cooling(d, t));
    }
    out.extend(swap_in_use(&s.host));
    out.extend(reduce_batch(s, cached, t));
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then(b.bytes_saved.cmp(&a.bytes_saved)));
    out
}

/// The name of `device`'s memory (`host`, `gpu:N`) and its use in %, when the snapshot has it.
fn device_memory(s: &Snapshot, device: Device) -> (String, Option<f64>) {
    match device {
        Device::Cuda(i) => {
            let gpu = s.gpu.devices.iter().find(|d| d.index == i);
            (format!("gpu:{i}"), gpu.and_then(GpuDevice::memory_used_percent))
        }
        Device::Cpu => ("host".into(), Some(s.effective.used_percent())),
    }
}

/// A model nobody uses can go: at once when its device is under pressure, otherwise once it has been
/// unused for the configured time. It frees what `Cleanup`'s eviction reports, the entry's bytes; a
/// model used within [`RECENT`] is only taken by a forced `Cleanup`, and the message says so.
fn evict_idle_model(s: &Snapshot, m: &CachedModel, t: &Thresholds, now: Instant) -> Option<Suggestion> {
    if !is_evictable(m) {
        return None;
    }
    let idle = now.saturating_duration_since(m.last_used);
    let (device, percent) = device_memory(s, m.device);
    let pressure = percent.filter(|p| *p >= t.pressure_percent);
    let why = match pressure {
        Some(p) => format!("{device} memory at {p:.0} % (pressure from {} %)", t.pressure_percent),
        None if idle >= t.evict_idle_after => {
            format!("unused for {} s or more", t.evict_idle_after.as_secs())
        }
        None => return None,
    };
    let how = if idle >= RECENT { "Cleanup" } else { "Cleanup with force (it was used in the last minute)" };
    Some(Suggestion {
        kind: "evict_idle_model",
        severity: if pressure.is_some() { Severity::Warning } else { Severity::Info },
        message: format!(
            "{why}: `{}` has been idle {} s; {how} evicts it, freeing {:.2} GB on {device}",
            m.model,
            idle.as_secs(),
            gb(m.bytes())
        ),
        resource: m.model.clone(),
        bytes_saved: m.bytes(),
    })
}

/// An f32 model loaded in f16 keeps T5 and EnCodec in f32 and halves the decoder's weights, which
/// saves `saving` bytes.
fn half_precision(m: &CachedModel, saving: Option<u64>) -> Option<Suggestion> {
    if m.dtype != DType::F32 {
        return None;
    }
    let saved = saving?;
    Some(Suggestion {
        kind: "use_half_precision",
        severity: Severity::Info,
        message: format!(
            "reload `{}` with dtype f16 on {} (UnloadModel, then LoadModel): the decoder's weights halve, \
             saving {:.2} GB (T5 and EnCodec stay f32)",
            m.model,
            m.device.name(),
            gb(saved)
        ),
        resource: m.model.clone(),
        bytes_saved: saved,
    })
}

/// The allocator's figures for `d`, for the CUDA-cache advice: snapshots carry them where the
/// allocator shim is linked and CUDA is in use (`cuda_alloc`), which is also when `Cleanup` can empty
/// the cache. Absent otherwise, and then no CUDA-cache advice is given.
fn allocator_stats(d: &GpuDevice) -> Option<AllocatorStats> {
    Some(AllocatorStats {
        allocated_bytes: d.torch_allocated_bytes?,
        reserved_bytes: d.torch_reserved_bytes?,
    })
}

/// A full GPU whose memory libtorch's allocator holds unused can get it back from `Cleanup`: the
/// allocator's reserved minus allocated bytes. Only with the allocator's figures.
fn empty_cuda_cache(d: &GpuDevice, stats: Option<AllocatorStats>, t: &Thresholds) -> Option<Suggestion> {
    let cached = stats.map(|a| a.reserved_bytes.saturating_sub(a.allocated_bytes))?;
    // An unread memory sensor promises nothing.
    let used_percent = d.memory_used_percent()?;
    if used_percent < t.pressure_percent || cached == 0 {
        return None;
    }
    let resource = format!("gpu:{}", d.index);
    Some(Suggestion {
        kind: "empty_cuda_cache",
        severity: Severity::Warning,
        message: format!(
            "{resource} memory at {:.0} %: Cleanup empties libtorch's CUDA cache, returning {:.2} GB \
             it holds beyond live tensors",
            used_percent,
            gb(cached)
        ),
        resource,
        bytes_saved: cached,
    })
}

/// A GPU at or above the configured warning temperature.
fn check_cooling(d: &GpuDevice, t: &Thresholds) -> Option<Suggestion> {
    // An unread temperature is no reason to check the cooling.
    let temperature = d.temperature_celsius?;
    if temperature < t.hot_gpu_celsius {
        return None;
    }
    let resource = format!("gpu:{}", d.index);
    Some(Suggestion {
        kind: "check_cooling",
        severity: Severity::Warning,
        message: format!(
            "{resource} at {:.0} °C (warning from {} °C): check cooling, or run fewer concurrent \
             generations",
            temperature, t.hot_gpu_celsius
        ),
        resource,
        bytes_saved: 0,
    })
}

/// Any swap in use: weights paged out make every decoding step slow.
fn swap_in_use(h: &HostStats) -> Option<Suggestion> {
    (h.swap_used_bytes > 0).then(|| Suggestion {
        kind: "swap_in_use",
        severity: Severity::Info,
        message: format!(
            "{:.2} GB of swap in use: generation slows down sharply once weights are swapped out",
            gb(h.swap_used_bytes)
        ),
        resource: "host".into(),
        bytes_saved: 0,
    })
}

/// Host memory pressure with nothing to evict: the work itself has to shrink.
fn reduce_batch(s: &Snapshot, cached: &[CachedModel], t: &Thresholds) -> Option<Suggestion> {
    let host = s.effective.used_percent();
    (host >= t.pressure_percent && !cached.iter().any(is_evictable)).then(|| Suggestion {
        kind: "reduce_batch",
        severity: Severity::Warning,
        message: format!(
            "host memory at {host:.0} % (pressure from {} %) with nothing idle to evict: reduce batch size \
             or duration, or use a smaller variant (ValidateModel gives what each needs here)",
            t.pressure_percent
        ),
        resource: "host".into(),
        bytes_saved: 0,
    })
}

fn is_evictable(m: &CachedModel) -> bool {
    m.in_flight == 0 && !m.pinned
}

#[cfg(test)]
#[path = "tests/optimizer.rs"]
mod tests;
