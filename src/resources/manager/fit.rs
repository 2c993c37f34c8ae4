//! Fit questions: what a model needs (measured, else from its checkpoint, else from the table),
//! whether it fits on a device now, what eviction could do about it, and the largest batch that fits.
//! Both answers come from the same two functions, [`Requirements::need`] and [`verdict::fit`]
//! (through [`verdict::verdict`]), over the same view of free memory, leases and loaded models.
//!
//! Requirements are looked up on the caller's side (a checkpoint header is read on a blocking thread,
//! off the actor and off the runtime) and remembered briefly ([`crate::resources::memo`]); a verdict
//! reads the state the actor published last, so it never queues behind other commands.

use std::{sync::Arc, time::Instant};

use super::{Handle, ManagerSettings};
use crate::{
    error::Error,
    monitor::snapshot::Snapshot,
    resources::{
        cache::CachedModel,
        device::{Device, RequestedDevice},
        duration::{check_duration, MaxDuration},
        memo::Recall,
        model_id,
        requirements::{DType, Requirements, SizingCache},
        verdict::{self, BatchAdvice, FitInput, Room, Verdict},
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
    pub device: RequestedDevice,
    /// Weight dtype.
    pub dtype: DType,
    /// Seconds of audio prompt a request encodes first (0 for none): its encode counts in the need.
    pub audio_prompt_s: f64,
    /// Host bytes a request's audio needs while it is brought to the model's rate and channels (0
    /// for none): see [`crate::resources::requirements::Need::conversion_bytes`].
    pub conversion_bytes: u64,
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

/// What `GetOptimalBatchSize` asks: a fit question (its batch is searched), and the memory to plan
/// for.
#[derive(Debug, Clone)]
pub struct BatchQuestion {
    /// The model, duration, device and dtype (its batch is ignored: the search tries each).
    pub fit: FitQuestion,
    /// Memory to plan for on the device the question resolves to; 0 = what is free there now.
    pub memory_bytes: u64,
    /// The largest batch worth advising.
    pub max_batch: u32,
}

/// The largest batch that fits, with the verdict it was derived from.
#[derive(Debug, Clone)]
pub struct BatchAnswer {
    /// The verdict at the advised batch (at batch 1 when none fits): device, need, requirements,
    /// margin.
    pub fit: FitAnswer,
    /// The advice.
    pub advice: BatchAdvice,
}

impl Handle {
    /// The estimated requirements of a model for a dtype and duration: from its checkpoint, else from
    /// the table. Reads at most a checkpoint header, on a blocking thread.
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
        let (settings, sizings) = (self.settings.clone(), self.sizings.clone());
        self.on_disk("requirements lookup", move || lookup(&settings, &sizings, &question)).await?
    }

    /// Whether a model fits, with the numbers.
    pub async fn fit(&self, q: FitQuestion) -> Result<FitAnswer, Error> {
        let (requirements, batch) = self.sized(&q).await?;
        let view = self.view();
        let verdict = verdict::verdict(&view.input(&q, &requirements, batch))?;
        let fit = with_eviction(verdict, &q.model, &view.evictable, view.margin);
        Ok(FitAnswer {
            model: q.model,
            duration_s: q.duration_s,
            requirements,
            batch,
            fit,
            margin: view.margin,
        })
    }

    /// Whether `batch` rows of `duration_s` fit for `model` where it is loaded (the device and dtype
    /// its cache entry records; `dtype` on the CPU when it is not loaded): its weights are already in
    /// memory, so the working set is what has to fit, with the request's audio: `(audio prompt seconds,
    /// conversion bytes)`.
    pub async fn fit_loaded(
        &self,
        model: &str,
        batch: u32,
        (duration_s, (audio_prompt_s, conversion_bytes)): (f64, (f64, u64)),
        dtype: DType,
    ) -> Result<FitAnswer, Error> {
        let entry = self.state.borrow().cache.get(model).map(|e| (e.device, e.dtype));
        let (device, dtype) = entry.unwrap_or((Device::Cpu, dtype));
        let device = device.into();
        let model = model.into();
        self.fit(FitQuestion { model, batch, duration_s, device, dtype, audio_prompt_s, conversion_bytes })
            .await
    }

    /// What loading each cached f32 model in f16 instead would save, from the same requirements a
    /// verdict uses: the f32 weights less the f16 ones, which is half the decoder (T5 and EnCodec stay
    /// f32). Models whose requirements cannot be worked out are left out.
    pub async fn half_precision_savings(&self, cached: &[CachedModel]) -> Vec<(String, u64)> {
        let mut savings = Vec::new();
        for m in cached.iter().filter(|m| m.dtype == DType::F32) {
            let ask = |dtype| FitQuestion {
                model: m.model.clone(),
                batch: 1,
                duration_s: super::LISTING_DURATION_S,
                device: m.device.into(),
                dtype,
                audio_prompt_s: 0.0,
                conversion_bytes: 0,
            };
            let (Ok(f32), Ok(f16)) =
                (self.requirements(&ask(DType::F32)).await, self.requirements(&ask(DType::F16)).await)
            else {
                continue;
            };
            savings.push((m.model.clone(), f32.weights_bytes().saturating_sub(f16.weights_bytes())));
        }
        savings
    }

    /// The largest batch that fits, searched with the verdict itself (so the advice validates): in
    /// what is free now on the device the question resolves to, leases and loaded models counted, or,
    /// for `memory_bytes` > 0, on that device planned as having that much free.
    pub async fn batch_advice(&self, q: BatchQuestion) -> Result<BatchAnswer, Error> {
        let (requirements, _) = self.sized(&q.fit).await?;
        let view = self.view();
        let input = view.input(&q.fit, &requirements, 1);
        let (advice, verdict) = verdict::optimal_batch(&input, q.memory_bytes, q.max_batch)?;
        let fit = with_eviction(verdict, &q.fit.model, &view.evictable, view.margin);
        let (model, duration_s, margin, batch) =
            (q.fit.model, q.fit.duration_s, view.margin, advice.batch.max(1));
        Ok(BatchAnswer { fit: FitAnswer { model, duration_s, requirements, batch, fit, margin }, advice })
    }

    /// The question's requirements (measured weights in place of the estimate once loaded), checked
    /// against the server's longest duration, with the batch it asks about (0 → the default). A
    /// duration past the model's window is sized as one window: generation decodes one at a time.
    async fn sized(&self, q: &FitQuestion) -> Result<(Requirements, u32), Error> {
        check_duration(q.duration_s, MaxDuration::Server(self.settings.max_duration_s))?;
        let mut requirements = self.requirements(q).await?;
        if q.duration_s > requirements.max_duration_s {
            let window = FitQuestion { duration_s: requirements.max_duration_s, ..q.clone() };
            requirements = self.requirements(&window).await?;
        }
        let state = self.state.borrow().clone();
        let requirements = apply_measurement(state.cache.get(&q.model), requirements);
        let batch = if q.batch == 0 { requirements.default_batch_size } else { q.batch };
        Ok((requirements, batch))
    }

    /// What a verdict is decided from now: the state the actor published last and the latest sample.
    fn view(&self) -> View {
        let state = self.state.borrow().clone();
        let snapshot = self.monitor.latest();
        let reserved_gpu = snapshot
            .gpu
            .devices
            .iter()
            .map(|d| (d.index, state.reserved_gpu.get(&d.index).copied().unwrap_or(0)))
            .collect();
        View {
            reserved_host: state.reserved_host,
            reserved_gpu,
            cached: state.cache.entries().cloned().collect(),
            evictable: state.cache.evictable(Instant::now(), false).into_iter().cloned().collect(),
            margin: self.settings.safety_margin,
            placeable: self.settings.placeable_gpus.clone(),
            snapshot,
        }
    }
}

/// One consistent view of free memory, leases and the cache.
struct View {
    snapshot: Arc<Snapshot>,
    reserved_host: u64,
    reserved_gpu: Vec<(u32, u64)>,
    cached: Vec<CachedModel>,
    evictable: Vec<CachedModel>,
    margin: f64,
    placeable: Vec<u32>,
}

impl View {
    fn input<'a>(&'a self, q: &'a FitQuestion, requirements: &'a Requirements, batch: u32) -> FitInput<'a> {
        let room = Room {
            snapshot: &self.snapshot,
            reserved_host: self.reserved_host,
            reserved_gpu: &self.reserved_gpu,
            margin: self.margin,
            placeable: &self.placeable,
        };
        let (audio_prompt_s, conversion_bytes) = (q.audio_prompt_s, q.conversion_bytes);
        FitInput {
            model: &q.model,
            requirements,
            batch,
            device: q.device,
            room,
            cached: &self.cached,
            audio_prompt_s,
            conversion_bytes,
        }
    }
}

