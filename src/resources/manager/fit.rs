//! Fit questions: what a model needs (measured, else from its checkpoint, else from the table),
//! whether it fits on a device now, what eviction could do about it, and the largest batch that fits.
//!
//! Requirements are looked up on the caller's side (a checkpoint header is read on a blocking thread,
//! off the actor and off the runtime) and remembered briefly ([`crate::resources::memo`]); a verdict
//! reads the state the actor published last, so it never queues behind other commands.

use std::time::Instant;

use super::{Handle, ManagerSettings};
use crate::{
    error::Error,
    resources::{
        cache::CachedModel,
        duration::{check_duration, MaxDuration},
        memo::Recall,
        model_id,
        requirements::{self, DType, Requirements},
        validate::{self, BatchAdvice, Device, FitInput, Verdict},
    },
};

/// What a fit question asks.
#[derive(Debug, Clone)]
pub struct FitQuestion {
    /// Model id.
    pub model: String,
    /// Batch size (0 = the model's default).
    pub batch: u32,
    /// Seconds of audio.
    pub duration_s: f64,
    /// Device.
    pub device: Device,
    /// Weight dtype.
    pub dtype: DType,
}

/// A verdict with what eviction could do about it.
#[derive(Debug, Clone)]
pub struct FitVerdict {
    /// The verdict.
    pub verdict: Verdict,
    /// Idle cached models on the same memory that eviction would free, least recently used first.
    pub eviction_candidates: Vec<CachedModel>,
    /// Whether evicting every candidate would make the model fit.
    pub eviction_would_suffice: bool,
}

/// A verdict with the question and the requirements behind it.
#[derive(Debug, Clone)]
pub struct FitAnswer {
    /// The model asked about.
    pub model: String,
    /// The seconds of audio asked about.
    pub duration_s: f64,
    /// What the model needs.
    pub requirements: Requirements,
    /// The batch the verdict is for.
    pub batch: u32,
    /// The verdict and eviction's options.
    pub fit: FitVerdict,
    /// The margin applied.
    pub margin: f64,
}

impl FitAnswer {
    /// The verdict.
    pub fn verdict(&self) -> &Verdict {
        &self.fit.verdict
    }
}

/// What `GetOptimalBatchSize` asks: a fit question for one sample, and the memory to plan for.
#[derive(Debug, Clone)]
pub struct BatchQuestion {
    /// The model, duration, device and dtype (its batch is ignored: one sample is sized).
    pub fit: FitQuestion,
    /// Memory to plan for; 0 = what is free now on the device the verdict picks.
    pub memory_bytes: u64,
    /// The largest batch worth advising.
    pub max_batch: u32,
}

/// The largest batch that fits, with the verdict it was derived from.
#[derive(Debug, Clone)]
pub struct BatchAnswer {
    /// The one-sample verdict (device, requirements, margin).
    pub fit: FitAnswer,
    /// The advice.
    pub advice: BatchAdvice,
}

impl Handle {
    /// The requirements of a model for a batch and duration: measured, else from its checkpoint, else
    /// from the table. Reads at most a checkpoint header, on a blocking thread.
    pub async fn requirements(&self, q: &FitQuestion) -> Result<Requirements, Error> {
        let key = (q.model.clone(), q.dtype, q.batch, q.duration_s.to_bits());
        match self.lookups.recall(&key, Instant::now()) {
            Recall::Fresh(r) => return Ok(r),
            Recall::Stale { requirements, refresh } => {
                if refresh {
                    let (this, q) = (self.clone(), q.clone());
                    tokio::spawn(async move {
                        match this.look_up(q).await {
                            Ok(r) => this.lookups.remember(key, r, Instant::now()),
                            Err(_) => this.lookups.forget(&key),
                        }
                    });
                }
                return Ok(requirements);
            }
            Recall::Missing => {}
        }
        let found = self.look_up(q.clone()).await?;
        self.lookups.remember(key, found.clone(), Instant::now());
        Ok(found)
    }

    async fn look_up(&self, question: FitQuestion) -> Result<Requirements, Error> {
        let settings = self.settings.clone();
        tokio::task::spawn_blocking(move || lookup(&settings, &question))
            .await
            .map_err(|e| Error::Internal(format!("requirements lookup failed: {e}")))?
    }

    /// Whether a model fits, with the numbers.
    pub async fn fit(&self, q: FitQuestion) -> Result<FitAnswer, Error> {
        let requirements = self.requirements(&q).await?;
        check_duration(
            q.duration_s,
            MaxDuration::Model { model: &q.model, max_s: requirements.max_duration_s },
        )?;
        let batch = if q.batch == 0 { requirements.default_batch_size } else { q.batch };
        let state = self.state.borrow().clone();
        let snapshot = self.monitor.latest();
        let requirements = apply_measurement(state.cache.get(&q.model), requirements);
        let reserved_gpu: Vec<(u32, u64)> = snapshot
            .gpu
            .devices
            .iter()
            .map(|d| (d.index, state.reserved_gpu.get(&d.index).copied().unwrap_or(0)))
            .collect();
        let margin = self.settings.safety_margin;
        let input = FitInput {
            requirements: &requirements,
            batch,
            device: q.device,
            snapshot: &snapshot,
            reserved_host: state.reserved_host,
            reserved_gpu: &reserved_gpu,
            margin,
        };
        let evictable: Vec<CachedModel> =
            state.cache.evictable(Instant::now(), false).into_iter().cloned().collect();
        let fit = with_eviction(validate::verdict(&input)?, &evictable, margin);
        Ok(FitAnswer { model: q.model, duration_s: q.duration_s, requirements, batch, fit, margin })
    }

