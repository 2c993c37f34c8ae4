//! Optimisation suggestions: concrete advice with numbers, derived from the latest snapshot and the
//! model cache. A pure function; the gRPC layer renders its output.

use std::time::Instant;

use super::{cache::CachedModel, requirements::DType};
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

fn gb(bytes: u64) -> f64 {
    bytes as f64 / 1e9
}

/// Suggestions for the current state, most pressing first. Each rule below adds its own; the sort is
/// stable, so equal suggestions keep the order the rules produced them in. `f16_savings` holds, per
/// cached f32 model, what f16 would save (the manager's `half_precision_savings`).
pub fn suggest(
    s: &Snapshot,
    cached: &[CachedModel],
    f16_savings: &[(String, u64)],
    warning_percent: f64,
    now: Instant,
) -> Vec<Suggestion> {
    let host = s.effective.used_percent();
    let mut out = evict_idle_models(cached, host, warning_percent, now);
    out.extend(cached.iter().filter_map(|m| half_precision(m, f16_savings)));
    for d in &s.gpu.devices {
        out.extend(empty_cuda_cache(d, warning_percent));
        out.extend(check_cooling(d));
    }
    out.extend(swap_in_use(&s.host));
    out.extend(reduce_batch(cached, host, warning_percent));
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then(b.bytes_saved.cmp(&a.bytes_saved)));
    out
}

/// Models nobody uses can go: every one under memory pressure, otherwise those idle for 10 minutes.
fn evict_idle_models(
    cached: &[CachedModel],
    host: f64,
    warning_percent: f64,
    now: Instant,
) -> Vec<Suggestion> {
    let pressed = host >= warning_percent;
    let severity = if pressed { Severity::Warning } else { Severity::Info };
    cached
        .iter()
        .filter(|m| is_evictable(m))
        .filter_map(|m| {
            let idle_s = now.saturating_duration_since(m.last_used).as_secs();
            (pressed || idle_s >= 600).then(|| Suggestion {
                kind: "evict_idle_model",
                severity,
                message: format!(
                    "host memory at {host:.0} %: evicting idle `{}` (unused for {idle_s} s) frees {:.2} GB",
                    m.model,
                    gb(m.bytes())
                ),
                resource: m.model.clone(),
                bytes_saved: m.bytes(),
            })
        })
        .collect()
}

/// An f32 model whose decoder would take half the memory in f16 (T5 and EnCodec stay f32).
fn half_precision(m: &CachedModel, f16_savings: &[(String, u64)]) -> Option<Suggestion> {
    if m.dtype != DType::F32 {
        return None;
    }
    let saved = f16_savings.iter().find(|(model, _)| *model == m.model).map(|&(_, b)| b)?;
    Some(Suggestion {
        kind: "use_half_precision",
        severity: Severity::Info,
        message: format!(
            "load `{}` with dtype f16 on {}: saves {:.2} GB of decoder weights",
            m.model,
            m.device.name(),
            gb(saved)
        ),
        resource: m.model.clone(),
        bytes_saved: saved,
    })
}

/// A full GPU whose memory libtorch holds in its cache can get that memory back.
fn empty_cuda_cache(d: &GpuDevice, warning_percent: f64) -> Option<Suggestion> {
    // Absent figures (no allocator reader, an unread memory sensor) promise nothing.
    let (used_percent, reserved) = (d.memory_used_percent()?, d.torch_reserved_bytes?);
    if used_percent < warning_percent || reserved == 0 {
        return None;
    }
    let resource = format!("gpu:{}", d.index);
    Some(Suggestion {
        kind: "empty_cuda_cache",
        severity: Severity::Warning,
        message: format!(
            "{resource} memory at {:.0} %: emptying libtorch's CUDA cache (Cleanup) can return up to {:.2} GB",
            used_percent,
            gb(reserved)
        ),
        resource,
        bytes_saved: reserved,
    })
}

