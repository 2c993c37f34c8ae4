//! The resource manager: a handle on the actor that owns the lease ledger and the model cache.
//!
//! The actor (`manager/actor.rs`) applies allocate, release and the cache's bookkeeping, and
//! republishes what fit verdicts are decided from after every change, so a verdict (ValidateModel,
//! admission, batch advice: `manager/fit.rs`) reads one consistent view of reservations and cache
//! without queueing on the actor, and sees every change already acknowledged to anyone. The server's
//! own holds are RAII guards (`manager/guards.rs`); model listings are in `manager/listing.rs`. The
//! actor stops at shutdown or when every handle is gone.

mod actor;
mod fit;
mod guards;
mod listing;

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio_util::sync::CancellationToken;

use self::actor::{Actor, Command, FitState};
pub use self::{
    fit::{BatchAnswer, BatchQuestion, FitAnswer, FitQuestion, FitVerdict},
    guards::{LeaseGuard, ModelUse},
    listing::{ModelListing, LISTING_DURATION_S},
};
use super::model_id::ModelRoots;
use super::{
    cache::{CacheError, CachedModel},
    journal::Journal,
    ledger::{Lease, LeaseRequest, Releaser, TokenShare},
    memo::Memo,
    requirements::{Registry, SizingCache},
};
use crate::{error::Error, monitor};

/// Settings of the manager.
#[derive(Debug, Clone)]
pub struct ManagerSettings {
    /// Fraction of free memory kept back from every plan (default 0.2).
    pub safety_margin: f64,
    /// Model roots and the hub cache.
    pub roots: ModelRoots,
    /// The requirements table.
    pub registry: Arc<Registry>,
    /// Longest lease a client may ask for (default 24 h).
    pub max_ttl: Duration,
    /// Fewest bytes a client lease may reserve (default 1 MB).
    pub min_lease_bytes: u64,
    /// Time unused after which suggestions advise evicting an idle model (default 10 min).
    pub suggest_evict_idle: Duration,
    /// NVML indices of the GPUs work is placed on (the inventory's
    /// [`crate::inventory::Inventory::placeable`]).
    pub placeable_gpus: Vec<u32>,
    /// Longest generation a request may ask for (`--max-duration-s`): what a question's duration is
    /// checked against. Past a model's window it is sized as one window.
    pub max_duration_s: f64,
    /// Client leases and bytes one token name may hold.
    pub token_share: TokenShare,
}

/// A handle on the manager.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
    settings: Arc<ManagerSettings>,
    /// Recent lookups (see [`super::memo`]).
    lookups: Arc<Memo>,
    /// What each checkpoint's files say, per file identity (see [`fit`]).
    sizings: Arc<SizingCache>,
    /// Reads of the model roots that may run at once on the blocking pool.
    disk: Arc<Semaphore>,
    state: watch::Receiver<Arc<FitState>>,
    monitor: monitor::Handle,
    journal: Journal,
}

fn stopped() -> Error {
    Error::Stopped("the resource manager has stopped".into())
}

