//! The leak rule's input: a least-squares fit of the server's RSS over the history window.

use std::sync::Arc;

use crate::monitor::snapshot::{Snapshot, Source};

/// Least-squares fit of RSS (MB) against time (minutes).
#[derive(Debug, Clone, Copy)]
pub(super) struct Trend {
    /// MB per minute.
    pub(super) slope: f64,
    /// Coefficient of determination (1 = a straight line).
    pub(super) r2: f64,
}

/// The fit over the samples whose process figures were read; `None` below three of them or when
/// time or RSS does not vary.
pub(super) fn rss_trend(history: &[Arc<Snapshot>]) -> Option<Trend> {
    let t0 = history.first()?.sampled_at?;
    let points: Vec<(f64, f64)> = history
        .iter()
        .filter(|s| !s.is_stale(Source::Process))
        .filter_map(|s| {
            let t = s.sampled_at?.duration_since(t0).ok()?.as_secs_f64() / 60.0;
            Some((t, s.process.rss_bytes as f64 / 1e6))
        })
        .collect();
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    Some(Trend { slope: sxy / sxx, r2: sxy * sxy / (sxx * syy) })
}
