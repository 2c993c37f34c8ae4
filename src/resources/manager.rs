//! The resource manager actor: owns the lease ledger and the model cache, expires leases, and
//! publishes what fit verdicts are decided from.
//!
//! Messages: allocate, release, list leases, and the cache's bookkeeping (register, use, pin,
//! evict). Every command that changes state republishes a [`FitState`] before it replies, so a
//! verdict (ValidateModel, admission, batch advice) reads one consistent view of reservations and
//! cache without queueing on the actor, and sees every change already acknowledged to anyone.
//! Requirements are looked up on the caller's side (they read a checkpoint header from disk, off the
//! actor and off the runtime), and the verdict's arithmetic and messages run on the caller's task.
//! The actor stops at shutdown or when every handle is gone.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::{
    cache::{CachedModel, ModelCache},
    duration::{check_duration, MaxDuration},
    ledger::{Capacity, Lease, LeaseRequest, Ledger},
    memo::{Memo, Recall},
    model_id,
    requirements::{self, DType, Registry, Requirements},
    validate::{self, Device, FitInput, Verdict},
};
use crate::{error::Error, monitor};

/// Settings of the manager.
#[derive(Debug, Clone)]
pub struct ManagerSettings {
    /// Fraction of free memory kept back from every plan (default 0.2).
    pub safety_margin: f64,
    /// Model roots.
    pub roots: Vec<PathBuf>,
    /// The requirements table.
    pub registry: Arc<Registry>,
    /// Longest lease a client may ask for (default 24 h).
    pub max_ttl: Duration,
}

/// What a fit question asks.
#[derive(Debug, Clone)]
pub struct FitQuestion {
    /// Model id.
    pub model: String,
    /// Batch size (0 = the model's default).
    pub batch: u32,
    /// Seconds of audio.
    pub duration_s: f64,
    /// Device.
    pub device: Device,
    /// Weight dtype.
    pub dtype: DType,
}

/// A verdict with what eviction could do about it.
#[derive(Debug, Clone)]
pub struct FitVerdict {
    /// The verdict.
    pub verdict: Verdict,
    /// Idle cached models on the same memory that eviction would free, least recently used first.
    pub eviction_candidates: Vec<CachedModel>,
    /// Whether evicting every candidate would make the model fit.
    pub eviction_would_suffice: bool,
}

/// A verdict with the requirements behind it.
#[derive(Debug, Clone)]
pub struct FitAnswer {
    /// What the model needs.
    pub requirements: Requirements,
    /// The batch the verdict is for.
    pub batch: u32,
    /// The verdict and eviction's options.
    pub fit: FitVerdict,
    /// The margin applied.
    pub margin: f64,
}

impl FitAnswer {
    /// The verdict.
    pub fn verdict(&self) -> &Verdict {
        &self.fit.verdict
    }
}

/// What verdicts are decided from, published by the actor after every command and expiry tick: a
/// verdict reads the latest one instead of queueing a message behind every other RPC's, and sees one
/// consistent state (the reservations and the cache as of one moment). The arithmetic and the
/// messages are done on the caller's task.
#[derive(Debug, Default)]
struct FitState {
    reserved_host: u64,
    /// GPU bytes held by leases, by index.
    reserved_gpu: std::collections::BTreeMap<u32, u64>,
    cache: ModelCache,
}

enum Command {
    Register { entry: CachedModel, reply: oneshot::Sender<()> },
    Unregister { model: String, reply: oneshot::Sender<Result<CachedModel, Error>> },
    BeginUse { model: String, reply: oneshot::Sender<Result<(), Error>> },
    EndUse { model: String },
    Pin { model: String, pinned: bool, reply: oneshot::Sender<()> },
    Cached { reply: oneshot::Sender<Vec<CachedModel>> },
    Evictable { force: bool, reply: oneshot::Sender<Vec<CachedModel>> },
    PressureVictims { needed: u64, reply: oneshot::Sender<Vec<String>> },
    ExpireNow { dry_run: bool, reply: oneshot::Sender<Vec<Lease>> },
    Allocate { request: LeaseRequest, reply: oneshot::Sender<Result<Lease, Error>> },
    Release { id: String, reply: oneshot::Sender<Result<Lease, Error>> },
    Leases { reply: oneshot::Sender<Vec<Lease>> },
}

