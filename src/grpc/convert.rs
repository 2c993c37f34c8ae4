//! Every domain → wire conversion, in one place.

use std::time::SystemTime;

use super::pb;
use crate::{
    alerts::{Alert, AlertEvent, EventKind, Severity},
    monitor::{
        history::MetricStats,
        snapshot::{GpuDevice, HealthLevel, LimitSource, Snapshot},
    },
};

/// A `SystemTime` as a protobuf timestamp.
pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

/// Domain health level → wire.
pub fn health(level: HealthLevel) -> pb::HealthLevel {
    match level {
        HealthLevel::Healthy => pb::HealthLevel::Healthy,
        HealthLevel::Moderate => pb::HealthLevel::Moderate,
        HealthLevel::Warning => pb::HealthLevel::Warning,
        HealthLevel::Critical => pb::HealthLevel::Critical,
    }
}

/// Domain severity → wire.
pub fn severity(s: Severity) -> pb::Severity {
    match s {
        Severity::Info => pb::Severity::Info,
        Severity::Warning => pb::Severity::Warning,
        Severity::Critical => pb::Severity::Critical,
    }
}

/// A snapshot on the wire; `skipped` is the count a stream subscriber missed.
pub fn snapshot(s: &Snapshot, skipped: u64) -> pb::Snapshot {
    let h = &s.host;
    pb::Snapshot {
        sampled_at: s.sampled_at.map(timestamp),
        sequence: s.sequence,
        host: Some(pb::HostStatus {
            memory_total_bytes: h.memory_total_bytes,
            memory_available_bytes: h.memory_available_bytes,
            memory_used_bytes: h.memory_used_bytes,
            memory_used_percent: crate::monitor::snapshot::percent(h.memory_used_bytes, h.memory_total_bytes),
            swap_total_bytes: h.swap_total_bytes,
            swap_used_bytes: h.swap_used_bytes,
            cpu_percent: h.cpu_percent,
            cpu_per_core_percent: h.cpu_per_core_percent.clone(),
            load_average_1m: h.load_average[0],
            load_average_5m: h.load_average[1],
            load_average_15m: h.load_average[2],
            cpu_count: h.cpu_per_core_percent.len() as u32,
        }),
        container: Some(match &s.container {
            Some(c) => pb::ContainerStatus {
                limited: c.memory_limit_bytes.is_some(),
                memory_limit_bytes: c.memory_limit_bytes.unwrap_or(0),
                memory_usage_bytes: c.memory_usage_bytes,
                cgroup_version: c.cgroup_version.into(),
            },
            None => pb::ContainerStatus::default(),
        }),
        effective_memory: Some(pb::EffectiveMemory {
            limit_bytes: s.effective.limit_bytes,
            used_bytes: s.effective.used_bytes,
            available_bytes: s.effective.available_bytes,
            used_percent: s.effective.used_percent(),
            source: match s.effective.source {
                LimitSource::Host => pb::MemoryLimitSource::Host,
                LimitSource::Cgroup => pb::MemoryLimitSource::Cgroup,
            } as i32,
        }),
        process: Some(pb::ProcessStatus {
            pid: s.process.pid,
            rss_bytes: s.process.rss_bytes,
            virtual_bytes: s.process.virtual_bytes,
            cpu_percent: s.process.cpu_percent,
            threads: s.process.threads,
        }),
        gpu: Some(pb::GpuStatus {
            gpu_available: s.gpu.available,
            unavailable_reason: s.gpu.unavailable_reason.clone(),
            driver_version: s.gpu.driver_version.clone(),
            devices: s.gpu.devices.iter().map(gpu).collect(),
        }),
        health: health(s.health) as i32,
        skipped,
        stale_sources: s.stale.iter().map(|src| src.name().to_string()).collect(),
        sample_duration_us: s.sample_duration_us,
    }
}

fn gpu(d: &GpuDevice) -> pb::GpuDevice {
    pb::GpuDevice {
        index: d.index,
        name: d.name.clone(),
        uuid: d.uuid.clone(),
        memory_total_bytes: d.memory_total_bytes,
        memory_used_bytes: d.memory_used_bytes,
        memory_free_bytes: d.memory_free_bytes,
        memory_used_percent: d.memory_used_percent(),
        utilization_gpu_percent: d.utilization_gpu_percent,
        utilization_memory_percent: d.utilization_memory_percent,
        temperature_celsius: d.temperature_celsius,
        power_watts: d.power_watts,
        power_limit_watts: d.power_limit_watts,
        compute_capability_major: d.compute_capability.0,
        compute_capability_minor: d.compute_capability.1,
        torch_allocated_bytes: d.torch_allocated_bytes,
        torch_reserved_bytes: d.torch_reserved_bytes,
    }
}

