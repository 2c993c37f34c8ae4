//! Generation guarded by the resource manager: validate → lease → load → record the measured size
//! → generate → release, with every hold (lease, model use, queue slot) an RAII guard so no path can
//! leak one.

mod progress;
mod request;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::{CancellationToken, DropGuard};

pub use self::progress::{Chunk, Progress, Summary};
use self::request::{check_melody_target, check_melody_use, melody_chroma, prompt_audio, resolve_request};
use super::{Event, GenerateParams, ModelFacts, Pool};
use crate::{
    error::Error,
    inference::oom::{FreeSource, OutOfMemory},
    monitor::snapshot::Snapshot,
    musicgen::GenerationRequest,
    resources::{
        cache::CachedModel,
        duration::{check_duration, MaxDuration},
        journal::QueuedGeneration,
        ledger::{LeaseKind, LeaseRequest},
        manager::{self, FitQuestion, LeaseGuard, ModelUse},
        model_id,
        requirements::{DType as ReqDType, Need},
        validate::Device,
    },
};

/// Generation settings.
#[derive(Debug, Clone)]
pub struct GenerationSettings {
    /// Longest request in seconds (default 30).
    pub max_duration_s: f64,
    /// How long a forced unload waits for in-flight requests (default 10 s).
    pub unload_wait: Duration,
    /// Decoder precision of models loaded on demand (default f32).
    pub dtype: ReqDType,
}

/// A generation that was admitted: what the stream's header says, then its [`Progress`] through
/// [`Admitted::next`]. Dropping it releases the lease and the model and cancels the work.
pub struct Admitted {
    /// Request id.
    pub request_id: String,
    /// Model id.
    pub model: String,
    /// The model's facts.
    pub facts: ModelFacts,
    /// Requests ahead of this one when queued.
    pub queue_position: usize,
    /// The request as run (defaults filled in).
    pub request: GenerationRequest,
    /// The device the model lives on and the generation runs on (`cpu`, `cuda:N`).
    pub device: String,
    /// What was done to the audio prompt to fit the model.
    pub input_conversions: Vec<String>,
    /// Frames of the audio prompt the generation continues.
    pub prompt_frames: usize,
    events: mpsc::Receiver<Event>,
    tracking: progress::Tracking,
    journal: progress::JournalEntry,
    generation: Generation,
    _holds: Holds,
}

/// Everything a running generation holds.
struct Holds {
    _lease: LeaseGuard,
    _model: ModelUse,
    _cancel: DropGuard,
}

/// GenerationService's domain side.
#[derive(Clone)]
pub struct Generation {
    pool: Pool,
    manager: manager::Handle,
    settings: Arc<GenerationSettings>,
    roots: Arc<Vec<PathBuf>>,
    loading: Arc<Mutex<()>>,
    emergency: mpsc::Sender<(Device, String)>,
}

impl Generation {
    /// Over a pool and the resource manager.
    pub fn new(
        pool: Pool,
        manager: manager::Handle,
        settings: GenerationSettings,
        emergency: mpsc::Sender<(Device, String)>,
    ) -> Self {
        let roots = Arc::new(manager.settings().roots.clone());
        Self { pool, manager, settings: Arc::new(settings), roots, loading: Arc::default(), emergency }
    }

