//! Optimisation suggestions: concrete advice with numbers, derived from the latest snapshot and the
//! model cache. A pure function; the gRPC layer renders its output.

use std::time::Instant;

use super::{cache::CachedModel, requirements::DType};
use crate::{alerts::Severity, monitor::snapshot::Snapshot};

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

/// Suggestions for the current state, most pressing first.
pub fn suggest(s: &Snapshot, cached: &[CachedModel], warning_percent: f64, now: Instant) -> Vec<Suggestion> {
    let mut out = Vec::new();
    let host = s.effective.used_percent();
    let pressing = if host >= warning_percent { Severity::Warning } else { Severity::Info };
    for m in cached.iter().filter(|m| m.in_flight == 0 && !m.pinned) {
        let idle_s = now.saturating_duration_since(m.last_used).as_secs();
        if host >= warning_percent || idle_s >= 600 {
            out.push(Suggestion {
                kind: "evict_idle_model",
                severity: pressing,
                message: format!(
                    "host memory at {host:.0} %: evicting idle `{}` (unused for {idle_s} s) frees {:.2} GB",
                    m.model,
                    gb(m.bytes())
                ),
                resource: m.model.clone(),
                bytes_saved: m.bytes(),
            });
        }
    }
    for m in cached.iter().filter(|m| m.dtype == DType::F32) {
        let saved = m.bytes() / 2;
        out.push(Suggestion {
            kind: "use_half_precision",
            severity: Severity::Info,
            message: format!(
                "load `{}` with dtype f16 on {}: saves {:.2} GB of weights",
                m.model,
                m.device.name(),
                gb(saved)
            ),
            resource: m.model.clone(),
            bytes_saved: saved,
        });
    }
    for d in &s.gpu.devices {
        let resource = format!("gpu:{}", d.index);
        if d.memory_used_percent() >= warning_percent && d.torch_reserved_bytes > 0 {
            out.push(Suggestion {
                kind: "empty_cuda_cache",
                severity: Severity::Warning,
                message: format!(
                    "{resource} memory at {:.0} %: emptying libtorch's CUDA cache (Cleanup) can return up to {:.2} GB",
                    d.memory_used_percent(),
                    gb(d.torch_reserved_bytes)
                ),
                resource: resource.clone(),
                bytes_saved: d.torch_reserved_bytes,
            });
        }
        if d.temperature_celsius >= 85.0 {
            out.push(Suggestion {
                kind: "check_cooling",
                severity: Severity::Warning,
                message: format!(
                    "{resource} at {:.0} °C: check cooling, or run fewer concurrent generations",
                    d.temperature_celsius
                ),
                resource,
                bytes_saved: 0,
            });
        }
    }
    if s.host.swap_used_bytes > 0 {
        out.push(Suggestion {
            kind: "swap_in_use",
            severity: Severity::Info,
            message: format!(
                "{:.2} GB of swap in use: generation slows down sharply once weights are swapped out",
                gb(s.host.swap_used_bytes)
            ),
            resource: "host".into(),
            bytes_saved: 0,
        });
    }
    if host >= warning_percent && !cached.iter().any(|m| m.in_flight == 0 && !m.pinned) {
        out.push(Suggestion {
            kind: "reduce_batch",
            severity: Severity::Warning,
            message: format!(
                "host memory at {host:.0} % with nothing idle to evict: reduce batch size or duration, or use a smaller variant"
            ),
            resource: "host".into(),
            bytes_saved: 0,
        });
    }
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then(b.bytes_saved.cmp(&a.bytes_saved)));
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::{monitor::snapshot::EffectiveMemory, resources::validate::Device};

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
        let got = suggest(&s, &cached, 80.0, now + Duration::from_secs(5));
        let evict: Vec<_> = got.iter().filter(|g| g.kind == "evict_idle_model").collect();
        assert_eq!(evict.len(), 1);
        assert!(
            evict[0].message.contains("87 %") && evict[0].message.contains("2.40 GB"),
            "{}",
            evict[0].message
        );
        assert_eq!(evict[0].severity, Severity::Warning);
        let half: Vec<_> = got.iter().filter(|g| g.kind == "use_half_precision").collect();
        assert_eq!(half.len(), 2);
        assert_eq!(got[0].kind, "evict_idle_model", "most pressing first");
    }

    #[test]
    fn a_calm_machine_gets_no_eviction_advice() {
        let now = Instant::now();
        let s = Snapshot {
            effective: EffectiveMemory { limit_bytes: 100, used_bytes: 30, ..Default::default() },
            ..Default::default()
        };
        let got = suggest(&s, &[model("fresh", 10, 0, now)], 80.0, now);
        assert!(got.iter().all(|g| g.kind != "evict_idle_model" && g.kind != "reduce_batch"));
    }
}
