//! The whole picture behind `GetReport`, and the advice behind `GetOptimizationSuggestions`: the
//! latest sample, statistics over a recent window, leases, cached models, active alerts and
//! suggestions, gathered from the monitor and the manager. Suggestions compare against the configured
//! thresholds (the health WARNING levels, `--suggest-evict-idle-s`) and size f16 advice from each f32
//! model's requirements, worked out by the one memory model.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    cache::CachedModel,
    journal::{Eviction, QueuedGeneration, RecentGeneration},
    ledger::Lease,
    manager, optimizer,
};
use crate::{
    alerts::{Alert, Severity},
    error::Error,
    monitor::{self, history::MetricStats, snapshot::Snapshot},
};

/// The longest window a report's statistics cover (less when the history is shorter).
pub const REPORT_WINDOW: Duration = Duration::from_secs(300);

/// Everything a report shows.
#[derive(Debug, Clone)]
pub struct Report {
    /// The latest sample.
    pub snapshot: Arc<Snapshot>,
    /// The window the statistics cover.
    pub window: Duration,
    /// Per-metric statistics over the window.
    pub window_stats: Vec<MetricStats>,
    /// Live leases.
    pub leases: Vec<Lease>,
    /// What the leases hold on each device.
    pub reservations: Vec<Reservation>,
    /// Cached models.
    pub cached: Vec<CachedModel>,
    /// Alerts active now, at every severity.
    pub active_alerts: Vec<Alert>,
    /// Advice for the latest sample.
    pub suggestions: Vec<optimizer::Suggestion>,
    /// Generations admitted and not ended, in admission order.
    pub queue: Vec<QueuedGeneration>,
    /// The last generations that ended, newest first.
    pub recent: Vec<RecentGeneration>,
    /// The last evictions, newest first.
    pub evictions: Vec<Eviction>,
    /// The health and alert thresholds in force.
    pub thresholds: Vec<Threshold>,
}

/// A threshold in force: what crossing `value` (in `unit`) of `metric` raises.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The metric it applies to.
    pub metric: &'static str,
    /// The alert severity or health level it raises.
    pub kind: &'static str,
    /// The value.
    pub value: f64,
    /// Its unit.
    pub unit: &'static str,
}

/// The thresholds of `settings`: alert rules first, then health levels.
pub fn thresholds(settings: &monitor::MonitorSettings) -> Vec<Threshold> {
    let (a, h) = (&settings.alerts, &settings.health);
    let t = |metric, kind, value, unit| Threshold { metric, kind, value, unit };
    let mut all = Vec::new();
    for (metric, unit, [warning, critical]) in [
        ("host_memory_percent", "%", a.host_memory),
        ("gpu_memory_percent", "%", a.gpu_memory),
        ("gpu_temperature_celsius", "celsius", a.gpu_temperature),
    ] {
        all.push(t(metric, "alert_warning", warning, unit));
        all.push(t(metric, "alert_critical", critical, unit));
    }
    if a.rss_budget_bytes > 0 {
        all.push(t("rss_bytes", "alert_warning", a.rss_budget_bytes as f64, "bytes"));
    }
    all.push(t("rss_slope_mb_per_min", "alert_warning", a.leak_slope_mb_per_min, "MB/min"));
    all.push(t("memory_percent", "health_moderate", h.moderate_percent, "%"));
    all.push(t("memory_percent", "health_warning", h.warning_percent, "%"));
    all.push(t("memory_percent", "health_critical", h.critical_percent, "%"));
    all.push(t("gpu_temperature_celsius", "health_warning", h.gpu_temp_warning_c, "celsius"));
    all.push(t("gpu_temperature_celsius", "health_critical", h.gpu_temp_critical_c, "celsius"));
    all
}

/// Gathers a report now.
pub async fn report(manager: &manager::Handle, monitor: &monitor::Handle) -> Result<Report, Error> {
    let snapshot = monitor.latest();
    let window = monitor.settings().history.min(REPORT_WINDOW);
    let samples = monitor.history(window).await?;
    let cached = manager.cached().await?;
    let suggestions = suggest(manager, monitor, &snapshot, &cached).await;
    let leases = manager.leases().await?;
    let journal = manager.journal();
    Ok(Report {
        queue: journal.queue(),
        recent: journal.recent(),
        evictions: journal.evictions(),
        thresholds: thresholds(monitor.settings()),
        window,
        window_stats: monitor::history::window_stats(&samples),
        reservations: reservations(&leases, &snapshot),
        leases,
        active_alerts: monitor.alerts(Severity::Info, true, 0).await?,
        snapshot,
        cached,
        suggestions,
    })
}

/// What leases hold on one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// `cpu` (host memory) or `cuda:N`.
    pub device: String,
    /// Bytes reserved there.
    pub reserved_bytes: u64,
    /// Leases reserving something there.
    pub leases: u32,
}

/// What `leases` hold on the host and on each GPU: every GPU the snapshot lists (nothing reserved
/// included), then any other index a lease names, by index.
pub fn reservations(leases: &[Lease], snapshot: &Snapshot) -> Vec<Reservation> {
    let on = |device: String, held: &dyn Fn(&Lease) -> u64| Reservation {
        device,
        reserved_bytes: leases.iter().map(held).sum(),
        leases: leases.iter().filter(|l| held(l) > 0).count() as u32,
    };
    let mut gpus: Vec<u32> = snapshot.gpu.devices.iter().map(|d| d.index).collect();
    gpus.extend(leases.iter().filter_map(|l| l.gpu_index));
    gpus.sort_unstable();
    gpus.dedup();
    let mut all = vec![on("cpu".into(), &|l: &Lease| l.cpu_bytes)];
    for i in gpus {
        let held = move |l: &Lease| if l.gpu_index == Some(i) { l.gpu_bytes } else { 0 };
        all.push(on(format!("cuda:{i}"), &held));
    }
    all
}

/// Advice for `snapshot` given what is cached now.
pub async fn suggestions(
    manager: &manager::Handle,
    monitor: &monitor::Handle,
    snapshot: &Snapshot,
) -> Result<Vec<optimizer::Suggestion>, Error> {
    Ok(suggest(manager, monitor, snapshot, &manager.cached().await?).await)
}

async fn suggest(
    manager: &manager::Handle,
    monitor: &monitor::Handle,
    snapshot: &Snapshot,
    cached: &[CachedModel],
) -> Vec<optimizer::Suggestion> {
    let health = &monitor.settings().health;
    let thresholds = optimizer::Thresholds {
        pressure_percent: health.warning_percent,
        hot_gpu_celsius: health.gpu_temp_warning_c,
        evict_idle_after: manager.settings().suggest_evict_idle,
    };
    let savings = manager.half_precision_savings(cached).await.into_iter().collect();
    optimizer::suggest(snapshot, cached, &savings, &thresholds, Instant::now())
}
