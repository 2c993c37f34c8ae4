//! Generation guarded by the resource manager, over any [`Engine`]: validate → load (once, see
//! [`lifecycle`]) → check the fit → lease → mark the model in use → submit → stream, with every
//! hold (lease, model use, queue slot) an RAII guard so no path can leak one.
//!
//! This is policy only: it builds and is tested without libtorch (`tests.rs` scripts an engine).
//! The resource manager's cache is the one record of what is loaded; it holds the engine's handle.

mod error;
mod lifecycle;
mod params;
mod progress;
mod resolve;
mod share;
mod stall;
#[cfg(test)]
#[path = "generation/tests/orchestrator.rs"]
mod tests;
mod valid;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

pub use self::error::GenerationError;
pub use self::params::GenerateParams;
pub use self::progress::{Chunk, Progress, Summary};
use self::resolve::{Conversions, RawAudio};
pub use self::valid::{ValidGenerate, ValidationError};
use crate::resources::model_id::ModelRoots;
use crate::{
    engine::{
        CheckpointFacts, Engine, EngineError, EventReceiver, GenerationRequest, ModelFacts, ModelHandle,
        Reservation, Submission,
    },
    error::Error,
    inference::oom::{FreeSource, OutOfMemory},
    monitor::snapshot::Snapshot,
    resources::{
        cache::CachedModel,
        device::{Device, RequestedDevice},
        duration::{check_duration, MaxDuration},
        journal::QueuedGeneration,
        ledger::{LeaseKind, LeaseRequest},
        manager::{self, LeaseGuard, ModelUse},
        model_id,
        requirements::{DType as ReqDType, Need},
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
    /// How long a client may take none of its audio before its generation is stopped
    /// (`--stall-timeout-s`, default 10 s).
    pub stall_timeout: Duration,
    /// Generations one token name may have queued or running (`--max-queued-per-token`, resolved:
    /// half the queue capacity when unset).
    pub max_queued_per_token: usize,
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
    /// The device the model lives on and the generation runs on.
    pub device: Device,
    /// What was done to the audio prompt to fit the model.
    pub input_conversions: Vec<String>,
    /// Frames of the audio prompt the generation continues.
    pub prompt_frames: usize,
    events: EventReceiver,
    tracking: progress::Tracking,
    journal: Arc<Mutex<progress::JournalEntry>>,
    generation: Generation,
    stall: Arc<stall::StallWatch>,
    /// The lease and the model use: given back when this is dropped, or by the stall watchdog.
    holds: Arc<Mutex<Option<Holds>>>,
    /// Cancels the generation in the engine when this is dropped.
    _cancel: DropGuard,
    /// Ends the stall watchdog when this is dropped.
    _watchdog: DropGuard,
}

impl Drop for Admitted {
    /// Gives the lease and the model use back now, not when the watchdog task notices.
    fn drop(&mut self) {
        drop(self.holds.lock().expect("holds lock").take());
    }
}

/// Who asks for a generation.
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// Its address, for the log when it stalls.
    pub peer: Option<SocketAddr>,
    /// Its token's name, whose share of the queue the generation counts against.
    pub token: Option<Arc<str>>,
}

/// The resources a running generation holds.
struct Holds {
    _lease: LeaseGuard,
    _model: ModelUse,
    _share: Option<share::ShareGuard>,
}

/// GenerationService's domain side.
#[derive(Clone)]
pub struct Generation {
    engine: Arc<dyn Engine>,
    manager: manager::Handle,
    settings: Arc<GenerationSettings>,
    roots: Arc<ModelRoots>,
    loads: Arc<lifecycle::Loads>,
    shares: Arc<share::Shares>,
    conversions: Conversions,
    emergency: mpsc::Sender<(Device, String)>,
}

impl Generation {
    /// Over an engine and the resource manager.
    pub fn new(
        engine: Arc<dyn Engine>,
        manager: manager::Handle,
        settings: GenerationSettings,
        emergency: mpsc::Sender<(Device, String)>,
    ) -> Self {
        let roots = Arc::new(manager.settings().roots.clone());
        let shares = share::Shares::new(settings.max_queued_per_token);
        let settings = Arc::new(settings);
        let conversions = Conversions::default();
        Self { engine, manager, settings, roots, loads: Arc::default(), shares, conversions, emergency }
    }

    /// A request that ran out of memory: completes its free figure from the monitor when libtorch's
    /// message did not say, asks for an emergency cleanup of its device now, and returns its error.
    pub fn out_of_memory(&self, mut oom: OutOfMemory) -> GenerationError {
        if oom.free.is_none() {
            oom.free =
                free_on(&self.manager.monitor().latest(), oom.device).map(|b| (b, FreeSource::Monitor));
        }
        // A full channel means a cleanup is already pending; one is enough.
        let _ = self.emergency.try_send((oom.device, oom.to_string()));
        EngineError::OutOfMemory(Box::new(oom)).into()
    }