/// Window statistics on the wire.
pub fn metric_stats(m: &MetricStats) -> pb::MetricStats {
    pb::MetricStats {
        metric: m.metric.clone(),
        unit: m.unit.into(),
        min: m.min,
        mean: m.mean,
        max: m.max,
        p95: m.p95,
        count: m.count,
    }
}

/// An alert on the wire.
pub fn alert(a: &Alert) -> pb::Alert {
    pb::Alert {
        id: a.id.clone(),
        rule: a.rule.name().into(),
        severity: severity(a.severity) as i32,
        resource: a.resource.clone(),
        value: a.value,
        threshold: a.threshold,
        unit: a.unit.into(),
        message: a.message.clone(),
        recommendations: a.recommendations.clone(),
        started_at: Some(timestamp(a.started_at)),
        resolved_at: a.resolved_at.map(timestamp),
        active: a.is_active(),
    }
}

/// An alert event on the wire.
pub fn alert_event(e: &AlertEvent) -> pb::AlertEvent {
    let kind = match e.kind {
        EventKind::Active => pb::alert_event::Kind::Active,
        EventKind::Raised => pb::alert_event::Kind::Raised,
        EventKind::Resolved => pb::alert_event::Kind::Resolved,
    };
    pb::AlertEvent { kind: kind as i32, alert: Some(alert(&e.alert)) }
}

/// A wire severity filter → domain (UNSPECIFIED = everything); unknown values are refused.
pub fn min_severity(value: i32, field: &'static str) -> Result<Severity, crate::error::Error> {
    match pb::Severity::try_from(value) {
        Ok(pb::Severity::Unspecified | pb::Severity::Info) => Ok(Severity::Info),
        Ok(pb::Severity::Warning) => Ok(Severity::Warning),
        Ok(pb::Severity::Critical) => Ok(Severity::Critical),
        Err(_) => Err(crate::error::Error::invalid(
            field,
            format!("must be one of SEVERITY_UNSPECIFIED..SEVERITY_CRITICAL (0..=3), got {value}"),
        )),
    }
}

/// Where requirements come from, on the wire.
pub fn source(s: crate::resources::requirements::Source) -> pb::RequirementSource {
    use crate::resources::requirements::Source;
    match s {
        Source::Table => pb::RequirementSource::Table,
        Source::Checkpoint => pb::RequirementSource::Checkpoint,
        Source::Measured => pb::RequirementSource::Measured,
    }
}

/// Requirements on the wire.
pub fn requirements(r: &crate::resources::requirements::Requirements, batch: u32) -> pb::Requirements {
    pb::Requirements {
        source: source(r.source) as i32,
        dtype: r.dtype.as_str().into(),
        weights_bytes: r.weights_bytes,
        working_set_bytes: r.per_sample_bytes.saturating_mul(u64::from(batch)),
        host_memory_bytes: r.host_bytes_for(batch, true),
        gpu_memory_bytes: r.gpu_bytes_for(batch),
        min_compute_capability: r.min_compute_capability,
        default_batch_size: r.default_batch_size,
        max_duration_s: r.max_duration_s,
        per_sample_bytes: r.per_sample_bytes,
        cuda_context_bytes: r.cuda_context_bytes,
    }
}

/// A fit answer on the wire.
pub fn validation(
    model: &str,
    duration_s: f64,
    a: &crate::resources::manager::FitAnswer,
) -> pb::ValidationResult {
    let verdict = a.verdict();
    pb::ValidationResult {
        fits: verdict.fits,
        model: model.into(),
        device: verdict.device.name(),
        requirements: Some(requirements(&a.requirements, a.batch)),
        checks: verdict
            .checks
            .iter()
            .map(|c| pb::ResourceCheck {
                resource: c.resource.clone(),
                ok: c.ok,
                required: c.required,
                available: c.available,
                reserved: c.reserved,
                headroom: c.headroom,
                unit: c.unit.into(),
                message: c.message.clone(),
            })
            .collect(),
        eviction_candidates: a
            .fit
            .eviction_candidates
            .iter()
            .map(|e| pb::EvictionCandidate {
                model: e.model.clone(),
                device: e.device.name(),
                bytes: e.bytes(),
                last_used: Some(timestamp(crate::resources::manager::wall_clock(e.last_used))),
            })
            .collect(),
        eviction_would_suffice: a.fit.eviction_would_suffice,
        safety_margin: a.margin,
        message: verdict.summary(model),
        batch_size: a.batch,
        duration_s,
    }
}

