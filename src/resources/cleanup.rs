//! Cleanup: release expired leases, evict idle models, return freed memory to the OS. Runs on demand
//! (`Cleanup`) and automatically when memory passes the cleanup threshold (at most once per cooldown).
//!
//! Each action reports what it freed by its own account: a released lease the bytes it held, an
//! eviction the bytes the evicted cache entry accounted (measured at load, else estimated), and
//! `malloc_trim` the drop in this process's RSS around it. Only the trim and the run as a whole are
//! measured, with [`monitor::Handle::measure`]: a read that enters neither the history nor the alert
//! engine, so a cleanup never adds off-schedule samples (which would shrink `GetHistory`'s window and
//! count towards an alert's minimum samples).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

use super::{cache::CachedModel, device::Device, ledger::Lease, manager};
pub use crate::alerts::pressure::{ActionKind, AutoCleanup, Trigger};
use crate::{alerts::pressure, error::Error, monitor, monitor::sampler::Reading};

/// Whoever owns the tensors: evicts a model when told.
#[tonic::async_trait]
pub trait Evictor: Send + Sync {
    /// Drops an idle model's tensors and its cache record; refused (FAILED_PRECONDITION) while in use.
    async fn evict(&self, model: &str) -> Result<CachedModel, Error>;

    /// Empties libtorch's CUDA cache and returns the bytes it gave back to the driver, measured from
    /// the allocator (reserved before less reserved after); in a dry run, the bytes it would give back
    /// (reserved less allocated). `Err` says why it declined (no allocator shim, CUDA unused so far).
    async fn empty_cuda_cache(&self, _dry_run: bool) -> Result<u64, String> {
        Err("this build does not read libtorch's CUDA allocator".into())
    }
}

/// One thing a cleanup did (or would do).
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// What was done.
    pub kind: ActionKind,
    /// A lease id, a model id or `process`.
    pub target: String,
    /// Host memory freed: a lease's or cache entry's bytes, or the RSS drop measured around the
    /// trim (negative when usage grew meanwhile); 0 in a dry run.
    pub host_freed: i64,
    /// GPU memory freed, likewise.
    pub gpu_freed: i64,
    /// What the bookkeeping expected to free (a cache entry's estimate).
    pub estimated: u64,
    /// Details (why skipped, errors).
    pub detail: String,
}

impl Action {
    fn new(kind: ActionKind, target: impl Into<String>, estimated: u64, detail: String) -> Self {
        Self { kind, target: target.into(), host_freed: 0, gpu_freed: 0, estimated, detail }
    }
}

/// What a cleanup did.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Whether nothing was done.
    pub dry_run: bool,
    /// Each action.
    pub actions: Vec<Action>,
    /// Drop in this process's RSS from before the first action to after the last, measured.
    pub host_freed: i64,
    /// Drop in GPU memory used (every device) over the same span, measured.
    pub gpu_freed: i64,
    /// How long it took.
    pub duration: Duration,
}

/// The figures a cleanup is measured by: this process's RSS and the GPUs' used memory, each absent
/// when its source could not be read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Footprint {
    host: Option<i64>,
    gpu: Option<i64>,
}

impl Footprint {
    pub(crate) fn of(r: &Reading) -> Self {
        Self {
            host: r.process.as_ref().ok().map(|p| p.rss_bytes as i64),
            gpu: r
                .gpu
                .as_ref()
                .ok()
                .map(|g| g.devices.iter().filter_map(|d| d.memory_used_bytes).map(|b| b as i64).sum()),
        }
    }

    async fn measure(monitor: &monitor::Handle) -> Result<Self, Error> {
        Ok(Self::of(&monitor.measure().await?))
    }

    /// `(host, gpu)` freed from `self` to `after`; 0 where either reading lacks the figure.
    pub(crate) fn freed_until(&self, after: &Footprint) -> (i64, i64) {
        let drop = |a: Option<i64>, b: Option<i64>| a.zip(b).map_or(0, |(a, b)| a - b);
        (drop(self.host, after.host), drop(self.gpu, after.gpu))
    }
}

