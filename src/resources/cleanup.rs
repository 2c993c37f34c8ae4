//! Cleanup: release expired leases, evict idle models, return freed memory to the OS — each action's
//! effect measured by a fresh sample before and after it. Runs on demand (`Cleanup`) and automatically
//! when memory passes the cleanup threshold (at most once per cooldown).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

use super::{cache::CachedModel, manager, validate::Device};
use crate::{error::Error, monitor, monitor::snapshot::Snapshot};

/// Whoever owns the tensors: evicts a model when told.
#[tonic::async_trait]
pub trait Evictor: Send + Sync {
    /// Drops an idle model's tensors and its cache record; refused (FAILED_PRECONDITION) while in use.
    async fn evict(&self, model: &str) -> Result<CachedModel, Error>;
}

/// One thing a cleanup did (or would do).
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// `release_expired_lease`, `evict_model`, `empty_cuda_cache`, `malloc_trim`.
    pub kind: &'static str,
    /// A lease id, a model id or `process`.
    pub target: String,
    /// Host memory freed, measured (negative when usage grew meanwhile).
    pub host_freed: i64,
    /// GPU memory freed, measured.
    pub gpu_freed: i64,
    /// What the bookkeeping expected to free.
    pub estimated: u64,
    /// Details (why skipped, errors).
    pub detail: String,
}

/// What a cleanup did.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Whether nothing was done.
    pub dry_run: bool,
    /// Each action.
    pub actions: Vec<Action>,
    /// Host memory freed overall, measured.
    pub host_freed: i64,
    /// GPU memory freed overall, measured.
    pub gpu_freed: i64,
    /// How long it took.
    pub duration: Duration,
}

/// Host-side figure a cleanup is measured by: this process's RSS.
fn host(s: &Snapshot) -> i64 {
    s.process.rss_bytes as i64
}

fn gpu(s: &Snapshot) -> i64 {
    s.gpu.devices.iter().filter_map(|d| d.memory_used_bytes).map(|b| b as i64).sum()
}

/// Runs a cleanup: `force` also evicts recently used and pinned models (never ones in use);
/// `victims`, when given, replaces the usual candidates (pressure eviction).
pub async fn run(
    manager: &manager::Handle,
    monitor: &monitor::Handle,
    evictor: Option<&dyn Evictor>,
    force: bool,
    dry_run: bool,
    victims: Option<Vec<String>>,
) -> Result<Report, Error> {
    let start = Instant::now();
    let first = monitor.sample_now().await?;
    let mut actions = Vec::new();
    for lease in manager.expire_now(dry_run).await? {
        let bytes = lease.cpu_bytes + lease.gpu_bytes;
        let detail = format!("owner {}, expired", lease.owner);
        actions.push(Action {
            kind: "release_expired_lease",
            target: lease.id.as_str().into(),
            host_freed: 0,
            gpu_freed: 0,
            estimated: bytes,
            detail,
        });
    }
    let candidates: Vec<CachedModel> = match victims {
        Some(names) => manager.cached().await?.into_iter().filter(|m| names.contains(&m.model)).collect(),
        None => manager.evictable(force).await?,
    };
    for m in candidates {
        actions.push(evict(monitor, evictor, &m, dry_run).await?);
    }
    actions.push(Action {
        kind: "empty_cuda_cache",
        target: "cuda".into(),
        host_freed: 0,
        gpu_freed: 0,
        estimated: 0,
        detail: if first.gpu.devices.is_empty() {
            "skipped: no GPU".into()
        } else {
            "skipped: this build does not link libtorch's CUDA allocator API".into()
        },
    });
    actions.push(trim(monitor, dry_run).await?);
    let last = if dry_run { first.clone() } else { monitor.sample_now().await? };
    Ok(Report {
        dry_run,
        actions,
        host_freed: host(&first) - host(&last),
        gpu_freed: gpu(&first) - gpu(&last),
        duration: start.elapsed(),
    })
}

async fn evict(
    monitor: &monitor::Handle,
    evictor: Option<&dyn Evictor>,
    m: &CachedModel,
    dry_run: bool,
) -> Result<Action, Error> {
    let mut action = Action {
        kind: "evict_model",
        target: m.model.clone(),
        host_freed: 0,
        gpu_freed: 0,
        estimated: m.bytes(),
        detail: format!("idle on {}, {} in flight", m.device.name(), m.in_flight),
    };
    let Some(evictor) = evictor.filter(|_| !dry_run) else {
        return Ok(action);
    };
    let before = monitor.sample_now().await?;
    match evictor.evict(&m.model).await {
        Ok(_) => {
            let after = monitor.sample_now().await?;
            action.host_freed = host(&before) - host(&after);
            action.gpu_freed = gpu(&before) - gpu(&after);
        }
        Err(e) => action.detail = format!("not evicted: {e}"),
    }
    Ok(action)
}

/// Gives freed heap pages back to the OS (glibc keeps them otherwise).
async fn trim(monitor: &monitor::Handle, dry_run: bool) -> Result<Action, Error> {
    let mut action = Action {
        kind: "malloc_trim",
        target: "process".into(),
        host_freed: 0,
        gpu_freed: 0,
        estimated: 0,
        detail: String::new(),
    };
    if dry_run {
        return Ok(action);
    }
    let before = monitor.sample_now().await?;
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
    let after = monitor.sample_now().await?;
    action.host_freed = host(&before) - host(&after);
    Ok(action)
}

/// Automatic cleanup settings.
#[derive(Debug, Clone)]
pub struct AutoCleanup {
    /// Memory % (host or any GPU) that triggers it (default 85).
    pub threshold_percent: f64,
    /// Least time between two runs (default 30 s).
    pub cooldown: Duration,
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
        let mut on_device = None;
        let trigger = tokio::select! {
            () = shutdown.cancelled() => return,
            changed = snapshots.changed() => if changed.is_err() { return } else { "auto" },
            Some((device, what)) = emergency.recv() => {
                tracing::error!(%what, device = %device.name(), "out of memory reported; emergency cleanup");
                on_device = Some(device);
                "emergency"
            }
        };
        let s = snapshots.borrow_and_update().clone();
        let needed = if trigger == "emergency" {
            u64::MAX
        } else {
            let worst = s
                .gpu
                .devices
                .iter()
                .filter_map(|d| d.memory_used_percent())
                .fold(s.effective.used_percent(), f64::max);
            let cooling = last_run.is_some_and(|t| t.elapsed() < settings.cooldown);
            let stale = s.is_stale(crate::monitor::snapshot::Source::Host);
            if worst < settings.threshold_percent || cooling || stale {
                continue;
            }
            let target = s.effective.limit_bytes as f64 * settings.threshold_percent / 100.0;
            (s.effective.used_bytes as f64 - target).max(0.0) as u64
        };
        last_run = Some(tokio::time::Instant::now());
        let Ok(mut victims) = manager.pressure_victims(needed).await else { return };
        if let Some(device) = on_device {
            let Ok(cached) = manager.cached().await else { return };
            victims.retain(|v| cached.iter().any(|m| &m.model == v && m.device == device));
        }
        metrics::counter!("maestro_cleanups_total", "trigger" => trigger).increment(1);
        match run(&manager, &monitor, evictor.as_deref(), false, false, Some(victims)).await {
            Ok(r) => tracing::warn!(
                trigger,
                evicted = r.actions.iter().filter(|a| a.kind == "evict_model" && a.host_freed != 0).count(),
                host_freed = r.host_freed,
                "cleanup under memory pressure"
            ),
            Err(e) => tracing::error!(error = %e, "cleanup under memory pressure failed"),
        }
    }
}
