//! Resource-side domain → wire conversions: requirements, verdicts, batch advice, leases, cached
//! models and listings, suggestions, cleanups and reports.

use super::{alert, health, metric_stats, severity, snapshot, timestamp};
use crate::{
    grpc::pb,
    resources::{
        cache::CachedModel,
        cleanup,
        journal::{Eviction, Outcome, QueuedGeneration, RecentGeneration},
        ledger::Lease,
        manager::{wall_clock, BatchAnswer, FitAnswer, ModelListing},
        optimizer::Suggestion,
        report::Report,
        requirements::{Requirements, Source, CFG_FACTOR},
        verdict::Check,
    },
};

/// Where requirements come from, on the wire.
pub fn source(s: Source) -> pb::RequirementSource {
    match s {
        Source::Table => pb::RequirementSource::Table,
        Source::Checkpoint => pb::RequirementSource::Checkpoint,
        Source::Measured => pb::RequirementSource::Measured,
    }
}

/// Requirements on the wire.
pub fn requirements(r: &Requirements, batch: u32) -> pb::Requirements {
    pb::Requirements {
        source: source(r.source) as i32,
        dtype: r.dtype.as_str().into(),
        weights_bytes: r.weights_bytes(),
        working_set_bytes: r.per_sample_bytes.saturating_mul(u64::from(batch)),
        host_memory_bytes: r.host_bytes_for(batch, true),
        gpu_memory_bytes: r.gpu_bytes_for(batch),
        min_compute_capability: r.min_compute_capability,
        default_batch_size: r.default_batch_size,
        max_duration_s: r.max_duration_s,
        per_sample_bytes: r.per_sample_bytes,
        cuda_context_bytes: r.cuda_context_bytes,
        audio_encoder_bytes: r.audio_in.weight_bytes,
        audio_input_bytes_per_sample: r.audio_in.bytes_per_sample,
    }
}

/// A fit answer on the wire.
pub fn validation(a: &FitAnswer) -> pb::ValidationResult {
    let verdict = a.verdict();
    pb::ValidationResult {
        fits: verdict.fits,
        model: a.model.clone(),
        device: verdict.device.name(),
        requirements: Some(requirements(&a.requirements, a.batch)),
        checks: verdict.checks.iter().chain(&verdict.elsewhere).map(check).collect(),
        eviction_candidates: a.fit.eviction_candidates.iter().map(eviction_candidate).collect(),
        eviction_would_suffice: a.fit.eviction_would_suffice,
        safety_margin: a.margin,
        message: verdict.summary(&a.model),
        batch_size: a.batch,
        duration_s: a.duration_s,
    }
}

fn check(c: &Check) -> pb::ResourceCheck {
    pb::ResourceCheck {
        resource: c.resource.clone(),
        ok: c.ok,
        required: c.required,
        available: c.available,
        reserved: c.reserved,
        headroom: c.headroom,
        unit: c.unit.into(),
        message: c.message.clone(),
    }
}

fn eviction_candidate(e: &CachedModel) -> pb::EvictionCandidate {
    pb::EvictionCandidate {
        model: e.model.clone(),
        device: e.device.name(),
        bytes: e.bytes(),
        last_used: Some(timestamp(wall_clock(e.last_used))),
    }
}

/// Batch advice on the wire.
pub fn batch_advice(a: &BatchAnswer) -> pb::BatchSizeAdvice {
    let (fit, advice, r) = (&a.fit, &a.advice, &a.fit.requirements);
    pb::BatchSizeAdvice {
        model: fit.model.clone(),
        batch_size: advice.batch,
        memory_bytes: advice.memory_bytes,
        usable_bytes: advice.usable_bytes,
        weights_bytes: r.weights_bytes(),
        per_sample_bytes: r.per_sample_bytes,
        safety_margin: fit.margin,
        cfg_factor: CFG_FACTOR as u32,
        duration_s: fit.duration_s,
        source: source(r.source) as i32,
        device: fit.verdict().device.name(),
        reason: advice.reason.clone(),
    }
}

/// A lease on the wire.
pub fn lease(l: &Lease) -> pb::Lease {
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
        token_name: l.token.clone().unwrap_or_default(),
    }
}

/// Blanks the lease ids of a report for a caller who may not see them (see [`Caller::sees_lease_ids`](crate::grpc::auth::Caller::sees_lease_ids)).
pub fn hide_lease_ids(report: &mut pb::ResourceReport) {
    for lease in &mut report.leases {
        lease.lease_id.clear();
    }
}

/// A cached model on the wire.
pub fn cached_model(e: &CachedModel) -> pb::CachedModel {
    pb::CachedModel {
        model: e.model.clone(),
        device: e.device.name(),
        dtype: e.dtype.as_str().into(),
        estimated_bytes: e.estimated_bytes,
        measured_bytes: e.measured_bytes.unwrap_or(0),
        loaded_at: Some(timestamp(e.loaded_at)),
        last_used: Some(timestamp(wall_clock(e.last_used))),
        in_flight: e.in_flight,
        pinned: e.pinned,
        unloading: e.unloading,
    }
}

