//! Health level of a snapshot and the readiness it implies, as pure functions of the figures.
//!
//! An absent figure (a GPU sensor that did not answer) counts for nothing: it neither raises the
//! level nor, once readiness is lost, brings it back.

use super::snapshot::{HealthLevel, Snapshot, Source};

/// Thresholds of the health level (percent for memory, °C for temperature).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthThresholds {
    /// Memory % at which the level is MODERATE (default 70).
    pub moderate_percent: f64,
    /// Memory % at which the level is WARNING (default 80).
    pub warning_percent: f64,
    /// Memory % at which the level is CRITICAL (default 90).
    pub critical_percent: f64,
    /// GPU temperature for WARNING (default 85 °C).
    pub gpu_temp_warning_c: f64,
    /// GPU temperature for CRITICAL (default 95 °C).
    pub gpu_temp_critical_c: f64,
    /// Readiness comes back only once every figure is this far below its critical threshold (default 5).
    pub hysteresis: f64,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        Self {
            moderate_percent: 70.0,
            warning_percent: 80.0,
            critical_percent: 90.0,
            gpu_temp_warning_c: 85.0,
            gpu_temp_critical_c: 95.0,
            hysteresis: 5.0,
        }
    }
}

impl HealthThresholds {
    /// The level of a snapshot: the worst of host memory %, each GPU's memory % and temperature
    /// that was read.
    pub fn level(&self, s: &Snapshot) -> HealthLevel {
        let memory = |p: f64| {
            if p >= self.critical_percent {
                HealthLevel::Critical
            } else if p >= self.warning_percent {
                HealthLevel::Warning
            } else if p >= self.moderate_percent {
                HealthLevel::Moderate
            } else {
                HealthLevel::Healthy
            }
        };
        let temperature = |t: f64| {
            if t >= self.gpu_temp_critical_c {
                HealthLevel::Critical
            } else if t >= self.gpu_temp_warning_c {
                HealthLevel::Warning
            } else {
                HealthLevel::Healthy
            }
        };
        let host = memory(s.effective.used_percent());
        let gpus = s.gpu.devices.iter().flat_map(|d| {
            let memory = d.memory_used_percent().map(memory);
            memory.into_iter().chain(d.temperature_celsius.map(temperature))
        });
        gpus.fold(host, HealthLevel::max)
    }

    /// Whether every figure that was read is below its critical threshold minus the hysteresis.
    fn recovered(&self, s: &Snapshot) -> bool {
        let mem = self.critical_percent - self.hysteresis;
        let temp = self.gpu_temp_critical_c - self.hysteresis;
        let below = |value: Option<f64>, limit: f64| value.is_none_or(|v| v < limit);
        s.effective.used_percent() < mem
            && s.gpu
                .devices
                .iter()
                .all(|d| below(d.memory_used_percent(), mem) && below(d.temperature_celsius, temp))
    }
}

/// Readiness of the generation service: lost at CRITICAL, back only after recovery by the hysteresis.
#[derive(Debug, Clone)]
pub struct Readiness {
    ready: bool,
    /// What could not be read when readiness was lost: a sensor absent now but not then may be the
    /// one that was critical, so its silence cannot count as recovery.
    absent_at_loss: Vec<String>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self { ready: true, absent_at_loss: Vec::new() }
    }
}

impl Readiness {
    /// Whether the service is ready now.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Feeds a snapshot; returns the new readiness when it changed. Stale figures change nothing.
    pub fn update(&mut self, thresholds: &HealthThresholds, s: &Snapshot) -> Option<bool> {
        if s.is_stale(Source::Host) {
            return None;
        }
        let next = if self.ready {
            s.health < HealthLevel::Critical
        } else {
            let newly_absent = s.stale_sources().iter().any(|name| !self.absent_at_loss.contains(name));
            !newly_absent && thresholds.recovered(s)
        };
        (next != self.ready).then(|| {
            self.ready = next;
            if !next {
                self.absent_at_loss = s.stale_sources();
            }
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::snapshot::{EffectiveMemory, GpuDevice};

    fn snap(host_percent: f64, gpu_temp: Option<f64>) -> Snapshot {
        let mut s = Snapshot {
            effective: EffectiveMemory {
                limit_bytes: 1000,
                used_bytes: (host_percent * 10.0) as u64,
                ..Default::default()
            },
            ..Default::default()
        };
        if let Some(t) = gpu_temp {
            s.gpu.devices.push(GpuDevice {
                memory_total_bytes: Some(100),
                memory_used_bytes: Some(0),
                memory_free_bytes: Some(100),
                temperature_celsius: Some(t),
                ..Default::default()
            });
        }
        s.health = HealthThresholds::default().level(&s);
        s
    }

    #[test]
    fn level_is_the_worst_figure() {
        let t = HealthThresholds::default();
        assert_eq!(t.level(&snap(10.0, None)), HealthLevel::Healthy);
        assert_eq!(t.level(&snap(70.0, None)), HealthLevel::Moderate);
        assert_eq!(t.level(&snap(80.0, None)), HealthLevel::Warning);
        assert_eq!(t.level(&snap(90.0, None)), HealthLevel::Critical);
        assert_eq!(t.level(&snap(10.0, Some(86.0))), HealthLevel::Warning);
        assert_eq!(t.level(&snap(75.0, Some(96.0))), HealthLevel::Critical);
    }

    #[test]
    fn readiness_has_hysteresis() {
        let t = HealthThresholds::default();
        let mut r = Readiness::default();
        assert_eq!(r.update(&t, &snap(89.0, None)), None);
        assert_eq!(r.update(&t, &snap(91.0, None)), Some(false));
        assert_eq!(r.update(&t, &snap(87.0, None)), None, "below critical but within the hysteresis");
        assert_eq!(r.update(&t, &snap(84.0, None)), Some(true));
    }

    /// A snapshot whose one GPU has lost its temperature sensor.
    fn silent(host_percent: f64) -> Snapshot {
        let mut s = snap(host_percent, Some(0.0));
        s.gpu.devices[0].temperature_celsius = None;
        s.health = HealthThresholds::default().level(&s);
        s
    }

    #[test]
    fn an_absent_temperature_is_skipped_not_read_as_cool() {
        let t = HealthThresholds::default();
        assert_eq!(t.level(&silent(10.0)), HealthLevel::Healthy);
        assert_eq!(t.level(&silent(82.0)), HealthLevel::Warning, "the figures that were read still count");
        let mut r = Readiness::default();
        assert_eq!(r.update(&t, &snap(10.0, Some(97.0))), Some(false));
        // The critical card goes silent: that is not recovery.
        assert_eq!(r.update(&t, &silent(10.0)), None);
        assert_eq!(r.update(&t, &snap(10.0, Some(91.0))), None, "within the hysteresis");
        assert_eq!(r.update(&t, &snap(10.0, Some(80.0))), Some(true));
        // A sensor already silent when readiness was lost does not hold recovery back.
        assert_eq!(r.update(&t, &silent(95.0)), Some(false));
        assert_eq!(r.update(&t, &silent(50.0)), Some(true));
    }
}
