//! Alert rules with hysteresis and a minimum duration, as a pure engine fed one snapshot at a time.
//!
//! Rules: host memory %, GPU memory % and temperature per device, server RSS against a budget, and a
//! leak rule on the least-squares slope of RSS over the history window. A rule moves to a new
//! severity only after `min_samples` consecutive samples ask for it, escalates at its threshold and
//! clears only below threshold − hysteresis, so a noisy metric never flaps. Stale figures are
//! skipped: no alert is raised or resolved on data that was not read.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, SystemTime},
};

use crate::monitor::snapshot::{Snapshot, Source};

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

/// What an alert watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Effective host memory %.
    HostMemory,
    /// GPU memory % per device.
    GpuMemory,
    /// GPU temperature per device.
    GpuTemperature,
    /// Server RSS against the budget.
    ProcessRss,
    /// Server RSS rising steadily.
    MemoryLeak,
}

impl Rule {
    /// Wire name.
    pub fn name(self) -> &'static str {
        match self {
            Rule::HostMemory => "host_memory",
            Rule::GpuMemory => "gpu_memory",
            Rule::GpuTemperature => "gpu_temperature",
            Rule::ProcessRss => "process_rss",
            Rule::MemoryLeak => "memory_leak",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Rule::HostMemory | Rule::GpuMemory | Rule::ProcessRss => "percent",
            Rule::GpuTemperature => "celsius",
            Rule::MemoryLeak => "MB/min",
        }
    }

    fn recommendations(self) -> Vec<String> {
        let r: &[&str] = match self {
            Rule::HostMemory => &[
                "Evict idle models from the cache (ResourceService.Cleanup)",
                "Load models in f16 or bf16 to halve their weights",
                "Use a smaller variant (musicgen-small needs 3 GB of host memory)",
                "Reduce batch size or duration of generations",
            ],
            Rule::GpuMemory => &[
                "Empty libtorch's CUDA cache (ResourceService.Cleanup)",
                "Evict or offload idle models to the CPU",
                "Use f16 weights on the GPU",
                "Use a smaller variant or a smaller batch",
            ],
            Rule::GpuTemperature => &[
                "Check cooling and airflow of the card",
                "Reduce concurrent generations on this GPU",
                "Lower the power limit (nvidia-smi -pl)",
            ],
            Rule::ProcessRss => &[
                "Reduce the model cache (UnloadModel or Cleanup)",
                "Raise the RSS budget if this footprint is expected",
            ],
            Rule::MemoryLeak => &[
                "Run Cleanup and check whether RSS falls back",
                "Compare process_rss_bytes in GetHistory before and after traffic",
                "Restart the server in a quiet period if growth continues",
            ],
        };
        r.iter().map(|s| s.to_string()).collect()
    }
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

#[derive(Debug, Default)]
struct Tracker {
    /// The active alert's severity and id.
    active: Option<(Severity, String)>,
    /// A change waiting for enough consecutive samples.
    pending: Option<(Option<Severity>, u32)>,
}

/// The rules engine and its bounded log.
#[derive(Debug)]
pub struct AlertEngine {
    config: AlertConfig,
    trackers: HashMap<(Rule, String), Tracker>,
    log: VecDeque<Alert>,
    next_id: u64,
    leak_since: Option<SystemTime>,
}

impl AlertEngine {
    /// An engine with no alert.
    pub fn new(config: AlertConfig) -> Self {
        Self { config, trackers: HashMap::new(), log: VecDeque::new(), next_id: 1, leak_since: None }
    }

    /// Feeds one snapshot (`history` = the samples of the leak window, oldest first, this one last).
    pub fn evaluate(&mut self, s: &Snapshot, history: &[Arc<Snapshot>]) -> Vec<AlertEvent> {
        let now = s.sampled_at.unwrap_or_else(SystemTime::now);
        let mut events = Vec::new();
        let c = self.config.clone();
        if !s.is_stale(Source::Host) && !s.is_stale(Source::Container) {
            let v = s.effective.used_percent();
            events.extend(self.observe(Rule::HostMemory, "host", v, &thresholds(c.host_memory), now));
        }
        if !s.is_stale(Source::Gpu) {
            for d in &s.gpu.devices {
                let resource = format!("gpu:{}", d.index);
                let mem = d.memory_used_percent();
                events.extend(self.observe(Rule::GpuMemory, &resource, mem, &thresholds(c.gpu_memory), now));
                let t = d.temperature_celsius;
                events.extend(self.observe(
                    Rule::GpuTemperature,
                    &resource,
                    t,
                    &thresholds(c.gpu_temperature),
                    now,
                ));
            }
        }
        if !s.is_stale(Source::Process) {
            let budget = match c.rss_budget_bytes {
                0 => s.effective.limit_bytes * 3 / 4,
                b => b,
            };
            if budget > 0 {
                let v = s.process.rss_bytes as f64 * 100.0 / budget as f64;
                events.extend(self.observe(
                    Rule::ProcessRss,
                    "process",
                    v,
                    &[(Severity::Warning, 100.0)],
                    now,
                ));
            }
            let slope = self.sustained_leak_slope(history, now);
            let threshold = c.leak_slope_mb_per_min;
            events.extend(self.observe(
                Rule::MemoryLeak,
                "process",
                slope,
                &[(Severity::Warning, threshold)],
                now,
            ));
        }
        events
    }

