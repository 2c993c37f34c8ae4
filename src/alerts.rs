//! Alert rules with hysteresis and a minimum duration, as a pure engine fed one snapshot at a time.
//!
//! Rules: host memory %, GPU memory % and temperature per device, server RSS against a budget, and a
//! leak rule on the least-squares slope of RSS over the history window. A rule moves to a new
//! severity only after `min_samples` consecutive samples ask for it, escalates at its threshold and
//! clears only below threshold − hysteresis, so a noisy metric never flaps. Stale sources and
//! absent sensors are skipped: no alert is raised or resolved on data that was not read.
//!
//! This module holds the types the rest of the server sees; `rule` says what each rule watches and
//! tells a human, `engine` decides the transitions, `log` keeps the bounded history and `trend` fits
//! the RSS slope the leak rule reads; `pressure` decides when memory pressure calls for a cleanup.

use std::time::{Duration, SystemTime};

mod engine;
mod log;
pub mod pressure;
mod rule;
mod trend;

pub use engine::AlertEngine;
pub use rule::Rule;

/// Alert severity (ordered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Informational.
    Info,
    /// Needs attention.
    Warning,
    /// Needs action now.
    Critical,
}

/// Thresholds and timing of the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertConfig {
    /// Host memory % for WARNING / CRITICAL (default 80 / 90).
    pub host_memory: [f64; 2],
    /// GPU memory % for WARNING / CRITICAL (default 80 / 90).
    pub gpu_memory: [f64; 2],
    /// GPU °C for WARNING / CRITICAL (default 85 / 95).
    pub gpu_temperature: [f64; 2],
    /// Server RSS budget in bytes; 0 = 75 % of the effective memory limit (default 0).
    pub rss_budget_bytes: u64,
    /// Leak rule: slope of RSS above this many MB per minute (default 10).
    pub leak_slope_mb_per_min: f64,
    /// Leak rule: the slope must hold this long (default 120 s).
    pub leak_sustain: Duration,
    /// Points below the threshold a rule must fall to clear (default 5).
    pub hysteresis: f64,
    /// Consecutive samples a change needs (default 2).
    pub min_samples: u32,
    /// Entries the alert log keeps (default 1000).
    pub log_capacity: usize,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            host_memory: [80.0, 90.0],
            gpu_memory: [80.0, 90.0],
            gpu_temperature: [85.0, 95.0],
            rss_budget_bytes: 0,
            leak_slope_mb_per_min: 10.0,
            leak_sustain: Duration::from_secs(120),
            hysteresis: 5.0,
            min_samples: 2,
            log_capacity: 1000,
        }
    }
}

/// One alert, active or resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Unique id (`alert-<n>`).
    pub id: String,
    /// The rule.
    pub rule: Rule,
    /// Its severity.
    pub severity: Severity,
    /// `host`, `process`, `gpu:0`, ...
    pub resource: String,
    /// The value that raised it.
    pub value: f64,
    /// The threshold crossed.
    pub threshold: f64,
    /// Unit of value and threshold.
    pub unit: &'static str,
    /// A sentence for humans.
    pub message: String,
    /// Concrete things to do.
    pub recommendations: Vec<String>,
    /// When it was raised.
    pub started_at: SystemTime,
    /// When it cleared.
    pub resolved_at: Option<SystemTime>,
}

impl Alert {
    /// Whether it has not cleared.
    pub fn is_active(&self) -> bool {
        self.resolved_at.is_none()
    }
}

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Already active when a watcher subscribed (replay).
    Active,
    /// Newly raised.
    Raised,
    /// Cleared.
    Resolved,
}

/// An alert transition.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    /// Raised, resolved or replayed.
    pub kind: EventKind,
    /// The alert after the transition.
    pub alert: Alert,
}

#[cfg(test)]
mod tests;
