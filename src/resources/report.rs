//! The whole picture behind `GetReport`, and the advice behind `GetOptimizationSuggestions`: the
//! latest sample, statistics over a recent window, leases, cached models, active alerts and
//! suggestions, gathered from the monitor and the manager. Suggestions compare against the configured
//! thresholds (the health WARNING levels, `--suggest-evict-idle-s`) and size f16 advice from each f32
//! model's checkpoint header, read on a blocking thread.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{cache::CachedModel, ledger::Lease, manager, model_id, optimizer, requirements::DType};
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
    /// Cached models.
    pub cached: Vec<CachedModel>,
    /// Alerts active now, at every severity.
    pub active_alerts: Vec<Alert>,
    /// Advice for the latest sample.
    pub suggestions: Vec<optimizer::Suggestion>,
}

/// Gathers a report now.
pub async fn report(manager: &manager::Handle, monitor: &monitor::Handle) -> Result<Report, Error> {
    let snapshot = monitor.latest();
    let window = monitor.settings().history.min(REPORT_WINDOW);
    let samples = monitor.history(window).await?;
    let cached = manager.cached().await?;
    let suggestions = suggest(manager, monitor, &snapshot, &cached).await;
    Ok(Report {
        window,
        window_stats: monitor::history::window_stats(&samples),
        leases: manager.leases().await?,
        active_alerts: monitor.alerts(Severity::Info, true, 0).await?,
        snapshot,
        cached,
        suggestions,
    })
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
    let decoders = decoder_sizes(manager, cached).await;
    optimizer::suggest(snapshot, cached, &decoders, &thresholds, Instant::now())
}

/// The decoder's weight bytes of every f32 cached model whose checkpoint header reads; a model whose
/// header does not is left out (and gets no f16 advice).
async fn decoder_sizes(manager: &manager::Handle, cached: &[CachedModel]) -> BTreeMap<String, u64> {
    let roots = manager.settings().roots.clone();
    let models: Vec<String> =
        cached.iter().filter(|m| m.dtype == DType::F32).map(|m| m.model.clone()).collect();
    let read = move || {
        let size = |model: &str| -> Result<u64, String> {
            let found = model_id::resolve(model, &roots).map_err(|e| e.to_string())?;
            optimizer::decoder_weights_bytes(&found.dir).map_err(|e| e.to_string())
        };
        let sized = models.into_iter().filter_map(|model| match size(&model) {
            Ok(bytes) => Some((model, bytes)),
            Err(error) => {
                tracing::debug!(%model, %error, "no decoder size for f16 advice");
                None
            }
        });
        sized.collect()
    };
    tokio::task::spawn_blocking(read).await.unwrap_or_default()
}
