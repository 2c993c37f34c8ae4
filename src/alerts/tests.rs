//! Unit tests of the alert rules, without a runtime.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use super::*;
use crate::monitor::snapshot::{EffectiveMemory, GpuDevice, Snapshot, Source};

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
}

fn host(percent: f64, secs: u64) -> Snapshot {
    Snapshot {
        sampled_at: Some(at(secs)),
        effective: EffectiveMemory {
            limit_bytes: 1000,
            used_bytes: (percent * 10.0) as u64,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn feed(engine: &mut AlertEngine, values: &[f64]) -> Vec<(EventKind, Severity)> {
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        for e in engine.evaluate(&host(*v, i as u64), &[]) {
            assert_eq!(e.alert.rule, Rule::HostMemory);
            out.push((e.kind, e.alert.severity));
        }
    }
    out
}

#[test]
fn climb_and_recover_raises_and_resolves_each_alert_once() {
    let mut e = AlertEngine::new(AlertConfig::default());
    let events = feed(&mut e, &[50.0, 82.0, 83.0, 84.0, 92.0, 93.0, 92.0, 60.0, 55.0, 50.0]);
    use EventKind::*;
    use Severity::*;
    assert_eq!(
        events,
        vec![(Raised, Warning), (Resolved, Warning), (Raised, Critical), (Resolved, Critical)]
    );
    assert!(e.active().is_empty());
    assert_eq!(e.list(Severity::Info, false, 0).len(), 2);
}

#[test]
fn a_noisy_metric_around_the_threshold_does_not_flap() {
    let mut e = AlertEngine::new(AlertConfig::default());
    // One sample above never raises (minimum duration); once raised, dips within the hysteresis keep it.
    let events = feed(&mut e, &[79.0, 81.0, 79.0, 81.0, 81.0, 78.0, 76.0, 79.0, 77.0, 81.0]);
    assert_eq!(events, vec![(EventKind::Raised, Severity::Warning)]);
    let events = feed(&mut e, &[74.0, 74.0]);
    assert_eq!(events, vec![(EventKind::Resolved, Severity::Warning)]);
}

#[test]
fn stale_data_neither_raises_nor_resolves() {
    let mut e = AlertEngine::new(AlertConfig::default());
    let mut stale = host(99.0, 0);
    stale.stale = vec![Source::Host];
    assert!(e.evaluate(&stale, &[]).is_empty());
    assert!(e.evaluate(&stale, &[]).is_empty());
    assert!(e.active().is_empty());
}

/// GPU 1 at 95 % memory and 96 °C: both rules critical.
fn hot_gpu() -> GpuDevice {
    GpuDevice {
        index: 1,
        memory_total_bytes: Some(100),
        memory_used_bytes: Some(95),
        memory_free_bytes: Some(5),
        temperature_celsius: Some(96.0),
        ..Default::default()
    }
}

#[test]
fn a_sensor_that_goes_silent_neither_resolves_nor_raises() {
    let mut e = AlertEngine::new(AlertConfig::default());
    let mut s = host(10.0, 0);
    s.gpu.devices.push(hot_gpu());
    e.evaluate(&s, &[]);
    assert_eq!(e.evaluate(&s, &[]).len(), 2, "memory and temperature raised");
    // Both sensors stop answering: the alerts stay as they were, however long the silence.
    let gpu = &mut s.gpu.devices[0];
    (gpu.temperature_celsius, gpu.memory_used_bytes) = (None, None);
    for _ in 0..5 {
        assert!(e.evaluate(&s, &[]).is_empty());
    }
    assert_eq!(e.active().len(), 2);
    // A card whose sensors are silent from the start raises nothing.
    let mut fresh = AlertEngine::new(AlertConfig::default());
    for _ in 0..5 {
        assert!(fresh.evaluate(&s, &[]).is_empty());
    }
    // Back and cool: resolved on real readings.
    s.gpu.devices[0] =
        GpuDevice { temperature_celsius: Some(40.0), memory_used_bytes: Some(10), ..hot_gpu() };
    e.evaluate(&s, &[]);
    let resolved = e.evaluate(&s, &[]);
    assert!(resolved.iter().all(|ev| ev.kind == EventKind::Resolved) && resolved.len() == 2, "{resolved:?}");
}

#[test]
fn gpu_rules_name_the_device() {
    let mut e = AlertEngine::new(AlertConfig::default());
    let mut s = host(10.0, 0);
    s.gpu.devices.push(hot_gpu());
    e.evaluate(&s, &[]);
    let events = e.evaluate(&s, &[]);
    let mut got: Vec<_> =
        events.iter().map(|ev| (ev.alert.rule, ev.alert.resource.as_str(), ev.alert.severity)).collect();
    got.sort_by_key(|g| g.0.name());
    assert_eq!(
        got,
        vec![
            (Rule::GpuMemory, "gpu:1", Severity::Critical),
            (Rule::GpuTemperature, "gpu:1", Severity::Critical)
        ]
    );
    assert!(events.iter().all(|ev| !ev.alert.recommendations.is_empty()));
}

fn rss_series(mb_per_min: f64, samples: u64) -> Vec<Arc<Snapshot>> {
    (0..samples)
        .map(|i| {
            let mut s = host(10.0, i * 10);
            s.process.rss_bytes = (500.0e6 + mb_per_min * 1e6 * (i as f64 * 10.0 / 60.0)) as u64;
            Arc::new(s)
        })
        .collect()
}

#[test]
fn leak_rule_needs_a_steady_rise_sustained() {
    let config = AlertConfig { leak_sustain: Duration::from_secs(60), ..AlertConfig::default() };
    let mut e = AlertEngine::new(config);
    let series = rss_series(30.0, 40);
    let mut raised = Vec::new();
    for i in 3..series.len() {
        for ev in e.evaluate(&series[i], &series[..=i]) {
            if ev.alert.rule == Rule::MemoryLeak {
                raised.push((i, ev.kind, ev.alert.value));
            }
        }
    }
    assert_eq!(raised.len(), 1, "{raised:?}");
    let (i, kind, slope) = raised[0];
    assert_eq!(kind, EventKind::Raised);
    assert!((slope - 30.0).abs() < 0.5, "slope {slope}");
    // Sustained 60 s at 10 s per sample, plus the minimum duration of 2 samples.
    assert!(i >= 9, "raised too early at sample {i}");

    // A flat series never raises.
    let mut e = AlertEngine::new(AlertConfig::default());
    let flat = rss_series(0.0, 40);
    for i in 0..flat.len() {
        assert!(e.evaluate(&flat[i], &flat[..=i]).iter().all(|ev| ev.alert.rule != Rule::MemoryLeak));
    }
}

#[test]
fn log_is_bounded_and_keeps_active_alerts() {
    let config = AlertConfig { log_capacity: 3, min_samples: 1, ..AlertConfig::default() };
    let mut e = AlertEngine::new(config);
    feed(&mut e, &[85.0, 10.0, 85.0, 10.0, 85.0, 10.0, 85.0]);
    let all = e.list(Severity::Info, false, 0);
    assert_eq!(all.len(), 3);
    assert!(all[0].is_active(), "the newest, active alert is kept");
    assert_eq!(e.list(Severity::Critical, false, 0).len(), 0);
    assert_eq!(e.list(Severity::Info, false, 1).len(), 1);
}
