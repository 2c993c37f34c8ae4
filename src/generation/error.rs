//! What the orchestrator refuses or fails with, by kind, wrapping the layers below it (the request's
//! validation, the engine) rather than copying them. The transports choose a status for each kind.

use std::sync::Arc;

use super::ValidationError;
use crate::{checkpoint::config::ConfigError, engine::EngineError, resources::device::Device};

/// Why a generation, a load or an unload did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GenerationError {
    /// The request does not fit its model.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// The engine refused or failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Not enough memory where the model would run: the verdict's summary, required against
    /// available.
    #[error("{0}")]
    DoesNotFit(String),
    /// The model is loaded, on another device than the one asked for.
    #[error(
        "{model} is loaded on {}, and a server holds one copy of a model: unload it to load it on {}",
        at.name(),
        asked.name()
    )]
    OnAnotherDevice {
        /// Model id.
        model: String,
        /// Where it is.
        at: Device,
        /// Where it was asked for.
        asked: Device,
    },
    /// The model's configs cannot be read, or describe a model that is not served.
    #[error("cannot load {model}: {source}")]
    Checkpoint {
        /// Model id.
        model: String,
        /// What the config reader said.
        source: Arc<ConfigError>,
    },
    /// The client took none of its audio for `--stall-timeout-s`.
    #[error(
        "generation cancelled: the client took no audio for {} s (--stall-timeout-s); a client must keep reading its stream",
        timeout.as_secs_f64()
    )]
    Stalled {
        /// The timeout that passed.
        timeout: std::time::Duration,
    },
    /// The token already has its share of the queue.
    #[error(
        "token {token:?} has {held} generations queued or running, its share of the queue (--max-queued-per-token {limit})"
    )]
    QueueShare {
        /// The token's name.
        token: String,
        /// Generations it holds.
        held: usize,
        /// The limit.
        limit: usize,
    },
    /// The drain deadline passed while the generation ran.
    #[error(
        "generation cancelled: the server is shutting down and its drain deadline (--drain-deadline-s) passed while this generation ran"
    )]
    ShutDown,
    /// A task or a record the orchestrator relies on went missing; the log has the details.
    #[error("internal error: {0}")]
    Internal(String),
}