/// A hot GPU (85 °C, where the temperature alert warns by default).
fn check_cooling(d: &GpuDevice) -> Option<Suggestion> {
    // An unread temperature is no reason to check the cooling.
    let temperature = d.temperature_celsius?;
    if temperature < 85.0 {
        return None;
    }
    let resource = format!("gpu:{}", d.index);
    Some(Suggestion {
        kind: "check_cooling",
        severity: Severity::Warning,
        message: format!(
            "{resource} at {temperature:.0} °C: check cooling, or run fewer concurrent generations"
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

/// Memory pressure with nothing to evict: the work itself has to shrink.
fn reduce_batch(cached: &[CachedModel], host: f64, warning_percent: f64) -> Option<Suggestion> {
    (host >= warning_percent && !cached.iter().any(is_evictable)).then(|| Suggestion {
        kind: "reduce_batch",
        severity: Severity::Warning,
        message: format!(
            "host memory at {host:.0} % with nothing idle to evict: reduce batch size or duration, or use a smaller variant"
        ),
        resource: "host".into(),
        bytes_saved: 0,
    })
}

fn is_evictable(m: &CachedModel) -> bool {
    m.in_flight == 0 && !m.pinned
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::{
        monitor::snapshot::{EffectiveMemory, GpuDevice, HostStats},
        resources::validate::Device,
    };

    fn model(name: &str, bytes: u64, in_flight: u32, last_used: Instant) -> CachedModel {
        CachedModel {
            model: name.into(),
            device: Device::Cpu,
            dtype: DType::F32,
            estimated_bytes: bytes,
            measured_bytes: Some(bytes),
            loaded_at: SystemTime::now(),
            last_used,
            in_flight,
            pinned: false,
        }
    }

    #[test]
    fn pressure_suggests_evicting_idle_models_with_their_size() {
        let now = Instant::now();
        let s = Snapshot {
            effective: EffectiveMemory { limit_bytes: 100, used_bytes: 87, ..Default::default() },
            ..Default::default()
        };
        let cached = vec![model("idle", 2_400_000_000, 0, now), model("busy", 1_000_000_000, 1, now)];
        let savings = [("idle".to_owned(), 900_000_000), ("busy".to_owned(), 300_000_000)];
        let got = suggest(&s, &cached, &savings, 80.0, now + Duration::from_secs(5));
        let evict: Vec<_> = got.iter().filter(|g| g.kind == "evict_idle_model").collect();
        assert_eq!(evict.len(), 1);
        assert!(
            evict[0].message.contains("87 %") && evict[0].message.contains("2.40 GB"),
            "{}",
            evict[0].message
        );
        assert_eq!(evict[0].severity, Severity::Warning);
        let half: Vec<_> = got.iter().filter(|g| g.kind == "use_half_precision").collect();
        let saved: Vec<_> = half.iter().map(|g| (g.resource.as_str(), g.bytes_saved)).collect();
        assert_eq!(saved, [("idle", 900_000_000), ("busy", 300_000_000)], "the decoder's saving, as given");
        assert!(half[0].message.contains("0.90 GB of decoder weights"), "{}", half[0].message);
        assert_eq!(got[0].kind, "evict_idle_model", "most pressing first");
    }

    #[test]
    fn a_calm_machine_gets_no_eviction_advice() {
        let now = Instant::now();
        let s = Snapshot {
            effective: EffectiveMemory { limit_bytes: 100, used_bytes: 30, ..Default::default() },
            ..Default::default()
        };
        let got = suggest(&s, &[model("fresh", 10, 0, now)], &[], 80.0, now);
        assert!(got.iter().all(|g| g.kind != "evict_idle_model" && g.kind != "reduce_batch"));
    }

    #[test]
    fn a_full_hot_gpu_and_swap_get_their_own_advice() {
        let now = Instant::now();
        let gpu = GpuDevice {
            index: 1,
            memory_total_bytes: Some(100),
            memory_used_bytes: Some(90),
            memory_free_bytes: Some(10),
            torch_reserved_bytes: Some(3_000_000_000),
            temperature_celsius: Some(88.0),
            ..Default::default()
        };
        let s = Snapshot {
            host: HostStats { swap_used_bytes: 500_000_000, ..Default::default() },
            gpu: crate::monitor::snapshot::GpuStats { devices: vec![gpu], ..Default::default() },
            ..Default::default()
        };
        let got = suggest(&s, &[], &[], 80.0, now);
        let kinds: Vec<_> = got.iter().map(|g| (g.kind, g.resource.as_str())).collect();
        assert_eq!(
            kinds,
            vec![("empty_cuda_cache", "gpu:1"), ("check_cooling", "gpu:1"), ("swap_in_use", "host")]
        );
        assert!(
            got[0].message.contains("3.00 GB") && got[0].bytes_saved == 3_000_000_000,
            "{}",
            got[0].message
        );
        assert!(got[2].message.contains("0.50 GB"), "{}", got[2].message);
        // The same card with its temperature and allocator unread gets no GPU advice at all.
        let silent =
            GpuDevice { temperature_celsius: None, torch_reserved_bytes: None, ..s.gpu.devices[0].clone() };
        let s = Snapshot { gpu: crate::monitor::snapshot::GpuStats { devices: vec![silent], ..s.gpu }, ..s };
        assert!(suggest(&s, &[], &[], 80.0, now).iter().all(|g| g.resource != "gpu:1"));
    }

    #[test]
    fn pressure_with_nothing_idle_suggests_a_smaller_batch() {
        let now = Instant::now();
        let s = Snapshot {
            effective: EffectiveMemory { limit_bytes: 100, used_bytes: 91, ..Default::default() },
            ..Default::default()
        };
        let busy = CachedModel { dtype: DType::F16, ..model("busy", 10, 1, now) };
        let got = suggest(&s, &[busy], &[], 80.0, now);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].kind, got[0].severity), ("reduce_batch", Severity::Warning));
        assert!(got[0].message.contains("91 %"), "{}", got[0].message);
    }
}
