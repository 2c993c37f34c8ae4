//! `validate`, `allocate`, `release`, `cleanup`, `batch-size` and `suggestions`: the resource
//! manager's verdicts and actions, with the numbers behind them.

use maestro_proto as pb;

use super::Output;
use crate::{
    args::{AllocateArgs, BatchSizeArgs, CleanupArgs, ReleaseArgs, ValidateArgs},
    client::Clients,
    exit,
    table::{pairs, Table},
    units::{self, bytes, in_unit, signed_bytes},
    Failure,
};

/// `validate`: exits [`exit::REFUSED`] when the model does not fit, so scripts can gate a load on it.
pub async fn validate(c: &mut Clients, out: Output, a: ValidateArgs) -> Result<(), Failure> {
    let req = pb::ValidateRequest {
        model: a.model,
        batch_size: a.batch,
        duration_s: a.duration,
        device: a.device,
        dtype: a.dtype,
        audio_prompt_s: a.audio_prompt_s,
    };
    let verdict = c.resources.validate_model(req).await?.into_inner();
    out.show(&verdict, "ValidationResult", render_validation)?;
    if verdict.fits {
        Ok(())
    } else {
        Err(Failure::silent(exit::REFUSED))
    }
}

fn render_validation(v: &pb::ValidationResult) -> String {
    let verdict = if v.fits { "FITS" } else { "DOES NOT FIT" };
    let r = v.requirements.clone().unwrap_or_default();
    let mut text = pairs(&[
        ("verdict", format!("{verdict}: {}", v.message)),
        ("model", format!("{} on {}, batch {}, {} s", v.model, v.device, v.batch_size, v.duration_s)),
        ("requirements", requirements_line(&r)),
        ("safety margin", units::percent(v.safety_margin * 100.0)),
    ]);
    let mut t = Table::new(&["RESOURCE", "OK", "REQUIRED", "AVAILABLE", "RESERVED", "HEADROOM", "MESSAGE"])
        .right(&[2, 3, 4, 5]);
    for ch in &v.checks {
        let u = |x: f64| in_unit(x, &ch.unit);
        let row = vec![ch.resource.clone(), units::yes_no(ch.ok).into(), u(ch.required), u(ch.available)];
        t.row([row, vec![u(ch.reserved), u(ch.headroom), ch.message.clone()]].concat());
    }
    text.push('\n');
    text.push_str(&t.render());
    if !v.eviction_candidates.is_empty() {
        let mut e = Table::new(&["EVICTABLE MODEL", "DEVICE", "SIZE", "LAST USED"]).right(&[2]);
        for m in &v.eviction_candidates {
            e.row(vec![m.model.clone(), m.device.clone(), bytes(m.bytes), units::ago(m.last_used.as_ref())]);
        }
        let suffice = if v.eviction_would_suffice { "would" } else { "would not" };
        text.push_str(&format!("\n{}evicting them {suffice} make it fit\n", e.render()));
    }
    text
}

fn requirements_line(r: &pb::Requirements) -> String {
    let source = match pb::RequirementSource::try_from(r.source).unwrap_or_default() {
        pb::RequirementSource::Table => "table",
        pb::RequirementSource::Checkpoint => "checkpoint",
        pb::RequirementSource::Measured => "measured",
        pb::RequirementSource::Unspecified => "unknown",
    };
    format!(
        "{} weights + {} working set ({}; host {}, gpu {}; from the {source})",
        bytes(r.weights_bytes),
        bytes(r.working_set_bytes),
        r.dtype,
        bytes(r.host_memory_bytes),
        bytes(r.gpu_memory_bytes)
    )
}

/// `allocate`.
pub async fn allocate(c: &mut Clients, out: Output, a: AllocateArgs) -> Result<(), Failure> {
    let req = pb::AllocateRequest {
        owner: a.owner,
        cpu_memory_bytes: a.cpu_memory,
        gpu_memory_bytes: a.gpu_memory,
        gpu_index: a.gpu_index,
        ttl_seconds: a.ttl,
    };
    let lease = c.resources.allocate(req).await?.into_inner();
    out.show(&lease, "Lease", |l| {
        format!("{}\n{}", l.lease_id, lease_table(std::slice::from_ref(l)).unwrap_or_default())
    })?;
    Ok(())
}

/// `release`.
pub async fn release(c: &mut Clients, out: Output, a: ReleaseArgs) -> Result<(), Failure> {
    let released = c.resources.release(pb::ReleaseRequest { lease_id: a.lease_id }).await?.into_inner();
    out.show(&released, "ReleaseResponse", |r| match &r.lease {
        Some(l) => format!(
            "released {} ({} host, {} GPU, held {})\n",
            l.lease_id,
            bytes(l.cpu_memory_bytes),
            bytes(l.gpu_memory_bytes),
            units::millis(l.age_ms as f64)
        ),
        None => "released\n".into(),
    })?;
    Ok(())
}