    /// A request that ran out of memory: completes its free figure from the monitor when libtorch's
    /// message did not say, asks for an emergency cleanup of its device now, and returns its error.
    pub fn out_of_memory(&self, mut oom: OutOfMemory) -> Error {
        if oom.free.is_none() {
            oom.free =
                free_on(&self.manager.monitor().latest(), oom.device).map(|b| (b, FreeSource::Monitor));
        }
        // A full channel means a cleanup is already pending; one is enough.
        let _ = self.emergency.try_send((oom.device, oom.to_string()));
        Error::OutOfMemory(Box::new(oom))
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The generation limits.
    pub fn settings(&self) -> &GenerationSettings {
        &self.settings
    }

    /// `LoadModel`: loads `model` on `device` (`auto` places it as `ValidateModel` would) unless it is
    /// loaded, then pins or unpins it.
    pub async fn load_model(
        &self,
        model: &str,
        dtype: ReqDType,
        device: Device,
        pin: bool,
    ) -> Result<ModelFacts, Error> {
        let facts = self.ensure_loaded(model, dtype, device, pin).await?;
        self.manager.pin(model, pin).await?;
        Ok(facts)
    }

    /// Loads `model` on `device` unless it is loaded: placed and validated by the fit verdict, leased
    /// on the device it goes to while loading, recorded in the cache with its measured size. A model
    /// loaded on another device than the one asked for is FAILED_PRECONDITION: a server holds one copy
    /// of a model, and moving it is an unload and a load.
    pub async fn ensure_loaded(
        &self,
        model: &str,
        dtype: ReqDType,
        device: Device,
        pin: bool,
    ) -> Result<ModelFacts, Error> {
        if let Some(facts) = self.loaded(model, device)? {
            return Ok(facts);
        }
        // One load at a time: two requests for an absent model must not both load it.
        let _loading = self.loading.lock().await;
        if let Some(facts) = self.loaded(model, device)? {
            return Ok(facts);
        }
        let question = FitQuestion {
            model: model.into(),
            batch: 1,
            duration_s: 1.0,
            device,
            dtype,
            audio_prompt_s: 0.0,
        };
        let answer = self.manager.fit(question).await?;
        let verdict = answer.verdict();
        if !verdict.fits {
            return Err(Error::ResourceExhausted(verdict.summary(model)));
        }
        let found = model_id::resolve(model, &self.roots)?;
        // The weights, the runtime and a first CUDA context; the working set is a generation's.
        let load = Need { batch: 0, working_set_bytes: 0, ..verdict.need.clone() };
        let lease =
            self.manager.lease(lease_for(&format!("load:{model}"), LeaseKind::ModelLoad, &load)).await?;
        let facts = match self.pool.load(model, found.dir, dtype, verdict.device).await {
            Err(Error::OutOfMemory(oom)) => return Err(self.out_of_memory(*oom)),
            other => other?,
        };
        let weights = answer.requirements.weights_bytes();
        let entry = CachedModel {
            model: model.into(),
            device: facts.device,
            dtype,
            estimated_bytes: weights,
            measured_bytes: Some(facts.measured_bytes),
            loaded_at: std::time::SystemTime::now(),
            last_used: std::time::Instant::now(),
            in_flight: 0,
            pinned: pin,
        };
        self.manager.register(entry).await?;
        self.release_when_measured(lease);
        tracing::info!(model, device = %facts.device.name(), measured = facts.measured_bytes, estimated = weights, "model loaded");
        Ok(facts)
    }

    /// The facts of `model` when it is loaded where `device` asks (`auto`: anywhere).
    fn loaded(&self, model: &str, device: Device) -> Result<Option<ModelFacts>, Error> {
        match self.pool.facts(model) {
            Some(facts) if device == Device::Auto || device == facts.device => Ok(Some(facts)),
            Some(facts) => Err(Error::FailedPrecondition(format!(
                "{model} is loaded on {}, and a server holds one copy of a model: unload it to load it on {}",
                facts.device.name(),
                device.name()
            ))),
            None => Ok(None),
        }
    }

    /// Keeps a load's lease until a sample taken after the load shows its weights in the device's
    /// measured usage (at most five sampling intervals), so no verdict in between counts them nowhere.
    fn release_when_measured(&self, lease: LeaseGuard) {
        let monitor = self.manager.monitor().clone();
        let (loaded, within) = (std::time::SystemTime::now(), monitor.settings().interval * 5);
        tokio::spawn(async move {
            if !monitor.sampled_after(loaded, within).await {
                tracing::warn!(lease = %lease.lease().id.as_str(), "no sample after the load; releasing its lease anyway");
            }
            drop(lease);
        });
    }

    /// Unloads `model`; in use → FAILED_PRECONDITION, or with `force` waits up to the unload deadline.
    pub async fn unload(&self, model: &str, force: bool) -> Result<CachedModel, Error> {
        let deadline = tokio::time::Instant::now() + self.settings.unload_wait;
        let entry = loop {
            match self.manager.unregister(model).await {
                Err(Error::FailedPrecondition(_)) if force && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => break other?,
            }
        };
        self.pool.unload(model).await?;
        Ok(entry)
    }

    /// Validates against the model, takes the holds and queues the generation.
    pub async fn start(&self, p: GenerateParams, cancel: CancellationToken) -> Result<Admitted, Error> {
        let started = Instant::now();
        check_duration(p.duration_s, MaxDuration::Server(self.settings.max_duration_s))?;
        check_melody_target(&p, &model_id::resolve(&p.model, &self.roots)?.dir).await?;
        let facts = self.ensure_loaded(&p.model, self.settings.dtype, Device::Auto, false).await?;
        check_melody_use(&p, &facts)?;
        let mut request = resolve_request(&p, &facts)?;
        let audio = prompt_audio(p.audio_prompt.clone(), &facts)?;
        request.include_prompt = p.include_prompt;
        let mut input_conversions = Vec::new();
        if let Some((chroma, notes)) = melody_chroma(p.melody.clone(), &facts).await? {
            request.melody = chroma;
            input_conversions = notes;
        }
        let model = self.manager.use_model(&p.model).await?;
        // One window is decoded at a time, whatever the duration: its working set is what is held.
        let window_s = p.duration_s.min(facts.window_s);
        // Encoding the clip needs the encoder and its activations for a while: the need counts them.
        let prompt_s = audio.as_ref().map_or(0.0, |a| {
            a.samples.len() as f64 / (f64::from(facts.sample_rate) * f64::from(facts.channels))
        });
        let answer = self.manager.fit_loaded(&p.model, 1, (window_s, prompt_s), self.settings.dtype).await?;
        if !answer.verdict().fits {
            return Err(Error::ResourceExhausted(answer.verdict().summary(&p.model)));
        }
        // Weights, runtime and context are resident: what is left is the working set, on the device
        // the model lives on.
        let owner = format!("generate:{}", p.model);
        let lease_request = lease_for(&owner, LeaseKind::Generation, &answer.verdict().need);
        let lease = self.manager.lease(lease_request).await?;
        let prompt_frames = audio.as_ref().map_or(0, |a| a.frames);
        let job = (request.clone(), audio.as_ref().map(|a| a.samples.clone()));
        let (queue_position, events) = self.pool.submit(&p.model, job, cancel.clone())?;
        let request_id = uuid::Uuid::new_v4().to_string();
        let queued = QueuedGeneration {
            request_id: request_id.clone(),
            model: p.model.clone(),
            device: facts.device.name(),
            duration_s: p.duration_s,
            admitted: started,
            started: None,
        };
        let journal = progress::JournalEntry::admit(self.manager.journal().clone(), queued);
        Ok(Admitted {
            input_conversions: audio
                .map(|a| a.notes)
                .unwrap_or_default()
                .into_iter()
                .chain(input_conversions)
                .collect(),
            prompt_frames,
            request_id,
            model: p.model.clone(),
            queue_position,
            request,
            device: facts.device.name(),
            facts,
            events,
            tracking: progress::Tracking::new(started),
            journal,
            generation: self.clone(),
            _holds: Holds { _lease: lease, _model: model, _cancel: cancel.drop_guard() },
        })
    }
}

/// Free bytes of `device` in `snapshot`: the effective host memory for the CPU, NVML's figure for a GPU.
fn free_on(snapshot: &Snapshot, device: Device) -> Option<u64> {
    match device {
        Device::Cuda(i) => {
            snapshot.gpu.devices.iter().find(|d| d.index == i).and_then(|d| d.memory_free_bytes)
        }
        _ => Some(snapshot.effective.available_bytes),
    }
}

/// What `need` still has to find, reserved where it lives: its host bytes as host memory, its GPU
/// bytes on its GPU.
fn lease_for(owner: &str, kind: LeaseKind, need: &Need) -> LeaseRequest {
    let gpu_index = match need.device {
        Device::Cuda(i) => Some(i),
        _ => None,
    };
    LeaseRequest {
        owner: owner.into(),
        kind,
        cpu_bytes: need.host_bytes(),
        gpu_bytes: need.gpu_bytes(),
        gpu_index,
        ttl: None,
    }
}

#[tonic::async_trait]
impl crate::resources::cleanup::Evictor for Generation {
    async fn evict(&self, model: &str) -> Result<CachedModel, Error> {
        self.unload(model, false).await
    }

    async fn empty_cuda_cache(&self, dry_run: bool) -> Result<u64, String> {
        use crate::cuda_alloc;
        let reserved = || -> Result<Vec<cuda_alloc::AllocatorStats>, String> {
            let stats: Vec<_> = (0..cuda_alloc::device_count()).map(cuda_alloc::stats).collect();
            if let Some(Err(why)) = stats.iter().find(|s| s.is_err()) {
                return Err(why.to_string());
            }
            Ok(stats.into_iter().flatten().collect())
        };
        let before = reserved()?;
        if before.is_empty() {
            return Err("libtorch sees no CUDA device".into());
        }
        if dry_run {
            return Ok(before.iter().map(cuda_alloc::AllocatorStats::cached_bytes).sum());
        }
        cuda_alloc::empty_cache().map_err(|e| e.to_string())?;
        let sum = |s: &[cuda_alloc::AllocatorStats]| s.iter().map(|s| s.reserved_bytes).sum::<u64>();
        Ok(sum(&before).saturating_sub(sum(&reserved()?)))
    }
}