impl Handle {
    /// Runs `read` (file-system work) on the blocking pool once one of the [`DISK_READS`] is free.
    pub(crate) async fn on_disk<T: Send + 'static>(
        &self,
        what: &str,
        read: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let permit = self.disk.clone().acquire_owned().await.map_err(|_| stopped())?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            read()
        })
        .await
        .map_err(|e| Error::Internal(format!("{what} failed: {e}")))
    }

    /// The settings.
    pub fn settings(&self) -> &ManagerSettings {
        &self.settings
    }

    /// The monitor whose snapshots it decides by.
    pub fn monitor(&self) -> &monitor::Handle {
        &self.monitor
    }

    /// What happened recently: the generation queue, ended generations, evictions.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())
    }

    /// Reserves memory for a client.
    pub async fn allocate(&self, request: LeaseRequest) -> Result<Lease, Error> {
        self.ask(|reply| Command::Allocate { request, reply }).await?
    }

    /// Gives a lease back, if `by` may (see [`Ledger::release_by`](super::ledger::Ledger::release_by)).
    pub async fn release(&self, id: String, by: Releaser) -> Result<Lease, Error> {
        self.ask(|reply| Command::Release { id, by, reply }).await?
    }

    /// Every live lease.
    pub async fn leases(&self) -> Result<Vec<Lease>, Error> {
        self.ask(|reply| Command::Leases { reply }).await
    }

    /// Records a model the inference pool loaded.
    pub async fn register(&self, entry: CachedModel) -> Result<(), Error> {
        self.ask(|reply| Command::Register { entry, reply }).await
    }

    /// Begins unloading an idle model (see [`ModelCache::begin_unload`](super::cache::ModelCache::begin_unload)):
    /// the inner result is the cache's answer (in use, being unloaded, not loaded), the outer one
    /// whether the manager answered at all.
    pub async fn begin_unload(&self, model: &str) -> Result<Result<CachedModel, CacheError>, Error> {
        let model = model.to_string();
        self.ask(|reply| Command::BeginUnload { model, reply }).await
    }

    /// Ends an unload begun with [`Handle::begin_unload`]: `done` forgets the model (the engine
    /// dropped its weights), otherwise it is usable again. Returns the record forgotten.
    pub async fn end_unload(&self, model: &str, done: bool) -> Result<Option<CachedModel>, Error> {
        let model = model.to_string();
        self.ask(|reply| Command::EndUnload { model, done, reply }).await
    }

    /// The record of `model` when it is loaded, as of the last acknowledged change.
    pub fn cached_model(&self, model: &str) -> Option<CachedModel> {
        self.state.borrow().cache.get(model).cloned()
    }

    /// The record of `model` once no unload of it is under way: at once when none is, else when the
    /// unload has ended (`None` when it dropped the model, the record when the engine refused).
    pub async fn settled_model(&self, model: &str) -> Result<Option<CachedModel>, Error> {
        let mut state = self.state.clone();
        loop {
            let entry = state.borrow_and_update().cache.get(model).cloned();
            match entry {
                Some(e) if e.unloading => state.changed().await.map_err(|_| stopped())?,
                other => return Ok(other),
            }
        }
    }

    /// Pins or unpins a loaded model.
    pub async fn pin(&self, model: &str, pinned: bool) -> Result<(), Error> {
        self.ask(|reply| Command::Pin { model: model.into(), pinned, reply }).await
    }

    /// Every cached model.
    pub async fn cached(&self) -> Result<Vec<CachedModel>, Error> {
        self.ask(|reply| Command::Cached { reply }).await
    }

    /// Models a cleanup may evict, least recently used first.
    pub async fn evictable(&self, force: bool) -> Result<Vec<CachedModel>, Error> {
        self.ask(|reply| Command::Evictable { force, reply }).await
    }

    /// Idle models to evict under pressure (max(2, n/3), or enough to free `needed` bytes).
    pub async fn pressure_victims(&self, needed: u64) -> Result<Vec<String>, Error> {
        self.ask(|reply| Command::PressureVictims { needed, reply }).await
    }

    /// Releases expired leases now (or, with `dry_run`, lists them) and returns them.
    pub async fn expire_now(&self, dry_run: bool) -> Result<Vec<Lease>, Error> {
        self.ask(|reply| Command::ExpireNow { dry_run, reply }).await
    }
}

/// Starts the manager.
pub fn spawn(settings: ManagerSettings, monitor: monitor::Handle, shutdown: CancellationToken) -> Handle {
    let (tx, rx) = mpsc::channel(256);
    let (state_tx, state) = watch::channel(Arc::default());
    tokio::spawn(Actor::new(monitor.clone(), state_tx, settings.token_share).run(rx, shutdown));
    let journal = Journal::default();
    Handle {
        commands: tx,
        settings: Arc::new(settings),
        lookups: Arc::default(),
        sizings: Arc::default(),
        disk: Arc::new(Semaphore::new(DISK_READS)),
        state,
        monitor,
        journal,
    }
}

/// Reads of the model roots (listings, checkpoint headers) that run at once: a flood of
/// `ListModels` or `ValidateModel` queues behind them instead of filling the blocking pool.
const DISK_READS: usize = 4;

/// When a lease was made, as wall-clock time (the ledger keeps monotonic instants).
pub fn wall_clock(at: Instant) -> SystemTime {
    let (now, wall) = (Instant::now(), SystemTime::now());
    if at >= now {
        wall + (at - now)
    } else {
        wall - (now - at)
    }
}
