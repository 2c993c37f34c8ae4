//! The history ring buffer and per-metric window statistics.

use std::{collections::VecDeque, sync::Arc};

use super::snapshot::Snapshot;

/// Statistics of one metric over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricStats {
    /// Metric name (`host_memory_used_percent`, `gpu0_temperature_celsius`, ...).
    pub metric: String,
    /// Unit (`bytes`, `percent`, `celsius`, `watts`).
    pub unit: &'static str,
    /// Smallest value.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Largest value.
    pub max: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
    /// Samples counted.
    pub count: u32,
}

/// A bounded buffer of the most recent snapshots.
#[derive(Debug, Clone)]
pub struct History {
    samples: VecDeque<Arc<Snapshot>>,
    capacity: usize,
}

impl History {
    /// A buffer holding `capacity` samples (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self { samples: VecDeque::with_capacity(capacity), capacity }
    }

    /// Adds a sample, dropping the oldest when full.
    pub fn push(&mut self, s: Arc<Snapshot>) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }

    /// The newest `n` samples, oldest first.
    pub fn last(&self, n: usize) -> Vec<Arc<Snapshot>> {
        let skip = self.samples.len().saturating_sub(n);
        self.samples.iter().skip(skip).cloned().collect()
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether nothing was sampled yet.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// A metric's value in one sample; `None` when its sensor was not read.
type Extract = fn(&Snapshot) -> Option<f64>;

const HOST_METRICS: [(&str, &str, Extract); 7] = [
    ("host_memory_used_bytes", "bytes", |s| Some(s.effective.used_bytes as f64)),
    ("host_memory_used_percent", "percent", |s| Some(s.effective.used_percent())),
    ("host_memory_available_bytes", "bytes", |s| Some(s.effective.available_bytes as f64)),
    ("host_cpu_percent", "percent", |s| Some(s.host.cpu_percent)),
    ("process_rss_bytes", "bytes", |s| Some(s.process.rss_bytes as f64)),
    ("process_cpu_percent", "percent", |s| Some(s.process.cpu_percent)),
    ("host_load_average_1m", "load", |s| s.host.load_average.map(|l| l[0])),
];

/// Statistics of every metric over `samples` (host and process metrics, then each GPU's), each
/// over the samples where it was read.
pub fn window_stats(samples: &[Arc<Snapshot>]) -> Vec<MetricStats> {
    let mut out: Vec<MetricStats> = HOST_METRICS
        .iter()
        .filter_map(|(name, unit, f)| stats(name.to_string(), unit, samples.iter().filter_map(|s| f(s))))
        .collect();
    let gpus = samples.iter().flat_map(|s| s.gpu.devices.iter().map(|d| d.index)).max();
    for index in gpus.into_iter().flat_map(|max| 0..=max) {
        let devices = || samples.iter().filter_map(move |s| s.gpu.devices.iter().find(|d| d.index == index));
        let per_gpu: [(&str, &'static str, Vec<f64>); 5] = [
            (
                "memory_used_bytes",
                "bytes",
                devices().filter_map(|d| d.memory_used_bytes.map(|b| b as f64)).collect(),
            ),
            ("memory_used_percent", "percent", devices().filter_map(|d| d.memory_used_percent()).collect()),
            ("utilization_percent", "percent", devices().filter_map(|d| d.utilization_gpu_percent).collect()),
            ("temperature_celsius", "celsius", devices().filter_map(|d| d.temperature_celsius).collect()),
            ("power_watts", "watts", devices().filter_map(|d| d.power_watts).collect()),
        ];
        for (name, unit, values) in per_gpu {
            out.extend(stats(format!("gpu{index}_{name}"), unit, values.into_iter()));
        }
    }
    out
}

fn stats(metric: String, unit: &'static str, values: impl Iterator<Item = f64>) -> Option<MetricStats> {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
    Some(MetricStats {
        metric,
        unit,
        min: v[0],
        mean: v.iter().sum::<f64>() / n as f64,
        max: v[n - 1],
        p95: v[rank - 1],
        count: n as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(rss: u64) -> Arc<Snapshot> {
        let mut s = Snapshot::default();
        s.process.rss_bytes = rss;
        Arc::new(s)
    }

    #[test]
    fn ring_buffer_keeps_the_newest() {
        let mut h = History::new(3);
        for i in 1..=5 {
            h.push(snap(i));
        }
        let rss: Vec<u64> = h.last(10).iter().map(|s| s.process.rss_bytes).collect();
        assert_eq!(rss, vec![3, 4, 5]);
        assert_eq!(h.last(2).len(), 2);
    }

    #[test]
    fn stats_are_min_mean_max_p95() {
        let samples: Vec<_> = (1..=100).map(snap).collect();
        let s = window_stats(&samples).into_iter().find(|m| m.metric == "process_rss_bytes").unwrap();
        assert_eq!((s.min, s.max, s.p95, s.count), (1.0, 100.0, 95.0, 100));
        assert!((s.mean - 50.5).abs() < 1e-9);
    }

    #[test]
    fn a_figure_is_summed_up_over_the_samples_that_read_it() {
        let samples: Vec<_> = [Some(60.0), None, Some(70.0), None]
            .into_iter()
            .map(|t| {
                let mut s = Snapshot::default();
                s.gpu.devices.push(crate::monitor::snapshot::GpuDevice {
                    temperature_celsius: t,
                    ..Default::default()
                });
                Arc::new(s)
            })
            .collect();
        let stats = window_stats(&samples);
        let t = stats.iter().find(|m| m.metric == "gpu0_temperature_celsius").unwrap();
        assert_eq!((t.min, t.max, t.count), (60.0, 70.0, 2), "the silent samples are not 0 °C");
        for never in ["gpu0_power_watts", "gpu0_memory_used_bytes", "host_load_average_1m"] {
            assert!(stats.iter().all(|m| m.metric != never), "{never} has no reading to sum up");
        }
    }
}
