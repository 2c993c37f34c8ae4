//! What goes wrong inside an engine, by kind: its queues, its workers, its devices, the memory
//! libtorch could not get, a model it could not load or run. The transports choose a status for each
//! kind (`grpc::status`); nothing here knows status codes.

use std::time::Duration;

use crate::{inference::oom::OutOfMemory, resources::device::Device};

/// Why an engine did not do what it was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// A worker's queue is full (its generations, loads and unloads together).
    #[error(
        "inference worker {worker} has {queued} jobs queued, its limit (--queue-capacity {queue_capacity} + {control_jobs})"
    )]
    WorkerQueueFull {
        /// The worker.
        worker: usize,
        /// Jobs it holds.
        queued: usize,
        /// `--queue-capacity`.
        queue_capacity: usize,
        /// Room kept for loads and unloads besides a full generation queue.
        control_jobs: usize,
    },
    /// Every generation slot is taken.
    #[error("generation queue full: {capacity} requests queued or running (--queue-capacity {capacity})")]
    GenerationQueueFull {
        /// `--queue-capacity`.
        capacity: usize,
    },
    /// A worker no longer takes work (the server is shutting down).
    #[error("inference worker {worker} has stopped")]
    WorkerStopped {
        /// The worker.
        worker: usize,
    },
    /// No worker computes on the device placement chose.
    #[error(
        "{} is not a device this server places work on (it places on {}; see --devices)",
        device.name(),
        served.iter().map(|d| d.name()).collect::<Vec<_>>().join(", ")
    )]
    NotPlaced {
        /// The device asked for.
        device: Device,
        /// The devices it places on.
        served: Vec<Device>,
    },
    /// libtorch could not allocate: the device, the bytes asked for and the bytes free.
    #[error("{0}")]
    OutOfMemory(Box<OutOfMemory>),
    /// The model's files could not be loaded.
    #[error("cannot load {model}: {reason}")]
    LoadFailed {
        /// Model id.
        model: String,
        /// What the loader said.
        reason: String,
    },
    /// A model the engine was asked to use is not among its loaded ones.
    #[error("model {model} is not loaded")]
    NotHeld {
        /// Model id.
        model: String,
    },
    /// The model refused a request value (a library-level invariant the request broke).
    #[error("{field}: {message}")]
    InvalidRequest {
        /// The request field.
        field: &'static str,
        /// The model's words.
        message: String,
    },
    /// The engine failed on its own (a panic, a lost worker); the log has the details.
    #[error("internal error: {0}")]
    Failed(String),
    /// This engine runs nothing.
    #[error("{0} is not available in this build yet")]
    Unimplemented(&'static str),
    /// Shutdown's deadline passed with workers still running.
    #[error("inference workers {workers:?} still running {deadline:?} after shutdown began")]
    StillRunning {
        /// The workers not joined.
        workers: Vec<usize>,
        /// The deadline that passed.
        deadline: Duration,
    },
}
