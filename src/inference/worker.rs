//! One inference worker: a dedicated OS thread that owns its loaded models and runs libtorch.
//!
//! The thread takes [`Job`]s from its own bounded queue until the queue closes; once the pool's
//! shutdown sets [`WorkerLoad::stopping`] it drops what is still queued instead of running it. A
//! panic inside a job is caught: that job's caller gets INTERNAL (RESOURCE_EXHAUSTED when it carries
//! libtorch's out-of-memory), the models stay, and the thread serves the next job. How a batch of
//! generations runs, and how it survives running out of memory, is `batch`'s.

mod batch;

use std::{
    collections::{HashMap, VecDeque},
    panic::{catch_unwind, AssertUnwindSafe},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc as std_mpsc, Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::engine::{faults::InjectedFault, CheckpointFacts, EventSender};
pub use crate::engine::{Event, Finished, ModelFacts};
use crate::{
    engine::EngineError,
    inference::oom::{self, OutOfMemory},
    musicgen::{DType, GenerationRequest, MusicGen, MusicgenError},
    resources::device::Device,
};

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
        reply: oneshot::Sender<Result<ModelFacts, EngineError>>,
    },
    /// Drop a model's tensors (answered once they are gone, or were never here).
    Unload {
        /// Model id.
        model: String,
        /// Told when it is done.
        reply: oneshot::Sender<()>,
    },
    /// Generate one request, streaming chunks.
    Generate(Box<GenerateJob>),
}

/// One generation request for a worker.
pub struct GenerateJob {
    /// Model id (loaded on this worker).
    pub model: String,
    /// The request.
    pub request: GenerationRequest,
    /// A clip to continue, channel-interleaved at the model's rate and channels: encoded on the
    /// worker into the request's prompt codes right before its batch runs.
    pub audio_prompt: Option<Vec<f32>>,
    /// Chunks and the end go here; a closed channel stops the generation.
    /// Never waits: a client that takes nothing is the orchestrator's to stop (`--stall-timeout-s`).
    pub events: EventSender,
    /// Cancelled on client disconnect, deadline or shutdown.
    pub cancel: CancellationToken,
    /// A fault to inject (tagged at the inference boundary, chaos tests only).
    pub fault: Option<InjectedFault>,
    /// The queue slot, given back when the job ends.
    pub admission: std::sync::Mutex<Option<Admission>>,
}

/// A generation's queue slot, counted in the `maestro_generations_in_flight` gauge while it lives and
/// in `maestro_generation_queue_depth` (then `maestro_generations_running`) until a worker starts it.
#[derive(Debug)]
pub struct Admission {
    _permit: OwnedSemaphorePermit,
    running: bool,
}

impl Admission {
    /// Counts a slot just queued.
    pub fn queued(permit: OwnedSemaphorePermit) -> Self {
        metrics::gauge!("maestro_generations_in_flight").increment(1.0);
        metrics::gauge!("maestro_generation_queue_depth").increment(1.0);
        Self { _permit: permit, running: false }
    }

    /// A worker has started it (again, for a retry: counted once).
    pub fn start(&mut self) {
        if !std::mem::replace(&mut self.running, true) {
            metrics::gauge!("maestro_generation_queue_depth").decrement(1.0);
            metrics::gauge!("maestro_generations_running").increment(1.0);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let was = if self.running { "maestro_generations_running" } else { "maestro_generation_queue_depth" };
        metrics::gauge!(was).decrement(1.0);
        metrics::gauge!("maestro_generations_in_flight").decrement(1.0);
    }
}

/// The running worker's shared counters and flags.
#[derive(Debug, Default)]
pub struct WorkerLoad {
    /// Jobs queued or running.
    pub pending: AtomicUsize,
    /// Set at shutdown: the jobs still queued are dropped unrun.
    pub stopping: AtomicBool,
    /// While the worker holds a job: the wall-clock milliseconds of its last progress (taking the
    /// job, each decoding step); 0 while it waits for work. Liveness reads it.
    pub progress_ms: AtomicU64,
}

impl WorkerLoad {
    /// Records progress on the job the worker holds.
    pub fn progressed(&self) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_millis().max(1) as u64);
        self.progress_ms.store(now, Ordering::Relaxed);
    }

    /// Records that the worker holds no job.
    pub fn idle(&self) {
        self.progress_ms.store(0, Ordering::Relaxed);
    }

    /// How long the worker has held its job without progress at `now`; `None` while it waits.
    pub fn stalled_for(&self, now: SystemTime) -> Option<Duration> {
        match self.progress_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(now.duration_since(UNIX_EPOCH + Duration::from_millis(ms)).unwrap_or_default()),
        }
    }
}