/// Runs a cleanup: `force` also evicts recently used and pinned models (never ones in use);
/// `victims`, when given, replaces the usual candidates (pressure eviction). Each model evicted goes
/// into the journal with `reason`.
pub async fn run(
    manager: &manager::Handle,
    monitor: &monitor::Handle,
    evictor: Option<&dyn Evictor>,
    (force, dry_run): (bool, bool),
    victims: Option<Vec<String>>,
    reason: &str,
) -> Result<Report, Error> {
    let start = Instant::now();
    let first = if dry_run { None } else { Some(Footprint::measure(monitor).await?) };
    let expired = manager.expire_now(dry_run).await?;
    let mut actions: Vec<Action> = expired.iter().map(|lease| released(lease, dry_run)).collect();
    let candidates: Vec<CachedModel> = match victims {
        Some(names) => manager.cached().await?.into_iter().filter(|m| names.contains(&m.model)).collect(),
        None => manager.evictable(force).await?,
    };
    for m in candidates {
        let outcome = match evictor.filter(|_| !dry_run) {
            Some(evictor) => Some(evictor.evict(&m.model).await),
            None => None,
        };
        if let Some(Ok(entry)) = &outcome {
            manager.journal().evicted(&entry.model, entry.device, entry.bytes(), reason);
        }
        actions.push(evicted(&m, outcome));
    }
    actions.push(empty_cuda_cache(monitor, evictor, dry_run).await);
    actions.push(trim(monitor, dry_run).await?);
    let (host_freed, gpu_freed) = match first {
        Some(first) => first.freed_until(&Footprint::measure(monitor).await?),
        None => (0, 0),
    };
    Ok(Report { dry_run, actions, host_freed, gpu_freed, duration: start.elapsed() })
}

/// libtorch's CUDA cache emptied through the evictor (which owns libtorch), its bytes measured by the
/// allocator; skipped, with the reason, on a host without GPUs or where the allocator declines.
async fn empty_cuda_cache(monitor: &monitor::Handle, evictor: Option<&dyn Evictor>, dry_run: bool) -> Action {
    let mut action = Action::new(ActionKind::EmptyCudaCache, "cuda", 0, String::new());
    if monitor.latest().gpu.devices.is_empty() {
        action.detail = "skipped: no GPU".into();
        return action;
    }
    let Some(evictor) = evictor else {
        action.detail = "skipped: this build has no libtorch".into();
        return action;
    };
    match evictor.empty_cuda_cache(dry_run).await {
        Ok(bytes) if dry_run => {
            action.estimated = bytes;
            action.detail = "dry run: the allocator's cached blocks (reserved less allocated)".into();
        }
        Ok(bytes) => {
            action.estimated = bytes;
            action.gpu_freed = i64::try_from(bytes).unwrap_or(i64::MAX);
            action.detail = "measured by libtorch's allocator (reserved before less after)".into();
        }
        Err(why) => action.detail = format!("skipped: {why}"),
    }
    action
}

/// A lease released for having expired frees the bytes it held (nothing in a dry run).
pub(crate) fn released(lease: &Lease, dry_run: bool) -> Action {
    let detail = format!("owner {}, expired", lease.owner);
    let held = lease.cpu_bytes + lease.gpu_bytes;
    let mut action = Action::new(ActionKind::ReleaseExpiredLease, lease.id.as_str(), held, detail);
    if !dry_run {
        action.host_freed = lease.cpu_bytes as i64;
        action.gpu_freed = lease.gpu_bytes as i64;
    }
    action
}

