//! The manager's actor: the one task that owns the lease ledger and the model cache.
//!
//! Messages ([`Command`]): the cache's bookkeeping (register, begin and end an unload, begin and end a use, pin,
//! list, evictable, pressure victims) and the leases' (allocate, release, list, expire now). Every
//! command that changes state republishes a [`FitState`] before it replies; a one-second tick expires
//! leases and republishes too. The task stops at shutdown or when every handle is gone.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    error::Error,
    monitor,
    resources::{
        cache::{CacheError, CachedModel, ModelCache},
        ledger::{Capacity, Lease, LeaseRequest, Ledger, Releaser, TokenShare},
    },
};

/// What verdicts are decided from, published by the actor after every command and expiry tick: a
/// verdict reads the latest one instead of queueing a message behind every other RPC's, and sees one
/// consistent state (the reservations and the cache as of one moment). The arithmetic and the
/// messages are done on the caller's task.
#[derive(Debug, Default)]
pub(super) struct FitState {
    /// Host bytes held by leases.
    pub reserved_host: u64,
    /// GPU bytes held by leases, by index.
    pub reserved_gpu: BTreeMap<u32, u64>,
    /// The cache as of the same moment.
    pub cache: ModelCache,
}

/// A message to the actor; `reply` carries the answer back.
pub(super) enum Command {
    Register { entry: CachedModel, reply: oneshot::Sender<()> },
    BeginUnload { model: String, reply: oneshot::Sender<Result<CachedModel, CacheError>> },
    EndUnload { model: String, done: bool, reply: oneshot::Sender<Option<CachedModel>> },
    BeginUse { model: String, reply: oneshot::Sender<Result<(), Error>> },
    EndUse { model: String },
    Pin { model: String, pinned: bool, reply: oneshot::Sender<()> },
    Cached { reply: oneshot::Sender<Vec<CachedModel>> },
    Evictable { force: bool, reply: oneshot::Sender<Vec<CachedModel>> },
    PressureVictims { needed: u64, reply: oneshot::Sender<Vec<String>> },
    ExpireNow { dry_run: bool, reply: oneshot::Sender<Vec<Lease>> },
    Allocate { request: LeaseRequest, reply: oneshot::Sender<Result<Lease, Error>> },
    Release { id: String, by: Releaser, reply: oneshot::Sender<Result<Lease, Error>> },
    Leases { reply: oneshot::Sender<Vec<Lease>> },
}

/// The actor's state.
pub(super) struct Actor {
    ledger: Ledger,
    cache: ModelCache,
    monitor: monitor::Handle,
    state: watch::Sender<Arc<FitState>>,
}

impl Actor {
    /// An actor with no leases and an empty cache, publishing into `state`.
    pub fn new(monitor: monitor::Handle, state: watch::Sender<Arc<FitState>>, share: TokenShare) -> Self {
        Self { ledger: Ledger::with_share(share), cache: ModelCache::new(), monitor, state }
    }

    /// Serves `commands` until shutdown or until every sender is gone.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        let mut expiry = tokio::time::interval(Duration::from_secs(1));
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = expiry.tick() => {
                    for lease in self.ledger.expire(Instant::now()) {
                        tracing::info!(lease = %lease.id, owner = %lease.owner, "lease expired");
                    }
                    self.publish();
                }
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.handle(cmd),
                    None => break,
                },
            }
        }
    }

    /// Applies a command. A reply goes out only after the new state is published, so a caller that
    /// saw its change acknowledged finds it in the next verdict.
    fn handle(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Register { entry, reply } => {
                self.cache.insert(entry);
                self.publish_then(reply, ());
            }
            Command::BeginUnload { model, reply } => {
                let out = self.cache.begin_unload(&model);
                self.publish_then(reply, out);
            }
            Command::EndUnload { model, done, reply } => {
                let out = if done {
                    self.cache.finish_unload(&model)
                } else {
                    self.cache.abort_unload(&model);
                    None
                };
                self.publish_then(reply, out);
            }
            Command::BeginUse { model, reply } => {
                let out = self.cache.begin_use(&model, now).map_err(Error::from);
                self.publish_then(reply, out);
            }
            Command::EndUse { model } => {
                self.cache.end_use(&model, now);
                self.publish();
            }
            Command::Pin { model, pinned, reply } => {
                let _ = self.cache.set_pinned(&model, pinned);
                self.publish_then(reply, ());
            }
            Command::Cached { reply } => {
                let _ = reply.send(self.cache.entries().cloned().collect());
            }
            Command::Evictable { force, reply } => {
                let _ = reply.send(self.cache.evictable(now, force).into_iter().cloned().collect());
            }
            Command::PressureVictims { needed, reply } => {
                let _ = reply.send(self.cache.pressure_victims(needed));
            }
            Command::ExpireNow { dry_run, reply } => {
                let expired = self.expire(now, dry_run);
                self.publish_then(reply, expired);
            }
            Command::Allocate { request, reply } => {
                let out = self.ledger.reserve(request, &self.capacity(), now).map_err(Error::from);
                self.publish_then(reply, out);
            }
            Command::Release { id, by, reply } => {
                let out = self.ledger.release_by(&id, &by).map_err(Error::from);
                self.publish_then(reply, out);
            }
            Command::Leases { reply } => {
                let _ = reply.send(self.ledger.leases().cloned().collect());
            }
        }
    }

    /// Releases the leases expired at `now` (with `dry_run`, only lists them).
    fn expire(&mut self, now: Instant, dry_run: bool) -> Vec<Lease> {
        if dry_run {
            self.ledger.leases().filter(|l| l.is_expired(now)).cloned().collect()
        } else {
            self.ledger.expire(now)
        }
    }

    /// What the latest sample says is available for leases.
    fn capacity(&self) -> Capacity {
        let snapshot = self.monitor.latest();
        Capacity {
            host_available_bytes: snapshot.effective.available_bytes,
            gpu_available_bytes: snapshot
                .gpu
                .devices
                .iter()
                .map(|d| (d.index, d.memory_free_bytes.unwrap_or(0)))
                .collect(),
        }
    }

    // The cache's read-only queries (`Cached`, `Evictable`, `PressureVictims`) stay messages rather
    // than reads of the published state: `EndUse` is not acknowledged, so only the queue orders a
    // query after the release that a caller (the emergency cleanup after a failed generation) just
    // sent.
    fn publish_then<T>(&self, reply: oneshot::Sender<T>, value: T) {
        self.publish();
        let _ = reply.send(value);
    }

    /// Publishes what verdicts are decided from (see [`FitState`]).
    fn publish(&self) {
        let state = FitState {
            reserved_host: self.ledger.reserved_host(),
            reserved_gpu: self.ledger.reserved_gpu_by_index(),
            cache: self.cache.clone(),
        };
        self.state.send_replace(Arc::new(state));
    }
}