/// With fault injection, loading a model whose id ends with this makes libtorch really run out of
/// memory before the weights are read.
pub const FAULT_OOM_MODEL: &str = "fault-oom-on-load";
/// What an injected out-of-memory asks libtorch for: 256 PiB, past the virtual address space of
/// x86-64 (47 or 57 bits) and any device's memory, so the allocator fails even where the kernel
/// overcommits.
pub const IMPOSSIBLE_BYTES: i64 = 1 << 58;

/// Fault injection for chaos tests (everything off by default).
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Whether [`FAULT_OOM_MODEL`] is honoured (the faults a job carries are tagged at the boundary,
    /// only when fault injection is on).
    pub enabled: bool,
    /// The decoding step (from 0) at which a batch holding a live job tagged
    /// [`InjectedFault::OutOfMemory`] asks libtorch for [`IMPOSSIBLE_BYTES`] on the worker's device.
    pub oom_step: usize,
    /// Only batches of at least this many requests do (0 and 1: every batch), so a retry at half size
    /// can succeed.
    pub oom_min_batch: usize,
}

/// Asks libtorch for [`IMPOSSIBLE_BYTES`] on `device`: a real allocation failure, as an error.
fn impossible_allocation(device: tch::Device) -> Result<tch::Tensor, tch::TchError> {
    tch::Tensor::f_empty([IMPOSSIBLE_BYTES], (tch::Kind::Uint8, device))
}

/// Where a worker runs: the device its models, leases and out-of-memory errors are accounted on, and
/// the libtorch device it computes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinned {
    /// The device as the resource manager names it.
    pub device: Device,
    /// That GPU's libtorch ordinal, or the CPU (a CPU worker, or a GPU worker behind the
    /// [`super::Executor::CpuStandIn`] seam).
    pub compute: tch::Device,
}