/// An eviction of candidate `m`: `outcome` is the evictor's answer (`None`: a dry run, or no
/// evictor). Evicted, it frees the bytes the cache entry it removed accounted, on that entry's device.
pub(crate) fn evicted(m: &CachedModel, outcome: Option<Result<CachedModel, Error>>) -> Action {
    let detail = format!("idle on {}, {} in flight", m.device.name(), m.in_flight);
    let mut action = Action::new(ActionKind::EvictModel, m.model.as_str(), m.estimated_bytes, detail);
    match outcome {
        Some(Ok(entry)) => {
            let bytes = entry.bytes() as i64;
            match entry.device {
                Device::Cuda(_) => action.gpu_freed = bytes,
                Device::Cpu => action.host_freed = bytes,
            }
        }
        Some(Err(e)) => action.detail = format!("not evicted: {e}"),
        None => {}
    }
    action
}

/// Gives freed heap pages back to the OS (glibc keeps them otherwise), measuring the RSS drop.
async fn trim(monitor: &monitor::Handle, dry_run: bool) -> Result<Action, Error> {
    let mut action = Action::new(ActionKind::MallocTrim, "process", 0, String::new());
    if dry_run {
        return Ok(action);
    }
    let before = Footprint::measure(monitor).await?;
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks glibc's own heap metadata.
        let released = unsafe { libc::malloc_trim(0) };
        action.detail =
            if released == 1 { "memory returned to the OS".into() } else { "nothing to return".into() };
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        action.detail = "skipped: not glibc".into();
    }
    let after = Footprint::measure(monitor).await?;
    if before.host.is_none() || after.host.is_none() {
        action.detail.push_str("; RSS not read, nothing measured");
    }
    action.host_freed = before.freed_until(&after).0;
    Ok(action)
}

/// Watches snapshots and runs a pressure cleanup when memory passes the threshold, at most once per
/// cooldown; runs an emergency cleanup at once when a request reports an out-of-memory error on a
/// device (the `emergency` channel), evicting idle models on that device only. Stops at shutdown.
pub async fn watch(
    settings: AutoCleanup,
    manager: manager::Handle,
    monitor: monitor::Handle,
    evictor: Option<Arc<dyn Evictor>>,
    mut emergency: tokio::sync::mpsc::Receiver<(Device, String)>,
    shutdown: CancellationToken,
) {
    let mut snapshots = monitor.subscribe();
    let mut last_run: Option<tokio::time::Instant> = None;
    loop {
        let decision = tokio::select! {
            () = shutdown.cancelled() => return,
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return;
                }
                let since_last = last_run.map(|t| t.elapsed());
                match pressure::on_snapshot(&settings, &snapshots.borrow_and_update(), since_last) {
                    Some(decision) => decision,
                    None => continue,
                }
            }
            Some((device, what)) = emergency.recv() => {
                tracing::error!(%what, device = %device.name(), "out of memory reported; emergency cleanup");
                pressure::emergency(device)
            }
        };
        last_run = Some(tokio::time::Instant::now());
        let Ok(mut victims) = manager.pressure_victims(decision.needed).await else { return };
        if let Some(device) = decision.device {
            let Ok(cached) = manager.cached().await else { return };
            victims.retain(|v| cached.iter().any(|m| &m.model == v && m.device == device));
        }
        let trigger = decision.trigger.name();
        metrics::counter!("maestro_cleanups_total", "trigger" => trigger).increment(1);
        let reason = &decision.reason;
        match run(&manager, &monitor, evictor.as_deref(), (false, false), Some(victims), reason).await {
            Ok(r) => tracing::warn!(
                trigger,
                evicted = r
                    .actions
                    .iter()
                    .filter(|a| a.kind == ActionKind::EvictModel && (a.host_freed, a.gpu_freed) != (0, 0))
                    .count(),
                host_freed = r.host_freed,
                "cleanup under memory pressure"
            ),
            Err(e) => tracing::error!(error = %e, "cleanup under memory pressure failed"),
        }
    }
}

#[cfg(test)]
#[path = "tests/cleanup.rs"]
mod tests;
