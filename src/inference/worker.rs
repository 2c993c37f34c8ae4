//! One inference worker: a dedicated OS thread that owns its loaded models and runs libtorch.
//!
//! The thread takes [`Job`]s from its own bounded queue until the queue closes; once the pool's
//! shutdown sets [`WorkerLoad::stopping`] it drops what is still queued instead of running it. A
//! panic inside a job is caught: that job's caller gets INTERNAL, the models stay, and the thread
//! serves the next job.

use std::{
    collections::{HashMap, VecDeque},
    ops::ControlFlow,
    panic::{catch_unwind, AssertUnwindSafe},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc as std_mpsc, Arc,
    },
    time::Instant,
};

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::{
    error::Error,
    musicgen::{AudioChunkOut, DType, GenerationRequest, GenerationStats, MusicGen, MusicgenError},
};

/// What a loaded model is like, for validation and stream headers.
#[derive(Debug, Clone)]
pub struct ModelFacts {
    /// Output sample rate.
    pub sample_rate: u32,
    /// Output channels.
    pub channels: u32,
    /// Frames per second.
    pub frame_rate: f64,
    /// Codes per codebook (`top_k` limit).
    pub codebook_size: u32,
    /// Longest generation in seconds.
    pub max_duration_s: f64,
    /// Device name (`cpu`, `cuda:0`).
    pub device: String,
    /// Host RSS growth caused by the load, in bytes.
    pub measured_bytes: u64,
    /// The checkpoint's generation defaults.
    pub defaults: crate::musicgen::GenerationConfig,
}

/// Progress of a generation, sent to the request's stream.
#[derive(Debug)]
pub enum Event {
    /// A decoded chunk of f32 samples.
    Chunk(AudioChunkOut),
    /// Finished (or stopped by cancellation), with the size of the batch it ran in.
    Done(GenerationStats, usize),
    /// Failed.
    Failed(Error),
}

/// Work for a worker.
pub enum Job {
    /// Load a model directory.
    Load {
        /// Model id.
        model: String,
        /// Its directory.
        dir: PathBuf,
        /// Decoder precision.
        dtype: DType,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<ModelFacts, Error>>,
    },
    /// Drop a model's tensors.
    Unload {
        /// Model id.
        model: String,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<(), Error>>,
    },
    /// Generate one request, streaming chunks.
    Generate(GenerateJob),
}

/// One generation request for a worker.
pub struct GenerateJob {
    /// Model id (loaded on this worker).
    pub model: String,
    /// The request.
    pub request: GenerationRequest,
    /// Chunks and the end go here; a closed channel stops the generation.
    pub events: mpsc::Sender<Event>,
    /// Cancelled on client disconnect, deadline or shutdown.
    pub cancel: CancellationToken,
    /// The queue slot, given back when the job ends.
    pub permit: OwnedSemaphorePermit,
}

/// The running worker's shared counters and flags.
#[derive(Debug, Default)]
pub struct WorkerLoad {
    /// Jobs queued or running.
    pub pending: AtomicUsize,
    /// Set at shutdown: the jobs still queued are dropped unrun.
    pub stopping: AtomicBool,
}

/// Prompts that inject a fault when fault injection is on (chaos tests; off by default).
pub const FAULT_PANIC: &str = "maestro:fault:panic";
/// See [`FAULT_PANIC`]: an out-of-memory error from libtorch.
pub const FAULT_OOM: &str = "maestro:fault:oom";
/// With fault injection, loading a model whose id ends with this fails with libtorch's out-of-memory.
pub const FAULT_OOM_MODEL: &str = "fault-oom-on-load";

/// Starts a worker thread on `device`; it ends when `jobs` closes, and the pool joins it. Generations for the same model
/// that are queued when one starts run with it as one batch (dynamic batching, up to `max_batch`).
/// With `faults`, the prompts [`FAULT_PANIC`] and [`FAULT_OOM`] inject a panic or an out-of-memory
/// error into the generation.
pub fn spawn(
    index: usize,
    device: tch::Device,
    jobs: std_mpsc::Receiver<Job>,
    load: Arc<WorkerLoad>,
    max_batch: usize,
    faults: bool,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(format!("maestro-worker-{index}")).spawn(move || {
        let mut worker = Worker { device, models: HashMap::new(), faults };
        let mut pending: VecDeque<Job> = VecDeque::new();
        while let Some(job) = pending.pop_front().or_else(|| jobs.recv().ok()) {
            let done = match job {
                // Shutting down: a queued job is dropped unrun, so its caller hears the worker stopped
                // instead of waiting for work nobody will read.
                job if load.stopping.load(Ordering::Relaxed) => {
                    drop(job);
                    1
                }
                Job::Generate(first) => {
                    let batch = gather(first, &jobs, &mut pending, max_batch.max(1));
                    let n = batch.len();
                    worker.generate_batch(batch);
                    n
                }
                other => {
                    worker.run(other);
                    1
                }
            };
            load.pending.fetch_sub(done, Ordering::Relaxed);
        }
        tracing::debug!(index, "worker stopped");
    })
}

/// How long a starting generation waits for company: requests that arrive together (a burst of
/// clients) then share one batch instead of queueing one behind the other. Small against a decoding
/// step of a real model (tens of ms), and only paid when batching is on.
pub const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(10);

