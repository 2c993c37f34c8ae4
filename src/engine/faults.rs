//! Faults injected at the inference boundary (chaos tests only; `--fault-injection`): a wrapper
//! around any engine, so the orchestrator above it meets them exactly as it would meet a slow or
//! failing engine. Faults that must act inside a decoding step stay inside the libtorch engine.

use std::{path::PathBuf, sync::Arc, time::Duration};

use super::{Engine, Loaded, ModelHandle, Submission, Submitted};
use crate::{
    error::Error,
    resources::{device::Device, requirements::DType},
};

/// Faults at the boundary (everything off by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BoundaryFaults {
    /// How long a load is held after the weights are resident and before its caller hears of it
    /// (`--fault-load-delay-ms`): the window in which a caller that gives up leaves weights no
    /// record names, unless the load outlives it.
    pub load_delay: Duration,
}

impl BoundaryFaults {
    /// Whether any fault is on.
    pub fn any(&self) -> bool {
        !self.load_delay.is_zero()
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

    async fn load(&self, model: &str, dir: PathBuf, dtype: DType, device: Device) -> Result<Loaded, Error> {
        let loaded = self.inner.load(model, dir, dtype, device).await?;
        tracing::warn!(model, delay = ?self.faults.load_delay, "fault injection: holding a finished load");
        tokio::time::sleep(self.faults.load_delay).await;
        Ok(loaded)
    }

    async fn unload(&self, handle: &ModelHandle) -> Result<(), Error> {
        self.inner.unload(handle).await
    }

    fn submit(&self, handle: &ModelHandle, submission: Submission) -> Result<Submitted, Error> {
        self.inner.submit(handle, submission)
    }

    async fn empty_cache(&self, dry_run: bool) -> Result<u64, String> {
        self.inner.empty_cache(dry_run).await
    }

    async fn shutdown(&self, deadline: Duration) -> Result<(), Error> {
        self.inner.shutdown(deadline).await
    }
}
