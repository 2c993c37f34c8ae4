//! The inference boundary: what the generation orchestrator asks of an engine, and nothing about
//! how the engine computes.
//!
//! An [`Engine`] loads a model directory onto a placed device and answers with a [`ModelHandle`] and
//! the model's [`ModelFacts`]; it unloads by handle; it queues a [`Submission`] and answers with the
//! request's stream of [`Event`]s. The libtorch worker pool (`inference::Pool`) is one engine; a build
//! without libtorch has [`Refusing`]; [`faults::Faulty`] wraps any engine to inject faults at this
//! boundary; the orchestrator's tests script one. Everything here builds without libtorch.

mod error;
pub mod facts;
pub mod faults;
pub mod request;

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use self::error::EngineError;
pub use self::facts::CheckpointFacts;
pub use self::request::{
    AudioChunkOut, GenerationConfig, GenerationRequest, GenerationStats, SamplingMode, SamplingParams,
};
use crate::resources::{device::Device, requirements::DType};

/// What a loaded model is like: what its checkpoint says, where it lives and what it cost.
#[derive(Debug, Clone)]
pub struct ModelFacts {
    /// What the checkpoint's configs say (the same facts requests were validated with).
    pub checkpoint: CheckpointFacts,
    /// The device its weights live on (`cpu`, `cuda:N` by NVML index).
    pub device: Device,
    /// Host RSS growth caused by the load, in bytes.
    pub measured_bytes: u64,
}

/// Which loaded copy a request or an unload is for: the model id and the engine's own slot for it
/// (a worker index for the pool). Only the engine that issued it reads `slot`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelHandle {
    /// Model id.
    pub model: String,
    /// The engine's place for it.
    pub slot: usize,
}

/// A model an engine has loaded: its handle and its facts. The resource manager's cache holds it,
/// so the cache is the one record of what is loaded.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// What later requests and the unload name.
    pub handle: ModelHandle,
    /// What the model is like.
    pub facts: ModelFacts,
}

/// Two records of a load are the same load when they name the same copy.
impl PartialEq for Loaded {
    fn eq(&self, other: &Self) -> bool {
        self.handle == other.handle
    }
}

/// A model to load: its id, its folder, the decoder's precision and the device placement chose.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOrder {
    /// Model id.
    pub model: String,
    /// Its folder.
    pub dir: PathBuf,
    /// Decoder precision.
    pub dtype: DType,
    /// Where it goes (placed: `cpu` or `cuda:N`).
    pub device: Device,
}

/// A validated, resolved generation for an engine to run.
#[derive(Debug)]
pub struct Submission {
    /// What to generate.
    pub request: GenerationRequest,
    /// A clip to continue, channel-interleaved at the model's rate and channels: encoded by the
    /// engine into the request's prompt codes right before it runs.
    pub audio_prompt: Option<Vec<f32>>,
    /// Cancelled on client disconnect, deadline or shutdown.
    pub cancel: CancellationToken,
    /// A fault to inject inside it (chaos tests; set by [`faults::Faulty`] only).
    pub fault: Option<faults::InjectedFault>,
}

