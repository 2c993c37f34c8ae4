//! Faults injected at the inference boundary (chaos tests only; `--fault-injection`): a wrapper
//! around any engine, so the orchestrator above it meets them exactly as it would meet a slow or
//! failing engine. A request whose prompt names a fault is tagged here, once, with an
//! [`InjectedFault`]; the faults that must act inside a decoding step (a panic, a real out-of-memory
//! at a chosen step, a stall in the prefill) are carried out by the engine from that tag, never by
//! searching prompts in its loop.

use std::{sync::Arc, time::Duration};

use super::{Engine, EngineError, LoadOrder, Loaded, ModelHandle, Reservation, Submission, Submitted};
use crate::resources::device::Device;

/// The prompt that makes its batch panic inside the engine.
pub const FAULT_PANIC: &str = "maestro:fault:panic";
/// A prompt containing this makes libtorch really run out of memory inside a decoding step (the
/// step and the least batch are the libtorch engine's settings).
pub const FAULT_OOM: &str = "maestro:fault:oom";
/// A prompt containing this holds its batch's first decoding step (the prefill, where an audio
/// prompt's frames go in) until the request is cancelled or a minute has passed: a cancellation that
/// lands inside the prefill, deterministically.
pub const FAULT_STALL: &str = "maestro:fault:stall";

/// A fault a request asks the engine to inject inside its generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedFault {
    /// The batch panics before decoding.
    Panic,
    /// libtorch runs out of memory at the engine's fault step.
    OutOfMemory,
    /// The first decoding step is held until the request is cancelled.
    Stall,
}

impl InjectedFault {
    /// The fault `prompt` names ([`FAULT_PANIC`], [`FAULT_OOM`], [`FAULT_STALL`]), if any.
    pub fn named_by(prompt: &str) -> Option<Self> {
        if prompt == FAULT_PANIC {
            Some(Self::Panic)
        } else if prompt.contains(FAULT_OOM) {
            Some(Self::OutOfMemory)
        } else if prompt.contains(FAULT_STALL) {
            Some(Self::Stall)
        } else {
            None
        }
    }
}

/// Faults at the boundary (everything off by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BoundaryFaults {
    /// Whether fault injection is on (`--fault-injection`): prompts naming a fault are tagged.
    pub enabled: bool,
    /// How long a load is held after the weights are resident and before its caller hears of it
    /// (`--fault-load-delay-ms`): the window in which a caller that gives up leaves weights no
    /// record names, unless the load outlives it.
    pub load_delay: Duration,
}

impl BoundaryFaults {
    /// Whether any fault is on.
    pub fn any(&self) -> bool {
        self.enabled
    }
}

/// An engine with [`BoundaryFaults`] injected.
pub struct Faulty {
    inner: Arc<dyn Engine>,
    faults: BoundaryFaults,
}

impl Faulty {
    /// `inner` as is when no fault is on, wrapped otherwise.
    pub fn wrap(inner: Arc<dyn Engine>, faults: BoundaryFaults) -> Arc<dyn Engine> {
        if faults.any() {
            Arc::new(Self { inner, faults })
        } else {
            inner
        }
    }
}

#[tonic::async_trait]
impl Engine for Faulty {
    fn refusal(&self) -> Option<&'static str> {
        self.inner.refusal()
    }

    fn devices(&self) -> Vec<Device> {
        self.inner.devices()
    }

    fn has_room(&self) -> bool {
        self.inner.has_room()
    }

    fn stuck(&self, now: std::time::SystemTime, after: Duration) -> Option<String> {
        self.inner.stuck(now, after)
    }

    async fn load(&self, order: LoadOrder) -> Result<Loaded, EngineError> {
        let model = order.model.clone();
        let loaded = self.inner.load(order).await?;
        tracing::warn!(model, delay = ?self.faults.load_delay, "fault injection: holding a finished load");
        tokio::time::sleep(self.faults.load_delay).await;
        Ok(loaded)
    }

    async fn unload(&self, handle: &ModelHandle) -> Result<(), EngineError> {
        self.inner.unload(handle).await
    }

    fn reserve(&self, handle: &ModelHandle) -> Result<Reservation, EngineError> {
        self.inner.reserve(handle)
    }

    fn submit(&self, reservation: Reservation, mut submission: Submission) -> Result<Submitted, EngineError> {
        submission.fault = InjectedFault::named_by(&submission.request.prompt);
        if let Some(fault) = submission.fault {
            let model = &reservation.handle.model;
            tracing::warn!(model, ?fault, "fault injection: a request asks for a fault");
        }
        self.inner.submit(reservation, submission)
    }

    async fn empty_cache(&self, dry_run: bool) -> Result<u64, String> {
        self.inner.empty_cache(dry_run).await
    }

    async fn shutdown(&self, deadline: Duration) -> Result<(), EngineError> {
        self.inner.shutdown(deadline).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_names_at_most_one_fault() {
        assert_eq!(InjectedFault::named_by(FAULT_PANIC), Some(InjectedFault::Panic));
        assert_eq!(InjectedFault::named_by("a maestro:fault:oom b"), Some(InjectedFault::OutOfMemory));
        assert_eq!(InjectedFault::named_by("maestro:fault:stall"), Some(InjectedFault::Stall));
        assert_eq!(InjectedFault::named_by("a calm piano"), None);
        assert_eq!(
            InjectedFault::named_by("not only maestro:fault:panic"),
            None,
            "panic is the whole prompt"
        );
    }
}