/// A handle on the manager.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
    settings: Arc<ManagerSettings>,
    /// Recent lookups (see [`super::memo`]).
    lookups: Arc<Memo>,
    state: watch::Receiver<Arc<FitState>>,
    monitor: monitor::Handle,
}

fn stopped() -> Error {
    Error::Unavailable("the resource manager has stopped".into())
}

impl Handle {
    /// The settings.
    pub fn settings(&self) -> &ManagerSettings {
        &self.settings
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())
    }

    /// The requirements of a model for a batch and duration: measured, else from its checkpoint, else
    /// from the table. Reads at most a checkpoint header, on a blocking thread.
    pub async fn requirements(&self, q: &FitQuestion) -> Result<Requirements, Error> {
        let key = (q.model.clone(), q.dtype, q.batch, q.duration_s.to_bits());
        match self.lookups.recall(&key, Instant::now()) {
            Recall::Fresh(r) => return Ok(r),
            Recall::Stale { requirements, refresh } => {
                if refresh {
                    let (this, q) = (self.clone(), q.clone());
                    tokio::spawn(async move {
                        match this.look_up(q).await {
                            Ok(r) => this.lookups.remember(key, r, Instant::now()),
                            Err(_) => this.lookups.forget(&key),
                        }
                    });
                }
                return Ok(requirements);
            }
            Recall::Missing => {}
        }
        let found = self.look_up(q.clone()).await?;
        self.lookups.remember(key, found.clone(), Instant::now());
        Ok(found)
    }

    async fn look_up(&self, question: FitQuestion) -> Result<Requirements, Error> {
        let settings = self.settings.clone();
        tokio::task::spawn_blocking(move || lookup(&settings, &question))
            .await
            .map_err(|e| Error::Internal(format!("requirements lookup failed: {e}")))?
    }

    /// Whether a model fits, with the numbers.
    pub async fn fit(&self, q: FitQuestion) -> Result<FitAnswer, Error> {
        let requirements = self.requirements(&q).await?;
        check_duration(
            q.duration_s,
            MaxDuration::Model { model: &q.model, max_s: requirements.max_duration_s },
        )?;
        let batch = if q.batch == 0 { requirements.default_batch_size } else { q.batch };
        let state = self.state.borrow().clone();
        let snapshot = self.monitor.latest();
        let requirements = apply_measurement(state.cache.get(&q.model), requirements);
        let reserved_gpu: Vec<(u32, u64)> = snapshot
            .gpu
            .devices
            .iter()
            .map(|d| (d.index, state.reserved_gpu.get(&d.index).copied().unwrap_or(0)))
            .collect();
        let margin = self.settings.safety_margin;
        let input = FitInput {
            requirements: &requirements,
            batch,
            device: q.device,
            snapshot: &snapshot,
            reserved_host: state.reserved_host,
            reserved_gpu: &reserved_gpu,
            margin,
        };
        let evictable: Vec<CachedModel> =
            state.cache.evictable(Instant::now(), false).into_iter().cloned().collect();
        let fit = with_eviction(validate::verdict(&input)?, &evictable, margin);
        Ok(FitAnswer { requirements, batch, fit, margin })
    }

    /// Reserves memory for a client.
    pub async fn allocate(&self, request: LeaseRequest) -> Result<Lease, Error> {
        self.ask(|reply| Command::Allocate { request, reply }).await?
    }

    /// Gives a lease back.
    pub async fn release(&self, id: String) -> Result<Lease, Error> {
        self.ask(|reply| Command::Release { id, reply }).await?
    }

    /// Every live lease.
    pub async fn leases(&self) -> Result<Vec<Lease>, Error> {
        self.ask(|reply| Command::Leases { reply }).await
    }

    /// Reserves memory for the server's own work; the lease is released when the guard drops.
    pub async fn lease(&self, request: LeaseRequest) -> Result<LeaseGuard, Error> {
        let lease = self.allocate(request).await?;
        Ok(LeaseGuard { id: lease.id.as_str().to_string(), handle: self.clone(), lease })
    }

    /// Records a model the inference pool loaded.
    pub async fn register(&self, entry: CachedModel) -> Result<(), Error> {
        self.ask(|reply| Command::Register { entry, reply }).await
    }

    /// Forgets a model the pool unloaded; refused while in use.
    pub async fn unregister(&self, model: &str) -> Result<CachedModel, Error> {
        let model = model.to_string();
        self.ask(|reply| Command::Unregister { model, reply }).await?
    }

    /// Marks a model in use until the guard drops; it cannot be evicted meanwhile.
    pub async fn use_model(&self, model: &str) -> Result<ModelUse, Error> {
        let m = model.to_string();
        self.ask(|reply| Command::BeginUse { model: m, reply }).await??;
        Ok(ModelUse { model: model.to_string(), handle: self.clone() })
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
        self.handle.send_from_drop(Command::Release { id: std::mem::take(&mut self.id), reply });
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

fn lookup(settings: &ManagerSettings, q: &FitQuestion) -> Result<Requirements, Error> {
    model_id::validate(&q.model)?;
    match model_id::resolve(&q.model, &settings.roots) {
        Ok(found) => Ok(requirements::from_checkpoint(&found.dir, q.dtype, q.batch, q.duration_s)?),
        Err(e) => match settings.registry.table(&q.model) {
            Some(entry) => Ok(entry.requirements(q.dtype, q.duration_s)),
            None => Err(e.into()),
        },
    }
}

/// Starts the manager.
pub fn spawn(settings: ManagerSettings, monitor: monitor::Handle, shutdown: CancellationToken) -> Handle {
    let (tx, rx) = mpsc::channel(256);
    let settings = Arc::new(settings);
    let (state_tx, state) = watch::channel(Arc::default());
    let actor =
        Actor { ledger: Ledger::new(), cache: ModelCache::new(), monitor: monitor.clone(), state: state_tx };
    tokio::spawn(actor.run(rx, shutdown));
    Handle { commands: tx, settings, lookups: Arc::default(), state, monitor }
}

struct Actor {
    ledger: Ledger,
    cache: ModelCache,
    monitor: monitor::Handle,
    state: watch::Sender<Arc<FitState>>,
}

impl Actor {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, shutdown: CancellationToken) {
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
        match cmd {
            Command::Register { entry, reply } => {
                self.cache.insert(entry);
                self.publish_then(reply, ());
            }
            Command::Unregister { model, reply } => {
                let out = self.cache.remove(&model).map_err(Error::from);
                self.publish_then(reply, out);
            }
            Command::BeginUse { model, reply } => {
                let out = self.cache.begin_use(&model, Instant::now()).map_err(Error::from);
                self.publish_then(reply, out);
            }
            Command::EndUse { model } => {
                self.cache.end_use(&model, Instant::now());
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
                let _ =
                    reply.send(self.cache.evictable(Instant::now(), force).into_iter().cloned().collect());
            }
            Command::PressureVictims { needed, reply } => {
                let _ = reply.send(self.cache.pressure_victims(needed));
            }
            Command::ExpireNow { dry_run, reply } => {
                let now = Instant::now();
                let expired = if dry_run {
                    self.ledger.leases().filter(|l| l.is_expired(now)).cloned().collect()
                } else {
                    self.ledger.expire(now)
                };
                self.publish_then(reply, expired);
            }
            Command::Allocate { request, reply } => {
                let snapshot = self.monitor.latest();
                let capacity = Capacity {
                    host_available_bytes: snapshot.effective.available_bytes,
                    gpu_available_bytes: snapshot
                        .gpu
                        .devices
                        .iter()
                        .map(|d| (d.index, d.memory_free_bytes))
                        .collect(),
                };
                let out = self.ledger.reserve(request, &capacity, Instant::now()).map_err(Error::from);
                self.publish_then(reply, out);
            }
            Command::Release { id, reply } => {
                let out = self.ledger.release(&id).map_err(Error::from);
                self.publish_then(reply, out);
            }
            Command::Leases { reply } => {
                let _ = reply.send(self.ledger.leases().cloned().collect());
            }
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

/// Adds what evicting the idle models on the verdict's memory would do.
fn with_eviction(verdict: Verdict, evictable: &[CachedModel], margin: f64) -> FitVerdict {
    let same_memory = |e: &&CachedModel| match verdict.device {
        Device::Cuda(i) => e.device == Device::Cuda(i),
        _ => !matches!(e.device, Device::Cuda(_)),
    };
    let candidates: Vec<CachedModel> = evictable.iter().filter(same_memory).cloned().collect();
    let freed: u64 = candidates.iter().map(CachedModel::bytes).sum();
    let usable_freed = freed as f64 * (1.0 - margin);
    let would_suffice = !verdict.fits
        && !candidates.is_empty()
        && verdict.checks.iter().all(|c| c.ok || (c.unit == "bytes" && c.headroom + usable_freed >= 0.0));
    FitVerdict { verdict, eviction_candidates: candidates, eviction_would_suffice: would_suffice }
}

/// Replaces the estimated weight bytes by the size measured when the model was loaded (same dtype).
/// A measurement below half the estimate is taken for an artifact (pages reused from an earlier
/// load) and ignored, so validation never trusts a figure that is too good to be true.
fn apply_measurement(entry: Option<&CachedModel>, requirements: Requirements) -> Requirements {
    match entry {
        Some(e) if e.dtype == requirements.dtype => match e.measured_bytes {
            Some(m) if m >= requirements.weights_bytes / 2 => {
                let per_sample = requirements.per_sample_bytes;
                requirements.measured(m, per_sample)
            }
            _ => requirements,
        },
        _ => requirements,
    }
}

/// When a lease was made, as wall-clock time (the ledger keeps monotonic instants).
pub fn wall_clock(at: Instant) -> SystemTime {
    let (now, wall) = (Instant::now(), SystemTime::now());
    if at >= now {
        wall + (at - now)
    } else {
        wall - (now - at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::requirements::{DType, Registry, Source};

    fn entry(measured: Option<u64>, dtype: DType) -> CachedModel {
        CachedModel {
            model: "m".into(),
            device: Device::Cpu,
            dtype,
            estimated_bytes: 1000,
            measured_bytes: measured,
            loaded_at: SystemTime::now(),
            last_used: Instant::now(),
            in_flight: 0,
            pinned: false,
        }
    }

    #[test]
    fn a_measurement_replaces_the_estimate_unless_implausible() {
        let table = Registry::default();
        let r = table.table("facebook/musicgen-small").unwrap().requirements(DType::F32, 10.0);
        let w = r.weights_bytes;
        let measured = apply_measurement(Some(&entry(Some(w + 7), DType::F32)), r.clone());
        assert_eq!((measured.source, measured.weights_bytes), (Source::Measured, w + 7));
        assert_eq!(apply_measurement(Some(&entry(Some(w / 4), DType::F32)), r.clone()).source, r.source);
        assert_eq!(apply_measurement(Some(&entry(Some(w), DType::F16)), r.clone()).source, r.source);
        assert_eq!(apply_measurement(None, r.clone()).source, r.source);
    }
}