/// Takes the generations for `first`'s model that are queued or arrive within [`BATCH_WINDOW`],
/// keeping queue order: the first job of another kind ends the gathering and waits in `pending`.
fn gather(
    first: GenerateJob,
    jobs: &std_mpsc::Receiver<Job>,
    pending: &mut VecDeque<Job>,
    max_batch: usize,
) -> Vec<GenerateJob> {
    let deadline = Instant::now() + BATCH_WINDOW;
    let mut batch = vec![first];
    while batch.len() < max_batch {
        let wait = deadline.saturating_duration_since(Instant::now());
        match jobs.recv_timeout(wait) {
            Ok(Job::Generate(g)) if g.model == batch[0].model => batch.push(g),
            Ok(other) => {
                pending.push_back(other);
                break;
            }
            Err(_) => break,
        }
    }
    batch
}

struct Worker {
    device: tch::Device,
    models: HashMap<String, MusicGen>,
    faults: bool,
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl Worker {
    fn run(&mut self, job: Job) {
        match job {
            Job::Load { model, dir, dtype, reply } => {
                let result = catch_unwind(AssertUnwindSafe(|| self.load(&model, &dir, dtype)))
                    .unwrap_or_else(|p| {
                        Err(Error::Internal(format!("loading {model} panicked: {}", panic_message(p))))
                    });
                let _ = reply.send(result);
            }
            Job::Unload { model, reply } => {
                let found = self.models.remove(&model).is_some();
                let _ = reply.send(if found {
                    Ok(())
                } else {
                    Err(Error::NotFound(format!("model {model} is not loaded")))
                });
            }
            Job::Generate(job) => self.generate_batch(vec![job]),
        }
    }

    fn load(&mut self, model: &str, dir: &std::path::Path, dtype: DType) -> Result<ModelFacts, Error> {
        if self.faults && model.ends_with(FAULT_OOM_MODEL) {
            let injected = "CUDA out of memory. Tried to allocate 4.00 GiB (injected)";
            return Err(load_error(model, MusicgenError::Unsupported(injected.into())));
        }
        let before = crate::monitor::sampler::rss_bytes();
        let m = MusicGen::load(dir, self.device, dtype).map_err(|e| load_error(model, e))?;
        let measured = crate::monitor::sampler::rss_bytes().saturating_sub(before);
        let facts = ModelFacts {
            sample_rate: m.sample_rate(),
            channels: m.channels() as u32,
            frame_rate: m.frame_rate(),
            codebook_size: m.codebook_size() as u32,
            max_duration_s: m.max_duration_s(),
            device: device_name(self.device),
            measured_bytes: measured,
            defaults: m.generation_defaults().clone(),
        };
        self.models.insert(model.to_string(), m);
        Ok(facts)
    }

    /// Runs a batch; each request gets its own chunks and end event, and can stop alone.
    fn generate_batch(&self, batch: Vec<GenerateJob>) {
        let model = batch[0].model.clone();
        let outcome = catch_unwind(AssertUnwindSafe(|| self.generate(&model, &batch)));
        let n = batch.len();
        match outcome {
            Ok(Ok(stats)) => {
                for (job, stats) in batch.iter().zip(stats) {
                    let _ = job.events.blocking_send(Event::Done(stats, n));
                }
            }
            Ok(Err(e)) => {
                for job in &batch {
                    let _ = job.events.blocking_send(Event::Failed(e.clone()));
                }
            }
            Err(p) => {
                tracing::error!(model, panic = %panic_message(p), "generation panicked; worker continues");
                for job in &batch {
                    let e = Error::Internal(format!("generation with {model} failed inside the worker"));
                    let _ = job.events.blocking_send(Event::Failed(e));
                }
            }
        }
    }

    fn generate(&self, model: &str, batch: &[GenerateJob]) -> Result<Vec<GenerationStats>, Error> {
        let m =
            self.models.get(model).ok_or_else(|| Error::NotFound(format!("model {model} is not loaded")))?;
        if self.faults && batch.iter().any(|j| j.request.prompt == FAULT_PANIC) {
            panic!("injected panic inside the worker");
        }
        if self.faults && batch.iter().any(|j| j.request.prompt == FAULT_OOM) {
            let injected = "CUDA out of memory. Tried to allocate 2.00 GiB (injected)";
            return Err(generation_error(model, MusicgenError::Unsupported(injected.into())));
        }
        let started = Instant::now();
        let requests: Vec<GenerationRequest> = batch.iter().map(|j| j.request.clone()).collect();
        let stop = |i: usize| batch[i].cancel.is_cancelled() || batch[i].events.is_closed();
        let stats = m
            .generate_until(&requests, stop, |chunk| {
                let job = &batch[chunk.request];
                if job.cancel.is_cancelled() || job.events.blocking_send(Event::Chunk(chunk)).is_err() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .map_err(|e| generation_error(model, e))?;
        tracing::debug!(
            model,
            batch = batch.len(),
            ms = started.elapsed().as_millis() as u64,
            "generation finished"
        );
        Ok(stats)
    }
}

/// `cpu` or `cuda:N`.
pub fn device_name(device: tch::Device) -> String {
    match device {
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}

fn is_oom(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("out of memory") || m.contains("can't allocate memory") || m.contains("cannot allocate memory")
}

fn load_error(model: &str, e: MusicgenError) -> Error {
    let message = e.to_string();
    if is_oom(&message) {
        Error::ResourceExhausted(format!("out of memory while loading {model}: {message}"))
    } else {
        Error::FailedPrecondition(format!("cannot load {model}: {message}"))
    }
}

fn generation_error(model: &str, e: MusicgenError) -> Error {
    let message = e.to_string();
    match e {
        MusicgenError::InvalidRequest { field, .. } => Error::invalid(field, message),
        _ if is_oom(&message) => {
            Error::ResourceExhausted(format!("out of memory while generating with {model}: {message}"))
        }
        _ => Error::Internal(format!("generation with {model} failed: {message}")),
    }
}