    /// The RSS slope in MB/min when it has stayed above the threshold for the sustain time, else 0.
    fn sustained_leak_slope(&mut self, history: &[Arc<Snapshot>], now: SystemTime) -> f64 {
        let steady =
            rss_trend(history).filter(|t| t.slope > self.config.leak_slope_mb_per_min && t.r2 >= 0.9);
        match steady {
            None => {
                self.leak_since = None;
                0.0
            }
            Some(t) => {
                let since = *self.leak_since.get_or_insert(now);
                let held = now.duration_since(since).unwrap_or_default();
                if held >= self.config.leak_sustain {
                    t.slope
                } else {
                    0.0
                }
            }
        }
    }

    /// Feeds one value of one rule and resource; returns the transitions it causes.
    fn observe(
        &mut self,
        rule: Rule,
        resource: &str,
        value: f64,
        levels: &[(Severity, f64)],
        now: SystemTime,
    ) -> Vec<AlertEvent> {
        if !value.is_finite() {
            return Vec::new();
        }
        let hysteresis = if rule == Rule::MemoryLeak { levels[0].1 / 2.0 } else { self.config.hysteresis };
        let min_samples = self.config.min_samples.max(1);
        let tracker = self.trackers.entry((rule, resource.to_string())).or_default();
        let current = tracker.active.as_ref().map(|(s, _)| *s);
        let target = target_severity(current, value, levels, hysteresis);
        if target == current {
            tracker.pending = None;
            return Vec::new();
        }
        let count = match tracker.pending {
            Some((t, n)) if t == target => n + 1,
            _ => 1,
        };
        if count < min_samples {
            tracker.pending = Some((target, count));
            return Vec::new();
        }
        tracker.pending = None;
        let previous = tracker.active.take();
        let mut events = Vec::new();
        if let Some((_, id)) = previous {
            events.extend(self.resolve(&id, now));
        }
        if let Some(severity) = target {
            let threshold = levels.iter().find(|(s, _)| *s == severity).map_or(0.0, |(_, t)| *t);
            let alert = self.raise(rule, resource, severity, value, threshold, now);
            self.trackers.get_mut(&(rule, resource.to_string())).expect("tracker exists").active =
                Some((severity, alert.id.clone()));
            events.push(AlertEvent { kind: EventKind::Raised, alert });
        }
        events
    }

    fn raise(
        &mut self,
        rule: Rule,
        resource: &str,
        severity: Severity,
        value: f64,
        threshold: f64,
        now: SystemTime,
    ) -> Alert {
        let id = format!("alert-{}", self.next_id);
        self.next_id += 1;
        let message = match rule {
            Rule::HostMemory => format!("host memory at {value:.1} % (threshold {threshold} %)"),
            Rule::GpuMemory => format!("{resource} memory at {value:.1} % (threshold {threshold} %)"),
            Rule::GpuTemperature => format!("{resource} at {value:.0} °C (threshold {threshold} °C)"),
            Rule::ProcessRss => format!("server RSS at {value:.0} % of its budget"),
            Rule::MemoryLeak => {
                format!("possible memory leak: server RSS rising {value:.1} MB/min (threshold {threshold} MB/min)")
            }
        };
        let alert = Alert {
            id,
            rule,
            severity,
            resource: resource.to_string(),
            value,
            threshold,
            unit: rule.unit(),
            message,
            recommendations: rule.recommendations(),
            started_at: now,
            resolved_at: None,
        };
        if self.log.len() >= self.config.log_capacity.max(1) {
            // Drop the oldest resolved entry; active alerts stay listed.
            let pos = self.log.iter().position(|a| !a.is_active()).unwrap_or(0);
            self.log.remove(pos);
        }
        self.log.push_back(alert.clone());
        alert
    }

    fn resolve(&mut self, id: &str, now: SystemTime) -> Option<AlertEvent> {
        let alert = self.log.iter_mut().find(|a| a.id == id)?;
        alert.resolved_at = Some(now);
        Some(AlertEvent { kind: EventKind::Resolved, alert: alert.clone() })
    }

    /// Alerts not yet resolved, oldest first.
    pub fn active(&self) -> Vec<Alert> {
        self.log.iter().filter(|a| a.is_active()).cloned().collect()
    }

    /// The log, newest first, filtered; `limit` 0 = all.
    pub fn list(&self, min_severity: Severity, active_only: bool, limit: usize) -> Vec<Alert> {
        let limit = if limit == 0 { usize::MAX } else { limit };
        self.log
            .iter()
            .rev()
            .filter(|a| a.severity >= min_severity && (!active_only || a.is_active()))
            .take(limit)
            .cloned()
            .collect()
    }
}

fn thresholds(t: [f64; 2]) -> [(Severity, f64); 2] {
    [(Severity::Warning, t[0]), (Severity::Critical, t[1])]
}

/// The severity a value asks for: escalate at a threshold, fall back only below threshold − hysteresis.
fn target_severity(
    current: Option<Severity>,
    value: f64,
    levels: &[(Severity, f64)],
    hysteresis: f64,
) -> Option<Severity> {
    let up = levels.iter().filter(|(_, t)| value >= *t).map(|(s, _)| *s).max();
    if up > current {
        return up;
    }
    levels.iter().filter(|(s, t)| Some(*s) <= current && value >= *t - hysteresis).map(|(s, _)| *s).max()
}

/// Least-squares fit of RSS (MB) against time (minutes).
#[derive(Debug, Clone, Copy)]
struct Trend {
    slope: f64,
    r2: f64,
}

fn rss_trend(history: &[Arc<Snapshot>]) -> Option<Trend> {
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

#[cfg(test)]
mod tests;