/// Leases as a table, or `None` when there are none.
pub fn lease_table(leases: &[pb::Lease]) -> Option<String> {
    if leases.is_empty() {
        return None;
    }
    let mut t = Table::new(&["LEASE", "OWNER", "KIND", "HOST", "GPU", "ON", "AGE", "EXPIRES"]).right(&[3, 4]);
    for l in leases {
        let on = l.gpu_index.map_or("-".into(), |i| format!("gpu{i}"));
        t.row(vec![
            l.lease_id.clone(),
            l.owner.clone(),
            l.kind.clone(),
            bytes(l.cpu_memory_bytes),
            bytes(l.gpu_memory_bytes),
            on,
            units::millis(l.age_ms as f64),
            units::timestamp(l.expires_at.as_ref()),
        ]);
    }
    Some(t.render())
}

/// `cleanup`.
pub async fn cleanup(c: &mut Clients, out: Output, a: &CleanupArgs) -> Result<(), Failure> {
    let req = pb::CleanupRequest { force: a.force, dry_run: a.dry_run };
    let result = c.resources.cleanup(req).await?.into_inner();
    out.show(&result, "CleanupResult", render_cleanup)?;
    Ok(())
}

fn render_cleanup(r: &pb::CleanupResult) -> String {
    let head = if r.dry_run { "dry run: nothing was done" } else { "cleanup done" };
    let mut text = format!(
        "{head} in {}; freed {} host, {} GPU (measured)\n",
        units::millis(r.duration_ms as f64),
        signed_bytes(r.host_bytes_freed),
        signed_bytes(r.gpu_bytes_freed)
    );
    if r.actions.is_empty() {
        text.push_str("no action needed\n");
        return text;
    }
    let mut t =
        Table::new(&["ACTION", "TARGET", "HOST FREED", "GPU FREED", "EXPECTED", "DETAIL"]).right(&[2, 3, 4]);
    for a in &r.actions {
        t.row(vec![
            a.kind.clone(),
            a.target.clone(),
            signed_bytes(a.host_bytes_freed),
            signed_bytes(a.gpu_bytes_freed),
            bytes(a.estimated_bytes),
            a.detail.clone(),
        ]);
    }
    text.push_str(&t.render());
    text
}

/// `batch-size`.
pub async fn batch_size(c: &mut Clients, out: Output, a: BatchSizeArgs) -> Result<(), Failure> {
    let req = pb::BatchSizeRequest {
        model: a.model,
        gpu_memory_bytes: a.memory,
        duration_s: a.duration,
        device: a.device,
        dtype: a.dtype,
    };
    let advice = c.resources.get_optimal_batch_size(req).await?.into_inner();
    out.show(&advice, "BatchSizeAdvice", |b| {
        pairs(&[
            ("batch size", b.batch_size.to_string()),
            ("model", format!("{} on {}, {} s per sample", b.model, b.device, b.duration_s)),
            (
                "memory",
                format!(
                    "{} planned, {} usable after the {} margin",
                    bytes(b.memory_bytes),
                    bytes(b.usable_bytes),
                    units::percent(b.safety_margin * 100.0)
                ),
            ),
            (
                "per sample",
                format!(
                    "{} (x{} for guidance), weights {}",
                    bytes(b.per_sample_bytes),
                    b.cfg_factor,
                    bytes(b.weights_bytes)
                ),
            ),
            ("reason", b.reason.clone()),
        ])
    })?;
    Ok(())
}

/// `suggestions`.
pub async fn suggestions(c: &mut Clients, out: Output) -> Result<(), Failure> {
    let s = c.resources.get_optimization_suggestions(pb::SuggestionsRequest {}).await?.into_inner();
    out.show(&s, "Suggestions", |s| {
        let table = suggestion_table(&s.suggestions).unwrap_or_else(|| "no suggestions\n".into());
        format!("health {}\n{table}", units::health(s.health))
    })?;
    Ok(())
}

/// Suggestions as a table, or `None` when there are none.
pub fn suggestion_table(suggestions: &[pb::Suggestion]) -> Option<String> {
    if suggestions.is_empty() {
        return None;
    }
    let mut t = Table::new(&["SEVERITY", "KIND", "RESOURCE", "SAVES", "MESSAGE"]).right(&[3]);
    for s in suggestions {
        t.row(vec![
            units::severity(s.severity).into(),
            s.kind.clone(),
            s.resource.clone(),
            bytes(s.bytes_saved),
            s.message.clone(),
        ]);
    }
    Some(t.render())
}
