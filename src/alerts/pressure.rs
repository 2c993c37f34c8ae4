//! The automatic cleanup's decision, a plain function of a snapshot and the time since the last run
//! (beside the alert rules, which decide from the same snapshots). `resources::cleanup::watch` only
//! waits for a snapshot or an out-of-memory report and asks [`on_snapshot`] or [`emergency`].

use std::time::Duration;

use crate::{
    monitor::snapshot::{Snapshot, Source},
    resources::device::Device,
};

/// What started a cleanup (`maestro_cleanups_total{trigger}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A `Cleanup` call.
    Manual,
    /// Memory passed `--cleanup-threshold`.
    Auto,
    /// A request ran out of memory on a device.
    Emergency,
}

impl Trigger {
    /// The name metrics and logs use.
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Auto => "auto",
            Trigger::Emergency => "emergency",
        }
    }
}

/// One kind of thing a cleanup does (the wire's `CleanupAction.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// A lease past its TTL released.
    ReleaseExpiredLease,
    /// An idle model unloaded.
    EvictModel,
    /// libtorch's CUDA cache emptied.
    EmptyCudaCache,
    /// Freed heap pages given back to the OS.
    MallocTrim,
}

impl ActionKind {
    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::ReleaseExpiredLease => "release_expired_lease",
            ActionKind::EvictModel => "evict_model",
            ActionKind::EmptyCudaCache => "empty_cuda_cache",
            ActionKind::MallocTrim => "malloc_trim",
        }
    }
}

/// Automatic cleanup settings.
#[derive(Debug, Clone)]
pub struct AutoCleanup {
    /// Memory % (host or any GPU) that triggers it (default 85).
    pub threshold_percent: f64,
    /// Least time between two runs (default 30 s).
    pub cooldown: Duration,
}

/// A cleanup to run now.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Why.
    pub trigger: Trigger,
    /// Bytes to free by evicting idle models (`u64::MAX`: every idle candidate).
    pub needed: u64,
    /// Only models on this device are evicted; `None`: any.
    pub device: Option<Device>,
    /// What the journal and the log say.
    pub reason: String,
}

/// A request ran out of memory on `device`: evict every idle model there, at once.
pub fn emergency(device: Device) -> Decision {
    Decision {
        trigger: Trigger::Emergency,
        needed: u64::MAX,
        device: Some(device),
        reason: format!("emergency cleanup: out of memory on {}", device.name()),
    }
}

/// A pressure cleanup when the worst memory figure of `s` (the effective host memory or any GPU)
/// reaches the threshold, the host figure is fresh and the cooldown has passed since the last run
/// (`since_last`; `None`: never ran). It asks for what brings the host back under the threshold.
pub fn on_snapshot(settings: &AutoCleanup, s: &Snapshot, since_last: Option<Duration>) -> Option<Decision> {
    let worst = s
        .gpu
        .devices
        .iter()
        .filter_map(|d| d.memory_used_percent())
        .fold(s.effective.used_percent(), f64::max);
    let cooling = since_last.is_some_and(|t| t < settings.cooldown);
    if worst < settings.threshold_percent || cooling || s.is_stale(Source::Host) {
        return None;
    }
    let target = s.effective.limit_bytes as f64 * settings.threshold_percent / 100.0;
    Some(Decision {
        trigger: Trigger::Auto,
        needed: (s.effective.used_bytes as f64 - target).max(0.0) as u64,
        device: None,
        reason: format!(
            "automatic cleanup: memory at {worst:.1} % >= --cleanup-threshold {} %",
            settings.threshold_percent
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(used_percent: f64) -> Snapshot {
        let mut s = Snapshot::default();
        s.effective.limit_bytes = 1000;
        s.effective.used_bytes = (used_percent * 10.0) as u64;
        s.effective.available_bytes = 1000 - s.effective.used_bytes;
        s
    }

    const SETTINGS: AutoCleanup = AutoCleanup { threshold_percent: 85.0, cooldown: Duration::from_secs(30) };

    #[test]
    fn pressure_past_the_threshold_asks_for_what_brings_it_back_under() {
        assert_eq!(on_snapshot(&SETTINGS, &at(84.9), None), None);
        let d = on_snapshot(&SETTINGS, &at(90.0), None).expect("past the threshold");
        assert_eq!((d.trigger, d.needed, d.device), (Trigger::Auto, 50, None));
        assert!(d.reason.contains("90.0 % >= --cleanup-threshold 85 %"), "{}", d.reason);
    }

    #[test]
    fn the_cooldown_holds_a_second_run_back() {
        assert_eq!(on_snapshot(&SETTINGS, &at(95.0), Some(Duration::from_secs(29))), None);
        assert!(on_snapshot(&SETTINGS, &at(95.0), Some(Duration::from_secs(30))).is_some());
    }

    #[test]
    fn an_emergency_evicts_everything_idle_on_its_device_only() {
        let d = emergency(Device::Cuda(1));
        assert_eq!((d.trigger, d.needed, d.device), (Trigger::Emergency, u64::MAX, Some(Device::Cuda(1))));
        assert_eq!(d.reason, "emergency cleanup: out of memory on cuda:1");
    }
}