/// The requirements of `q` from disk or the table (a blocking call). Only an id with no folder at all
/// falls back to the table: a folder or hub snapshot that is incomplete, or an unknown revision, is
/// an error naming what is missing, since that model could not be loaded.
fn lookup(settings: &ManagerSettings, sizings: &SizingCache, q: &FitQuestion) -> Result<Requirements, Error> {
    model_id::validate(&q.model)?;
    match model_id::resolve(&q.model, &settings.roots) {
        Ok(found) => Ok(sizings.requirements(&found.dir, q.dtype, q.duration_s)?),
        Err(e @ model_id::ModelIdError::NotFound { .. }) => match settings.registry.table(&q.model) {
            Some(entry) => Ok(entry.requirements(q.dtype, q.duration_s)),
            None => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// Adds what evicting the idle models on the verdict's memory would do; `model` itself is no
/// candidate (evicting it would only mean loading it again).
fn with_eviction(verdict: Verdict, model: &str, evictable: &[CachedModel], margin: f64) -> FitVerdict {
    let same_memory = |e: &&CachedModel| {
        e.model != model
            && match verdict.device {
                Device::Cuda(i) => e.device == Device::Cuda(i),
                _ => !matches!(e.device, Device::Cuda(_)),
            }
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
            Some(m) if m >= requirements.weights_bytes() / 2 => requirements.measured(m),
            _ => requirements,
        },
        _ => requirements,
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::resources::requirements::{Registry, Source};

    fn entry(measured: Option<u64>, dtype: DType) -> CachedModel {
        let cached = crate::resources::fixtures::cached("m", 1000, Instant::now());
        CachedModel { dtype, measured_bytes: measured, ..cached }
    }

    #[test]
    fn a_measurement_replaces_the_estimate_unless_implausible() {
        let table = Registry::default();
        let r = table.table("facebook/musicgen-small").unwrap().requirements(DType::F32, 10.0);
        let w = r.weights_bytes();
        let measured = apply_measurement(Some(&entry(Some(w + 7), DType::F32)), r.clone());
        assert_eq!((measured.source, measured.weights_bytes()), (Source::Measured, w + 7));
        assert_eq!(apply_measurement(Some(&entry(Some(w / 4), DType::F32)), r.clone()).source, r.source);
        assert_eq!(apply_measurement(Some(&entry(Some(w), DType::F16)), r.clone()).source, r.source);
        assert_eq!(apply_measurement(None, r.clone()).source, r.source);
    }
}
