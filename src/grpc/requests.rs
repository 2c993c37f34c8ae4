//! Wire requests → domain requests, validating every field. Messages name the field, the limit and
//! the value given.

use std::time::Duration;

use super::pb;
use crate::{
    error::Error,
    resources::{
        ledger::{LeaseKind, LeaseRequest},
        manager::FitQuestion,
        model_id,
        requirements::DType,
        validate::Device,
    },
};

/// Largest batch any request may ask for.
pub const MAX_BATCH: u32 = 64;

fn model(id: &str) -> Result<String, Error> {
    model_id::validate(id)?;
    Ok(id.to_string())
}

fn dtype(value: &str) -> Result<DType, Error> {
    DType::parse(value)
        .map_err(|e| Error::invalid("dtype", e.to_string().trim_start_matches("dtype: ").to_string()))
}

/// `ValidateModel`'s request.
pub fn fit_question(r: pb::ValidateRequest) -> Result<FitQuestion, Error> {
    if r.batch_size == 0 || r.batch_size > MAX_BATCH {
        return Err(Error::invalid(
            "batch_size",
            format!("must be within 1..={MAX_BATCH}, got {}", r.batch_size),
        ));
    }
    positive_duration(r.duration_s)?;
    Ok(FitQuestion {
        model: model(&r.model)?,
        batch: r.batch_size,
        duration_s: r.duration_s,
        device: Device::parse(&r.device, "device")?,
        dtype: dtype(&r.dtype)?,
    })
}

/// `GetOptimalBatchSize`'s request (batch 1, the answer scales it).
pub fn batch_question(r: &pb::BatchSizeRequest) -> Result<FitQuestion, Error> {
    positive_duration(r.duration_s)?;
    Ok(FitQuestion {
        model: model(&r.model)?,
        batch: 1,
        duration_s: r.duration_s,
        device: Device::parse(&r.device, "device")?,
        dtype: dtype(&r.dtype)?,
    })
}

fn positive_duration(d: f64) -> Result<(), Error> {
    if !d.is_finite() || d <= 0.0 {
        return Err(Error::invalid("duration_s", format!("must be a finite number of seconds > 0, got {d}")));
    }
    Ok(())
}

/// `Allocate`'s request.
pub fn lease_request(r: pb::AllocateRequest, max_ttl: Duration) -> Result<LeaseRequest, Error> {
    let owner = r.owner.trim();
    if owner.is_empty() || owner.chars().count() > 128 || owner.chars().any(char::is_control) {
        let shown: String = r.owner.chars().take(40).collect();
        return Err(Error::invalid("owner", format!("must be 1..=128 printable characters, got {shown:?}")));
    }
    if r.cpu_memory_bytes == 0 && r.gpu_memory_bytes == 0 {
        return Err(Error::invalid(
            "cpu_memory_bytes",
            "cpu_memory_bytes or gpu_memory_bytes must be > 0, got 0 and 0",
        ));
    }
    if r.gpu_memory_bytes > 0 && r.gpu_index.is_none() {
        return Err(Error::invalid(
            "gpu_index",
            format!("is required when gpu_memory_bytes > 0 (got {})", r.gpu_memory_bytes),
        ));
    }
    let max = max_ttl.as_secs();
    if r.ttl_seconds == 0 || u64::from(r.ttl_seconds) > max {
        return Err(Error::invalid(
            "ttl_seconds",
            format!("must be within 1..={max}, got {}", r.ttl_seconds),
        ));
    }
    Ok(LeaseRequest {
        owner: owner.to_string(),
        kind: LeaseKind::Client,
        cpu_bytes: r.cpu_memory_bytes,
        gpu_bytes: r.gpu_memory_bytes,
        gpu_index: r.gpu_index,
        ttl: Some(Duration::from_secs(r.ttl_seconds.into())),
    })
}

/// `Release`'s lease id.
pub fn lease_id(r: &pb::ReleaseRequest) -> Result<String, Error> {
    let id = &r.lease_id;
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control()) {
        let shown: String = id.chars().take(40).collect();
        return Err(Error::invalid(
            "lease_id",
            format!("must be 1..=128 printable characters, got {shown:?}"),
        ));
    }
    Ok(id.clone())
}