    /// This orchestrator with `n` audio conversions at once (tests hold them all with 0).
    #[cfg(test)]
    fn with_conversion_limit(self, n: usize) -> Self {
        Self { conversions: Conversions::with_limit(n), ..self }
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// The generation limits.
    pub fn settings(&self) -> &GenerationSettings {
        &self.settings
    }

    /// UNIMPLEMENTED, naming why, when the engine runs nothing.
    fn accepts(&self) -> Result<(), Error> {
        self.engine
            .refusal()
            .map_or(Ok(()), |why| Err(GenerationError::from(EngineError::Unimplemented(why)).into()))
    }

    /// What `model`'s checkpoint says, read from its configs (off the async threads) before anything
    /// is loaded. A checkpoint Maestro does not serve, or whose configs cannot be read, is refused as
    /// its load would be.
    async fn checkpoint_facts(&self, model: &str) -> Result<CheckpointFacts, Error> {
        let dir = model_id::resolve(model, &self.roots)?.dir;
        let read = tokio::task::spawn_blocking(move || CheckpointFacts::read(&dir)).await;
        let read =
            read.map_err(|e| GenerationError::Internal(format!("reading {model}'s config stopped: {e}")))?;
        Ok(read.map_err(|e| GenerationError::Checkpoint { model: model.into(), source: Arc::new(e) })?)
    }

    /// The handle of a model this request holds a use of.
    fn handle_in_use(&self, model: &str) -> Result<ModelHandle, Error> {
        let entry = self.manager.cached_model(model).and_then(|e| e.loaded);
        let missing = || GenerationError::Internal(format!("{model} is in use but not recorded")).into();
        entry.map(|l| l.handle).ok_or_else(missing)
    }

    /// Validates against the model's checkpoint (before anything is loaded), loads it, brings the
    /// request's audio to it, takes the holds and queues the generation.
    /// `client` says who asks: its address for the log when it stalls, its token's name for its
    /// share of the queue, taken before anything loads.
    pub async fn start(
        &self,
        p: GenerateParams,
        cancel: CancellationToken,
        client: Client,
    ) -> Result<Admitted, Error> {
        self.accepts()?;
        let share = client.token.as_ref().map(|name| self.shares.take(name)).transpose()?;
        let started = Instant::now();
        check_duration(p.duration_s, MaxDuration::Server(self.settings.max_duration_s))?;
        let checkpoint = self.checkpoint_facts(&p.model).await?;
        let mut valid = ValidGenerate::check(p, &checkpoint)?;
        let facts =
            self.ensure_loaded(&valid.model, self.settings.dtype, RequestedDevice::Auto, false).await?.facts;
        let audio = RawAudio { prompt: valid.audio_prompt.take(), melody: valid.melody.take() };
        let (holds, reservation) = self.admit(&valid, &audio, &checkpoint, share).await?;
        // Only now, holding the lease and the slot, is the audio worth the work of converting.
        let prepared = audio.prepare(&checkpoint, &self.conversions).await?;
        let input_conversions = prepared.notes;
        if let Some(chroma) = prepared.melody {
            valid.request.melody = chroma;
        }
        let prompt_frames = prepared.prompt.as_ref().map_or(0, |a| a.frames);
        let submission = Submission {
            request: valid.request.clone(),
            audio_prompt: prepared.prompt.map(|a| a.samples),
            cancel: cancel.clone(),
            fault: None,
        };
        let submitted = self.engine.submit(reservation, submission)?;
        let id = valid.model;
        let queued = QueuedGeneration {
            request_id: uuid::Uuid::new_v4().to_string(),
            model: id.clone(),
            device: facts.device,
            duration_s: valid.duration_s,
            admitted: started,
            started: None,
        };
        let request_id = queued.request_id.clone();
        let journal =
            Arc::new(Mutex::new(progress::JournalEntry::admit(self.manager.journal().clone(), queued)));
        let holds = Arc::new(Mutex::new(Some(holds)));
        let watch = stall::StallWatch::new(self.settings.stall_timeout, submitted.events.sent());
        let done = CancellationToken::new();
        let stop = stall::Stoppable {
            cancel: cancel.clone(),
            holds: holds.clone(),
            journal: journal.clone(),
            peer: client.peer,
            request_id: request_id.clone(),
        };
        tokio::spawn(stall::watchdog(watch.clone(), stop, done.clone()));
        Ok(Admitted {
            request_id,
            journal,
            input_conversions,
            prompt_frames,
            model: id,
            queue_position: submitted.queue_position,
            request: valid.request,
            device: facts.device,
            facts,
            events: submitted.events,
            tracking: progress::Tracking::new(started),
            generation: self.clone(),
            stall: watch,
            holds,
            _cancel: cancel.drop_guard(),
            _watchdog: done.drop_guard(),
        })
    }

    /// Marks the model in use, checks that the generation's working set (and its audio's
    /// conversion) fits where the model lives, leases it and takes a queue slot: each hold a guard
    /// (the token's `share` of the queue among them), so a refusal at any step gives back the ones
    /// before it.
    async fn admit(
        &self,
        valid: &ValidGenerate,
        audio: &RawAudio,
        checkpoint: &CheckpointFacts,
        share: Option<share::ShareGuard>,
    ) -> Result<(Holds, Reservation), Error> {
        let id = &valid.model;
        let model = self.manager.use_model(id).await?;
        // The copy in use now, which no unload can take while the use lasts.
        let handle = self.handle_in_use(id)?;
        // One window is decoded at a time, whatever the duration: its working set is what is held.
        let window_s = valid.duration_s.min(checkpoint.window_s);
        // Encoding the clip needs the encoder and its activations for a while: the need counts them,
        // and the conversion before it.
        let audio_cost = (audio.prompt_seconds(), audio.conversion_bytes(checkpoint));
        let answer = self.manager.fit_loaded(id, 1, (window_s, audio_cost), self.settings.dtype).await?;
        if !answer.verdict().fits {
            return Err(GenerationError::DoesNotFit(answer.verdict().summary(id)).into());
        }
        // Weights, runtime and context are resident: what is left is the working set, on the device
        // the model lives on.
        let lease_request =
            lease_for(&format!("generate:{id}"), LeaseKind::Generation, &answer.verdict().need);
        let lease = self.manager.lease(lease_request).await?;
        let reservation = self.engine.reserve(&handle)?;
        Ok((Holds { _lease: lease, _model: model, _share: share }, reservation))
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
        token: None,
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
        self.engine.empty_cache(dry_run).await
    }
}
