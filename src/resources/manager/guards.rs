//! The server's own holds on the manager as RAII guards: a lease it took for its work and a request's
//! use of a cached model. Dropping a guard gives the hold back on every path, from the destructor,
//! without waiting.

use tokio::sync::{mpsc, oneshot};

use super::{actor::Command, Handle};
use crate::{
    error::Error,
    resources::ledger::{Lease, LeaseRequest, Releaser},
};

impl Handle {
    /// Reserves memory for the server's own work; the lease is released when the guard drops.
    pub async fn lease(&self, request: LeaseRequest) -> Result<LeaseGuard, Error> {
        let lease = self.allocate(request).await?;
        Ok(LeaseGuard { id: lease.id.as_str().to_string(), handle: self.clone(), lease })
    }

    /// Marks a model in use until the guard drops; it cannot be evicted meanwhile.
    pub async fn use_model(&self, model: &str) -> Result<ModelUse, Error> {
        let m = model.to_string();
        self.ask(|reply| Command::BeginUse { model: m, reply }).await??;
        Ok(ModelUse { model: model.to_string(), handle: self.clone() })
    }

    /// Sends a message from a destructor: without waiting, or on a spawned task when the queue is full.
    fn send_from_drop(&self, cmd: Command) {
        if let Err(mpsc::error::TrySendError::Full(cmd)) = self.commands.try_send(cmd) {
            let tx = self.commands.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = tx.send(cmd).await;
                });
            }
        }
    }
}

/// A lease held by the server itself; dropping it releases the lease, on every path.
pub struct LeaseGuard {
    id: String,
    handle: Handle,
    lease: Lease,
}

impl LeaseGuard {
    /// The lease.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let (reply, _) = oneshot::channel();
        self.handle.send_from_drop(Command::Release {
            id: std::mem::take(&mut self.id),
            by: Releaser::Server,
            reply,
        });
    }
}

/// A request's use of a cached model; dropping it ends the use.
pub struct ModelUse {
    model: String,
    handle: Handle,
}

impl ModelUse {
    /// The model in use.
    pub fn model(&self) -> &str {
        &self.model
    }
}

impl Drop for ModelUse {
    fn drop(&mut self) {
        self.handle.send_from_drop(Command::EndUse { model: std::mem::take(&mut self.model) });
    }
}