/// A model's listing on the wire.
pub fn model_info(m: &ModelListing) -> pb::ModelInfo {
    let cached = m.cached.as_ref();
    pb::ModelInfo {
        model: m.id.clone(),
        weights_present: m.root.is_some(),
        loaded: cached.is_some(),
        device: cached.map(|c| c.device.name()).unwrap_or_default(),
        dtype: cached.map(|c| c.dtype.as_str().to_string()).unwrap_or_default(),
        bytes: cached.map_or(0, |c| c.bytes()),
        requirements: m.requirements.as_ref().map(|r| requirements(r, r.default_batch_size)),
        in_flight: cached.map_or(0, |c| c.in_flight),
        last_used: cached.map(|c| timestamp(wall_clock(c.last_used))),
        loaded_at: cached.map(|c| timestamp(c.loaded_at)),
        pinned: cached.is_some_and(|c| c.pinned),
        root: m.root.as_ref().map(|r| r.display().to_string()).unwrap_or_default(),
        error: m.error.clone().unwrap_or_default(),
    }
}

/// A suggestion on the wire.
pub fn suggestion(s: &Suggestion) -> pb::Suggestion {
    pb::Suggestion {
        kind: s.kind.into(),
        severity: severity(s.severity) as i32,
        message: s.message.clone(),
        resource: s.resource.clone(),
        bytes_saved: s.bytes_saved,
    }
}

/// A cleanup report on the wire.
pub fn cleanup(r: &cleanup::Report) -> pb::CleanupResult {
    pb::CleanupResult {
        dry_run: r.dry_run,
        actions: r
            .actions
            .iter()
            .map(|a| pb::CleanupAction {
                kind: a.kind.name().into(),
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
pub fn requirement_comparison(e: &CachedModel) -> pb::RequirementComparison {
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

/// A resource report on the wire.
pub fn report(r: &Report) -> pb::ResourceReport {
    pb::ResourceReport {
        snapshot: Some(snapshot(&r.snapshot, 0)),
        window_stats: r.window_stats.iter().map(metric_stats).collect(),
        window_seconds: r.window.as_secs() as u32,
        leases: r.leases.iter().map(lease).collect(),
        cached_models: r.cached.iter().map(cached_model).collect(),
        active_alerts: r.active_alerts.iter().map(alert).collect(),
        health: health(r.snapshot.health) as i32,
        suggestions: r.suggestions.iter().map(suggestion).collect(),
        requirements: r.cached.iter().map(requirement_comparison).collect(),
        reservations: r
            .reservations
            .iter()
            .map(|d| pb::DeviceReservation {
                device: d.device.clone(),
                reserved_bytes: d.reserved_bytes,
                leases: d.leases,
            })
            .collect(),
        queue: queue(&r.queue),
        recent_generations: r.recent.iter().map(recent_generation).collect(),
        evictions: r.evictions.iter().map(eviction).collect(),
        thresholds: r
            .thresholds
            .iter()
            .map(|t| pb::Threshold {
                metric: t.metric.into(),
                kind: t.kind.into(),
                value: t.value,
                unit: t.unit.into(),
            })
            .collect(),
    }
}

/// The queue on the wire: running generations at position 0, waiting ones numbered from 1.
fn queue(entries: &[QueuedGeneration]) -> Vec<pb::QueuedGeneration> {
    let now = std::time::Instant::now();
    let mut waiting = 0;
    entries
        .iter()
        .map(|e| {
            let position = if e.started.is_some() {
                0
            } else {
                waiting += 1;
                waiting
            };
            pb::QueuedGeneration {
                request_id: e.request_id.clone(),
                model: e.model.clone(),
                device: e.device.name(),
                duration_s: e.duration_s,
                running: e.started.is_some(),
                position,
                waited_ms: (e.started.unwrap_or(now) - e.admitted).as_secs_f64() * 1e3,
            }
        })
        .collect()
}

fn recent_generation(g: &RecentGeneration) -> pb::RecentGeneration {
    let (outcome, error) = match &g.outcome {
        Outcome::Completed => ("completed", String::new()),
        Outcome::Cancelled => ("cancelled", String::new()),
        Outcome::Failed(e) => ("failed", e.clone()),
    };
    pb::RecentGeneration {
        request_id: g.request_id.clone(),
        model: g.model.clone(),
        device: g.device.name(),
        duration_s: g.duration_s,
        ended_at: Some(timestamp(g.ended_at)),
        time_to_first_audio_ms: g.time_to_first_audio_ms,
        real_time_factor: g.real_time_factor,
        outcome: outcome.into(),
        error,
    }
}

fn eviction(e: &Eviction) -> pb::Eviction {
    pb::Eviction {
        model: e.model.clone(),
        device: e.device.name(),
        bytes: e.bytes,
        at: Some(timestamp(e.at)),
        reason: e.reason.clone(),
    }
}