/// A lease on the wire.
pub fn lease(l: &crate::resources::ledger::Lease) -> pb::Lease {
    use crate::resources::manager::wall_clock;
    pb::Lease {
        lease_id: l.id.as_str().into(),
        owner: l.owner.clone(),
        cpu_memory_bytes: l.cpu_bytes,
        gpu_memory_bytes: l.gpu_bytes,
        gpu_index: l.gpu_index,
        created_at: Some(timestamp(wall_clock(l.created_at))),
        expires_at: l.expires_at.map(|t| timestamp(wall_clock(t))),
        age_ms: l.created_at.elapsed().as_millis() as u64,
        kind: l.kind.as_str().into(),
    }
}

/// A cached model on the wire.
pub fn cached_model(e: &crate::resources::cache::CachedModel) -> pb::CachedModel {
    pb::CachedModel {
        model: e.model.clone(),
        device: e.device.name(),
        dtype: e.dtype.as_str().into(),
        estimated_bytes: e.estimated_bytes,
        measured_bytes: e.measured_bytes.unwrap_or(0),
        loaded_at: Some(timestamp(e.loaded_at)),
        last_used: Some(timestamp(crate::resources::manager::wall_clock(e.last_used))),
        in_flight: e.in_flight,
        pinned: e.pinned,
    }
}

/// A model's listing on the wire.
pub fn model_info(
    id: &str,
    root: &str,
    requirements: Option<&crate::resources::requirements::Requirements>,
    cached: Option<&crate::resources::cache::CachedModel>,
) -> pb::ModelInfo {
    pb::ModelInfo {
        model: id.into(),
        weights_present: !root.is_empty(),
        loaded: cached.is_some(),
        device: cached.map(|c| c.device.name()).unwrap_or_default(),
        dtype: cached.map(|c| c.dtype.as_str().to_string()).unwrap_or_default(),
        bytes: cached.map_or(0, |c| c.bytes()),
        requirements: requirements.map(|r| self::requirements(r, r.default_batch_size)),
        in_flight: cached.map_or(0, |c| c.in_flight),
        last_used: cached.map(|c| timestamp(crate::resources::manager::wall_clock(c.last_used))),
        loaded_at: cached.map(|c| timestamp(c.loaded_at)),
        pinned: cached.is_some_and(|c| c.pinned),
        root: root.into(),
    }
}

/// A suggestion on the wire.
pub fn suggestion(s: &crate::resources::optimizer::Suggestion) -> pb::Suggestion {
    pb::Suggestion {
        kind: s.kind.into(),
        severity: severity(s.severity) as i32,
        message: s.message.clone(),
        resource: s.resource.clone(),
        bytes_saved: s.bytes_saved,
    }
}

/// A cleanup report on the wire.
pub fn cleanup(r: &crate::resources::cleanup::Report) -> pb::CleanupResult {
    pb::CleanupResult {
        dry_run: r.dry_run,
        actions: r
            .actions
            .iter()
            .map(|a| pb::CleanupAction {
                kind: a.kind.into(),
                target: a.target.clone(),
                host_bytes_freed: a.host_freed,
                gpu_bytes_freed: a.gpu_freed,
                estimated_bytes: a.estimated,
                detail: a.detail.clone(),
            })
            .collect(),
        host_bytes_freed: r.host_freed,
        gpu_bytes_freed: r.gpu_freed,
        duration_ms: r.duration.as_millis() as u64,
    }
}

/// A cached model's estimate beside its measurement.
pub fn requirement_comparison(e: &crate::resources::cache::CachedModel) -> pb::RequirementComparison {
    let estimated = pb::Requirements {
        source: pb::RequirementSource::Checkpoint as i32,
        dtype: e.dtype.as_str().into(),
        weights_bytes: e.estimated_bytes,
        ..Default::default()
    };
    let measured = e.measured_bytes.map(|m| pb::Requirements {
        source: pb::RequirementSource::Measured as i32,
        dtype: e.dtype.as_str().into(),
        weights_bytes: m,
        ..Default::default()
    });
    pb::RequirementComparison { model: e.model.clone(), estimated: Some(estimated), measured }
}