    /// The largest batch that fits in the memory asked about (or, for 0, in what is free now on the
    /// device the one-sample verdict picks: that GPU's free memory, or the host's available memory).
    pub async fn batch_advice(&self, q: BatchQuestion) -> Result<BatchAnswer, Error> {
        let fit = self.fit(FitQuestion { batch: 1, ..q.fit }).await?;
        let snapshot = self.monitor.latest();
        let (on_gpu, free) = match fit.verdict().device {
            Device::Cuda(i) => (
                true,
                snapshot
                    .gpu
                    .devices
                    .iter()
                    .find(|d| d.index == i)
                    .and_then(|d| d.memory_free_bytes)
                    .unwrap_or(0),
            ),
            _ => (false, snapshot.effective.available_bytes),
        };
        let memory = if q.memory_bytes > 0 { q.memory_bytes } else { free };
        let advice = validate::optimal_batch(&fit.requirements, memory, fit.margin, on_gpu, q.max_batch);
        Ok(BatchAnswer { fit, advice })
    }
}

/// The requirements of `q` from disk or the table (a blocking call).
fn lookup(settings: &ManagerSettings, q: &FitQuestion) -> Result<Requirements, Error> {
    model_id::validate(&q.model)?;
    match model_id::resolve(&q.model, &settings.roots) {
        Ok(found) => Ok(requirements::from_checkpoint(&found.dir, q.dtype, q.batch, q.duration_s)?),
        Err(e) => match settings.registry.table(&q.model) {
            Some(entry) => Ok(entry.requirements(q.dtype, q.duration_s)),
            None => Err(e.into()),
        },
    }
}

/// Adds what evicting the idle models on the verdict's memory would do.
fn with_eviction(verdict: Verdict, evictable: &[CachedModel], margin: f64) -> FitVerdict {
    let same_memory = |e: &&CachedModel| match verdict.device {
        Device::Cuda(i) => e.device == Device::Cuda(i),
        _ => !matches!(e.device, Device::Cuda(_)),
    };
    let candidates: Vec<CachedModel> = evictable.iter().filter(same_memory).cloned().collect();
    let freed: u64 = candidates.iter().map(CachedModel::bytes).sum();
    let usable_freed = freed as f64 * (1.0 - margin);
    let would_suffice = !verdict.fits
        && !candidates.is_empty()
        && verdict.checks.iter().all(|c| c.ok || (c.unit == "bytes" && c.headroom + usable_freed >= 0.0));
    FitVerdict { verdict, eviction_candidates: candidates, eviction_would_suffice: would_suffice }
}

/// Replaces the estimated weight bytes by the size measured when the model was loaded (same dtype).
/// A measurement below half the estimate is taken for an artifact (pages reused from an earlier
/// load) and ignored, so validation never trusts a figure that is too good to be true.
fn apply_measurement(entry: Option<&CachedModel>, requirements: Requirements) -> Requirements {
    match entry {
        Some(e) if e.dtype == requirements.dtype => match e.measured_bytes {
            Some(m) if m >= requirements.weights_bytes / 2 => {
                let per_sample = requirements.per_sample_bytes;
                requirements.measured(m, per_sample)
            }
            _ => requirements,
        },
        _ => requirements,
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::resources::requirements::{Registry, Source};

    fn entry(measured: Option<u64>, dtype: DType) -> CachedModel {
        CachedModel {
            model: "m".into(),
            device: Device::Cpu,
            dtype,
            estimated_bytes: 1000,
            measured_bytes: measured,
            loaded_at: SystemTime::now(),
            last_used: Instant::now(),
            in_flight: 0,
            pinned: false,
        }
    }

    #[test]
    fn a_measurement_replaces_the_estimate_unless_implausible() {
        let table = Registry::default();
        let r = table.table("facebook/musicgen-small").unwrap().requirements(DType::F32, 10.0);
        let w = r.weights_bytes;
        let measured = apply_measurement(Some(&entry(Some(w + 7), DType::F32)), r.clone());
        assert_eq!((measured.source, measured.weights_bytes), (Source::Measured, w + 7));
        assert_eq!(apply_measurement(Some(&entry(Some(w / 4), DType::F32)), r.clone()).source, r.source);
        assert_eq!(apply_measurement(Some(&entry(Some(w), DType::F16)), r.clone()).source, r.source);
        assert_eq!(apply_measurement(None, r.clone()).source, r.source);
    }
}
