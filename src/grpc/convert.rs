//! Every domain → wire conversion, in one place: telemetry and alerts here, the resource manager's
//! answers in [`resources`], generation streams in [`generation`].

mod generation;
mod resources;

pub use generation::encode_pcm;
pub use generation::{audio_chunk, generate_header, generate_summary};
pub use resources::{
    batch_advice, cached_model, cleanup, hide_lease_ids, lease, model_info, report, requirement_comparison,
    requirements, source, suggestion, validation,
};

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
            load_average_1m: h.load_average.map(|l| l[0]),
            load_average_5m: h.load_average.map(|l| l[1]),
            load_average_15m: h.load_average.map(|l| l[2]),
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
        stale_sources: s.stale_sources(),
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
        pci_bus_id: d.pci_bus_id.clone(),
        process_memory_used_bytes: d.process_memory_used_bytes,
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