/// A slot in an engine's generation queue, taken before the request's audio is prepared so that
/// the work of preparing it is only done for a request the engine will run. Dropped unsubmitted, it
/// gives the slot back.
#[derive(Debug)]
pub struct Reservation {
    /// The loaded model it is for.
    pub handle: ModelHandle,
    /// The engine's hold on the slot (the pool's admission permit); engines that count their queue
    /// another way leave it `None`.
    pub slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// A generation an engine has queued.
#[derive(Debug)]
pub struct Submitted {
    /// Requests ahead of it.
    pub queue_position: usize,
    /// Its progress; the engine closes it after the last event.
    pub events: EventReceiver,
}

/// A generation's events, engine to orchestrator: unbounded, so that an engine never waits on a
/// client (the orchestrator stops a generation whose client takes nothing, which bounds what
/// collects), and counted, so that the orchestrator can tell a client that takes nothing from one
/// that waits for the engine.
pub fn event_channel() -> (EventSender, EventReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let sent = Arc::new(AtomicUsize::new(0));
    (EventSender { tx, sent: sent.clone() }, EventReceiver { rx, sent })
}

/// The engine's end of [`event_channel`].
#[derive(Debug)]
pub struct EventSender {
    tx: mpsc::UnboundedSender<Event>,
    sent: Arc<AtomicUsize>,
}

impl EventSender {
    /// Sends `event` without waiting; `Err` when the receiver is gone (the event is dropped).
    pub fn send(&self, event: Event) -> Result<(), ReceiverGone> {
        self.tx.send(event).map_err(|_| ReceiverGone)?;
        self.sent.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The orchestrator stopped listening to a generation (its client went away).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverGone;

/// The orchestrator's end of [`event_channel`].
#[derive(Debug)]
pub struct EventReceiver {
    rx: mpsc::UnboundedReceiver<Event>,
    sent: Arc<AtomicUsize>,
}

impl EventReceiver {
    /// The next event; `None` once the engine dropped its end.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// How many events the engine has sent so far, shared.
    pub fn sent(&self) -> Arc<AtomicUsize> {
        self.sent.clone()
    }
}

/// Progress of a generation, sent to the request's stream.
#[derive(Debug)]
pub enum Event {
    /// The engine started decoding it (it waited in the queue until now).
    Started,
    /// A decoded chunk of f32 samples.
    Chunk(AudioChunkOut),
    /// Finished (or stopped by cancellation).
    Done(Finished),
    /// Failed.
    Failed(EngineError),
}

/// How a generation ended.
#[derive(Debug)]
pub struct Finished {
    /// The generation loop's figures.
    pub stats: GenerationStats,
    /// The size of the batch it ran in.
    pub batch: usize,
    /// libtorch's CUDA allocator peak since its attempt began, less what was allocated then; `None`
    /// off CUDA (or where the allocator does not answer). Covers the whole batch, and every worker
    /// on the same GPU: the allocator keeps one peak per device.
    pub peak_gpu_delta_bytes: Option<i64>,
}

/// What runs generations. Calls that queue work answer at once when they cannot (a full queue is
/// RESOURCE_EXHAUSTED, a stopped engine UNAVAILABLE) and change nothing then, so the caller's
/// records stay true.
#[tonic::async_trait]
pub trait Engine: Send + Sync + 'static {
    /// Why this engine runs nothing, or `None` when it can: the orchestrator refuses generation and
    /// the model lifecycle with UNIMPLEMENTED before any other check.
    fn refusal(&self) -> Option<&'static str> {
        None
    }

    /// The devices it places work on, each once, in start order.
    fn devices(&self) -> Vec<Device>;

    /// Whether its generation queue has a free slot (readiness reads it).
    fn has_room(&self) -> bool;

    /// A worker that has held work without progress for longer than `after` at `now`, described
    /// (liveness reads it); `None` when every worker is moving or waiting for work.
    fn stuck(&self, _now: std::time::SystemTime, _after: Duration) -> Option<String> {
        None
    }

    /// Loads a model as `order` says.
    async fn load(&self, order: LoadOrder) -> Result<Loaded, EngineError>;

    /// Drops a loaded model's tensors.
    async fn unload(&self, handle: &ModelHandle) -> Result<(), EngineError>;

    /// Takes a slot in the generation queue for a loaded model, without waiting: a full queue is
    /// refused at once.
    fn reserve(&self, handle: &ModelHandle) -> Result<Reservation, EngineError>;

    /// Queues a generation in a slot [`Engine::reserve`] took, without waiting.
    fn submit(&self, reservation: Reservation, submission: Submission) -> Result<Submitted, EngineError>;

    /// Gives the device allocator's cached, unused blocks back (libtorch's `empty_cache`): the bytes
    /// it gave back, or what it would give with `dry_run`; an error says why it cannot.
    async fn empty_cache(&self, dry_run: bool) -> Result<u64, String>;

    /// Stops taking work and waits at most `deadline` for what runs to end.
    async fn shutdown(&self, deadline: Duration) -> Result<(), EngineError>;
}

/// The engine of a build without libtorch: it places nothing and refuses every model and
/// generation with UNIMPLEMENTED, naming why.
#[derive(Debug, Clone, Copy)]
pub struct Refusing {
    /// What is missing, as UNIMPLEMENTED says it ("… is not available in this build yet").
    pub reason: &'static str,
}

impl Refusing {
    fn refuse<T>(&self) -> Result<T, EngineError> {
        Err(EngineError::Unimplemented(self.reason))
    }
}

#[tonic::async_trait]
impl Engine for Refusing {
    fn refusal(&self) -> Option<&'static str> {
        Some(self.reason)
    }

    fn devices(&self) -> Vec<Device> {
        Vec::new()
    }

    fn has_room(&self) -> bool {
        true
    }

    async fn load(&self, _: LoadOrder) -> Result<Loaded, EngineError> {
        self.refuse()
    }

    async fn unload(&self, _: &ModelHandle) -> Result<(), EngineError> {
        self.refuse()
    }

    fn reserve(&self, _: &ModelHandle) -> Result<Reservation, EngineError> {
        self.refuse()
    }

    fn submit(&self, _: Reservation, _: Submission) -> Result<Submitted, EngineError> {
        self.refuse()
    }

    async fn empty_cache(&self, _: bool) -> Result<u64, String> {
        Err(format!("{} is not available in this build", self.reason))
    }

    async fn shutdown(&self, _: Duration) -> Result<(), EngineError> {
        Ok(())
    }
}
