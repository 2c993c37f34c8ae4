//! The rules engine: feeds each figure of a snapshot to its rule's tracker and turns the trackers'
//! settled changes into raised and resolved alerts.

use std::{collections::HashMap, sync::Arc, time::SystemTime};

use super::{log::AlertLog, trend::rss_trend, Alert, AlertConfig, AlertEvent, EventKind, Rule, Severity};
use crate::monitor::snapshot::{GpuDevice, Snapshot, Source};

/// One rule on one resource: its active alert and the change it is counting samples for.
#[derive(Debug, Default)]
struct Tracker {
    /// The active alert's severity and id.
    active: Option<(Severity, String)>,
    /// A change waiting for enough consecutive samples.
    pending: Option<(Option<Severity>, u32)>,
}

impl Tracker {
    fn severity(&self) -> Option<Severity> {
        self.active.as_ref().map(|(s, _)| *s)
    }

    /// Counts one sample asking for `target`; true once `min_samples` in a row have asked for the
    /// same change, which is then due. A sample asking for the current state resets the count.
    fn settle(&mut self, target: Option<Severity>, min_samples: u32) -> bool {
        if target == self.severity() {
            self.pending = None;
            return false;
        }
        let count = match self.pending {
            Some((t, n)) if t == target => n + 1,
            _ => 1,
        };
        if count < min_samples {
            self.pending = Some((target, count));
            return false;
        }
        self.pending = None;
        true
    }
}

/// The rules engine and its bounded log.
#[derive(Debug)]
pub struct AlertEngine {
    config: AlertConfig,
    trackers: HashMap<(Rule, String), Tracker>,
    log: AlertLog,
    next_id: u64,
    leak_since: Option<SystemTime>,
}

impl AlertEngine {
    /// An engine with no alert.
    pub fn new(config: AlertConfig) -> Self {
        let log = AlertLog::new(config.log_capacity);
        Self { config, trackers: HashMap::new(), log, next_id: 1, leak_since: None }
    }

    /// Feeds one snapshot (`history` = the samples of the leak window, oldest first, this one last).
    pub fn evaluate(&mut self, s: &Snapshot, history: &[Arc<Snapshot>]) -> Vec<AlertEvent> {
        let now = s.sampled_at.unwrap_or_else(SystemTime::now);
        let mut events = Vec::new();
        if !s.is_stale(Source::Host) && !s.is_stale(Source::Container) {
            let levels = thresholds(self.config.host_memory);
            events.extend(self.observe(Rule::HostMemory, "host", s.effective.used_percent(), &levels, now));
        }
        if !s.is_stale(Source::Gpu) {
            for d in &s.gpu.devices {
                events.extend(self.evaluate_gpu(d, now));
            }
        }
        if !s.is_stale(Source::Process) {
            events.extend(self.evaluate_process(s, history, now));
        }
        events
    }

    /// The memory and temperature rules of one GPU. A figure that was not read is not fed: its
    /// rule's alert neither raises nor resolves until the sensor answers again.
    fn evaluate_gpu(&mut self, d: &GpuDevice, now: SystemTime) -> Vec<AlertEvent> {
        let resource = format!("gpu:{}", d.index);
        let rules = [
            (Rule::GpuMemory, d.memory_used_percent(), thresholds(self.config.gpu_memory)),
            (Rule::GpuTemperature, d.temperature_celsius, thresholds(self.config.gpu_temperature)),
        ];
        let mut events = Vec::new();
        for (rule, value, levels) in rules {
            if let Some(value) = value {
                events.extend(self.observe(rule, &resource, value, &levels, now));
            }
        }
        events
    }

    /// The RSS budget and leak rules (the budget defaults to 75 % of the effective memory limit).
    fn evaluate_process(
        &mut self,
        s: &Snapshot,
        history: &[Arc<Snapshot>],
        now: SystemTime,
    ) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        let budget = match self.config.rss_budget_bytes {
            0 => s.effective.limit_bytes * 3 / 4,
            b => b,
        };
        if budget > 0 {
            let v = s.process.rss_bytes as f64 * 100.0 / budget as f64;
            events.extend(self.observe(Rule::ProcessRss, "process", v, &[(Severity::Warning, 100.0)], now));
        }
        let slope = self.sustained_leak_slope(history, now);
        let levels = [(Severity::Warning, self.config.leak_slope_mb_per_min)];
        events.extend(self.observe(Rule::MemoryLeak, "process", slope, &levels, now));
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
        // The leak rule's value is a slope, not a percentage: it clears at half its threshold.
        let hysteresis = if rule == Rule::MemoryLeak { levels[0].1 / 2.0 } else { self.config.hysteresis };
        let key = (rule, resource.to_string());
        let tracker = self.trackers.entry(key.clone()).or_default();
        let target = target_severity(tracker.severity(), value, levels, hysteresis);
        if !tracker.settle(target, self.config.min_samples.max(1)) {
            return Vec::new();
        }
        let previous = tracker.active.take();
        let mut events = Vec::new();
        if let Some((_, id)) = previous {
            events.extend(self.log.resolve(&id, now));
        }
        if let Some(severity) = target {
            let threshold = levels.iter().find(|(s, _)| *s == severity).map_or(0.0, |(_, t)| *t);
            let alert = self.raise(rule, resource, severity, value, threshold, now);
            self.trackers.get_mut(&key).expect("tracker exists").active = Some((severity, alert.id.clone()));
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
        let alert = Alert {
            id,
            rule,
            severity,
            resource: resource.to_string(),
            value,
            threshold,
            unit: rule.unit(),
            message: rule.message(resource, value, threshold),
            recommendations: rule.recommendations(),
            started_at: now,
            resolved_at: None,
        };
        self.log.push(alert.clone());
        alert
    }

    /// Alerts not yet resolved, oldest first.
    pub fn active(&self) -> Vec<Alert> {
        self.log.active()
    }

    /// The log, newest first, filtered; `limit` 0 = all.
    pub fn list(&self, min_severity: Severity, active_only: bool, limit: usize) -> Vec<Alert> {
        self.log.list(min_severity, active_only, limit)
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