/// Starts a worker thread pinned to `pinned`; it ends when `jobs` closes, and the pool joins it. Generations for the same model
/// that are queued when one starts run with it as one batch (dynamic batching, up to `max_batch`).
/// Jobs tagged with an [`InjectedFault`] get a panic, a stall or a real
/// out-of-memory failure into the generation.
pub fn spawn(
    index: usize,
    pinned: Pinned,
    jobs: std_mpsc::Receiver<Job>,
    load: Arc<WorkerLoad>,
    (max_batch, faults, extend_stride_s): (usize, Faults, f64),
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let name = format!("maestro-worker-{index}-{}", pinned.device.name());
    std::thread::Builder::new().name(name).spawn(move || {
        let (models, dirs) = (HashMap::new(), HashMap::new());
        let progress = load.clone();
        let mut worker =
            Worker { pinned, device: pinned.compute, models, dirs, faults, extend_stride_s, progress };
        let mut pending: VecDeque<Job> = VecDeque::new();
        while let Some(job) = pending.pop_front().or_else(|| jobs.recv().ok()) {
            load.progressed();
            let done = match job {
                // Shutting down: a queued job is dropped unrun, so its caller hears the worker stopped
                // instead of waiting for work nobody will read.
                job if load.stopping.load(Ordering::Relaxed) => {
                    drop(job);
                    1
                }
                Job::Generate(first) => {
                    let batch = gather(*first, &jobs, &mut pending, max_batch.max(1));
                    let n = batch.len();
                    worker.generate_batch(batch);
                    n
                }
                other => {
                    worker.run(other);
                    1
                }
            };
            load.idle();
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
            Ok(Job::Generate(g)) if g.model == batch[0].model => batch.push(*g),
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
    pinned: Pinned,
    /// What libtorch computes on (`pinned.compute`).
    device: tch::Device,
    models: HashMap<String, MusicGen>,
    /// Where each loaded model came from (its EnCodec encoder is loaded from there when audio comes in).
    dirs: HashMap<String, std::path::PathBuf>,
    faults: Faults,
    /// Seconds each window past a model's first adds (`--extend-stride-s`).
    extend_stride_s: f64,
    /// Where its progress is recorded for liveness.
    progress: Arc<WorkerLoad>,
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
                let device = self.pinned.device;
                let result = catch_unwind(AssertUnwindSafe(|| self.load(&model, &dir, dtype)))
                    .unwrap_or_else(|p| {
                        let message = panic_message(p);
                        Err(out_of_memory(device, format!("loading {model}"), &message).unwrap_or_else(
                            || EngineError::Failed(format!("loading {model} panicked: {message}")),
                        ))
                    });
                let _ = reply.send(result);
            }
            Job::Unload { model, reply } => {
                if self.models.remove(&model).is_none() {
                    // Nothing to drop is what the caller wants: its record goes either way.
                    tracing::warn!(model, "asked to unload a model this worker does not hold");
                }
                self.dirs.remove(&model);
                let _ = reply.send(());
            }
            Job::Generate(job) => self.generate_batch(vec![*job]),
        }
    }

    fn load(&mut self, model: &str, dir: &std::path::Path, dtype: DType) -> Result<ModelFacts, EngineError> {
        if self.faults.enabled && model.ends_with(FAULT_OOM_MODEL) {
            // Fails; were it ever to succeed, the load would go on as without the fault.
            drop(impossible_allocation(self.device).map_err(|e| self.load_error(model, e.into()))?);
        }
        let before = crate::monitor::sampler::rss_bytes();
        let mut m = MusicGen::load(dir, self.device, dtype).map_err(|e| self.load_error(model, e))?;
        m.set_extend_stride_s(self.extend_stride_s);
        let measured = crate::monitor::sampler::rss_bytes().saturating_sub(before);
        let checkpoint = CheckpointFacts::of(m.config(), m.generation_defaults(), m.chroma_config().cloned());
        let facts = ModelFacts { checkpoint, device: self.pinned.device, measured_bytes: measured };
        self.models.insert(model.to_string(), m);
        self.dirs.insert(model.to_string(), dir.to_owned());
        Ok(facts)
    }

    fn load_error(&self, model: &str, e: MusicgenError) -> EngineError {
        let message = e.to_string();
        out_of_memory(self.pinned.device, format!("loading {model}"), &message)
            .unwrap_or_else(|| EngineError::LoadFailed { model: model.into(), reason: message })
    }
}

/// RESOURCE_EXHAUSTED when `message` is libtorch running out of memory on `device` while doing `during`.
fn out_of_memory(device: Device, during: String, message: &str) -> Option<EngineError> {
    let reported = oom::classify(message)?;
    Some(EngineError::OutOfMemory(Box::new(OutOfMemory::new(device, during, reported))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libtorch on this machine, not a string: the allocation fails with an error whose bytes are read.
    #[test]
    fn a_real_cpu_allocation_failure_is_out_of_memory_with_its_bytes() {
        let e = impossible_allocation(tch::Device::Cpu).expect_err("256 PiB cannot be allocated");
        let err = out_of_memory(Device::Cpu, "testing".into(), &e.to_string()).expect("out of memory");
        let EngineError::OutOfMemory(oom) = err else { panic!("{err:?}") };
        assert_eq!((oom.device, oom.requested), (Device::Cpu, Some(IMPOSSIBLE_BYTES as u64)));
        assert!(oom.detail.starts_with("DefaultCPUAllocator"), "{}", oom.detail);
    }

    /// The infallible op panics with libtorch's message inside, as a decoder op would.
    #[test]
    fn a_real_allocation_panic_is_out_of_memory_with_its_bytes() {
        let p = catch_unwind(|| tch::Tensor::empty([IMPOSSIBLE_BYTES], (tch::Kind::Uint8, tch::Device::Cpu)))
            .expect_err("256 PiB cannot be allocated");
        let message = panic_message(p);
        let err = out_of_memory(Device::Cpu, "testing".into(), &message).expect("out of memory");
        assert!(
            matches!(&err, EngineError::OutOfMemory(o) if o.requested == Some(IMPOSSIBLE_BYTES as u64)),
            "{err:?}"
        );
    }
}
