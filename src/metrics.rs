//! Prometheus exposition: gauges for every snapshot figure, RPC counters, active alerts by severity,
//! each series with its HELP text. `crate::http` serves an [`Exposition`] on `GET /metrics`.
//!
//! The snapshot's series are rendered at each scrape from the server's latest snapshot, by a
//! recorder that lives for that one rendering: a figure that is absent now (a sensor that did not
//! answer) has no series, rather than the value it last had. Everything else goes through one
//! process-wide recorder (the `metrics` facade is global): series recorded elsewhere (RPCs,
//! generations, cleanups) are described here too, so the whole exposition's HELP texts read in one
//! place.

use std::sync::{Arc, OnceLock};

use metrics::{describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

use crate::{
    alerts::{Alert, AlertEvent, EventKind, Severity},
    monitor::snapshot::{LimitSource, Snapshot},
};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// What one server's `/metrics` serves: its latest snapshot, then the process-wide series.
#[derive(Clone)]
pub struct Exposition {
    process: PrometheusHandle,
    snapshots: watch::Receiver<Arc<Snapshot>>,
}

impl Exposition {
    /// Renders the snapshots of `snapshots` (installing the process-wide recorder on first use).
    pub fn new(snapshots: watch::Receiver<Arc<Snapshot>>) -> Self {
        Self { process: handle(), snapshots }
    }

    /// The Prometheus text of this moment.
    pub fn render(&self) -> String {
        let snapshot = self.snapshots.borrow().clone();
        let mut text = render_snapshot(&snapshot);
        text.push_str(&self.process.render());
        text
    }
}

/// The series of one snapshot, each figure that was read with its HELP text.
pub fn render_snapshot(s: &Snapshot) -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    metrics::with_local_recorder(&recorder, || {
        for (name, help) in SNAPSHOT_GAUGES {
            describe_gauge!(*name, *help);
        }
        record_snapshot(s);
    });
    recorder.handle().render()
}

/// Installs the process-wide recorder and describes its series (once); returns its handle.
fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = with_buckets(PrometheusBuilder::new()).build_recorder();
            let handle = recorder.handle();
            // Another recorder may be installed by an embedding program; then ours only renders.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

/// Bucket bounds, in the histogram's unit, for each histogram: real histograms (not summaries), so
/// dashboards and alerts aggregate them across replicas with `histogram_quantile`.
fn with_buckets(builder: PrometheusBuilder) -> PrometheusBuilder {
    use metrics_exporter_prometheus::Matcher;
    const SECONDS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];
    const FACTOR: &[f64] = &[0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 25.0];
    HISTOGRAMS.iter().fold(builder, |b, (name, _)| {
        let bounds = if name.ends_with("_seconds") { SECONDS } else { FACTOR };
        b.set_buckets_for_metric(Matcher::Full((*name).to_string()), bounds)
            .expect("the bucket lists are not empty")
    })
}

/// Gives every process-wide series its HELP text (`promtool check metrics` wants one each).
fn describe() {
    describe_gauge!("maestro_alerts_active", "Alerts raised and not yet resolved, by severity.");
    for (name, help) in PROCESS_GAUGES {
        describe_gauge!(*name, *help);
        gauge!(*name).increment(0.0);
    }
    for (name, help) in COUNTERS {
        describe_counter!(*name, *help);
    }
    for (name, help) in HISTOGRAMS {
        describe_histogram!(*name, *help);
    }
}

/// The snapshot's gauges and their HELP texts.
const SNAPSHOT_GAUGES: &[(&str, &str)] = &[
    ("maestro_host_memory_total_bytes", "Host memory installed, in bytes."),
    ("maestro_host_memory_available_bytes", "Host memory available to new allocations, in bytes."),
    ("maestro_host_memory_used_bytes", "Host memory in use, in bytes."),
    ("maestro_host_swap_total_bytes", "Swap space configured on the host, in bytes."),
    ("maestro_host_swap_used_bytes", "Swap space in use on the host, in bytes."),
    ("maestro_host_cpu_percent", "Host CPU use over the last sample interval, 0-100 across all cores."),
    ("maestro_host_cpu_core_percent", "CPU use of one core over the last sample interval, 0-100."),
    ("maestro_host_load_average", "Host load average over the window (1m, 5m, 15m)."),
    (
        "maestro_memory_limit_bytes",
        "Memory limit the server lives under, in bytes: the cgroup limit or else host memory.",
    ),
    ("maestro_memory_used_bytes", "Memory used against the effective limit, in bytes."),
    ("maestro_memory_available_bytes", "Memory left under the effective limit, in bytes."),
    ("maestro_memory_used_percent", "Memory used against the effective limit, 0-100."),
    (
        "maestro_memory_pressure_percent",
        "Memory used per device, 0-100: cpu against the effective limit, cuda:N (NVML index) of the GPU.",
    ),
    ("maestro_container_memory_usage_bytes", "Memory the container's cgroup charges, in bytes."),
    ("maestro_container_memory_limit_bytes", "Memory limit of the container's cgroup, in bytes."),
    ("maestro_process_resident_memory_bytes", "Resident set size of the server process, in bytes."),
    ("maestro_process_virtual_memory_bytes", "Virtual memory size of the server process, in bytes."),
    ("maestro_process_cpu_percent", "CPU use of the server process, 0-100 per core (up to 100 x cores)."),
    ("maestro_process_threads", "Threads of the server process."),
    ("maestro_gpu_available", "1 when NVML answered, else 0."),
    ("maestro_gpu_memory_total_bytes", "Memory of the GPU, in bytes."),
    ("maestro_gpu_memory_used_bytes", "Memory in use on the GPU by all processes, in bytes."),
    ("maestro_gpu_memory_free_bytes", "Memory free on the GPU, in bytes."),
    ("maestro_gpu_utilization_percent", "GPU utilisation as NVML reports it, 0-100."),
    ("maestro_gpu_memory_utilization_percent", "GPU memory-controller utilisation, 0-100."),
    ("maestro_gpu_temperature_celsius", "GPU core temperature, in degrees Celsius."),
    ("maestro_gpu_power_watts", "GPU power draw, in watts."),
    ("maestro_gpu_power_limit_watts", "Enforced GPU power limit, in watts."),
    (
        "maestro_gpu_process_memory_used_bytes",
        "GPU memory of the server process as the driver reports it, in bytes.",
    ),
    (
        "maestro_gpu_torch_allocated_bytes",
        "GPU memory libtorch's caching allocator has handed to tensors, in bytes.",
    ),
    ("maestro_gpu_torch_reserved_bytes", "GPU memory libtorch's caching allocator holds, in bytes."),
    ("maestro_health_level", "Resource health: 1 healthy, 2 moderate, 3 warning, 4 critical."),
    ("maestro_sample_duration_seconds", "Time the last resource sample took to read, in seconds."),
    (
        "maestro_stale_sources",
        "Sources and sensors whose last read failed (a source's figures are old, a sensor has no series).",
    ),
];

/// Gauges the generation side sets, and their HELP texts (each also set to 0 at start, so an idle
/// server exports them: an autoscaler reads 0, not "no data").
pub const PROCESS_GAUGES: &[(&str, &str)] = &[
    (
        "maestro_generation_queue_depth",
        "Generations admitted and waiting for a worker (not yet running). Drives the HPA (Pods metric).",
    ),
    ("maestro_generations_running", "Generations a worker is running now."),
    (
        "maestro_generations_in_flight",
        "Generations admitted and not finished: queued plus running (at most --queue-capacity).",
    ),
];

/// Counters and their HELP texts.
const COUNTERS: &[(&str, &str)] = &[
    ("maestro_alert_events_total", "Alert transitions, by rule and kind (raised, resolved)."),
    ("maestro_rpc_requests_total", "gRPC calls answered, by method and status code."),
    ("maestro_generations_total", "Generations ended, by model and outcome (a status code name)."),
    ("maestro_cleanups_total", "Cleanups run, by trigger (manual, auto, emergency)."),
    (
        "maestro_model_loads_total",
        "Models an engine loaded, by model (a load joined by several requests counts once).",
    ),
    (
        "maestro_file_reloads_total",
        "Re-reads of changed files, by files (auth_tokens, tls) and outcome (ok, error: old ones kept).",
    ),
    (
        "maestro_connections_refused_total",
        "Connections to the gRPC port closed at accept because --max-connections were open.",
    ),
];

/// Histograms and their HELP texts.
const HISTOGRAMS: &[(&str, &str)] = &[
    (
        "maestro_generation_time_to_first_chunk_seconds",
        "Time from the start of a generation to its first audio chunk, in seconds.",
    ),
    ("maestro_generation_seconds", "Wall-clock time of a generation until its summary, in seconds."),
    (
        "maestro_generation_real_time_factor",
        "Generation seconds per second of audio (below 1 is faster than real time).",
    ),
    ("maestro_generation_queue_wait_seconds", "Time a generation waited in the queue, in seconds."),
];

/// Sets a gauge, in the recorder of the moment, for every figure of a snapshot that was read.
fn record_snapshot(s: &Snapshot) {
    let h = &s.host;
    gauge!("maestro_host_memory_total_bytes").set(h.memory_total_bytes as f64);
    gauge!("maestro_host_memory_available_bytes").set(h.memory_available_bytes as f64);
    gauge!("maestro_host_memory_used_bytes").set(h.memory_used_bytes as f64);
    gauge!("maestro_host_swap_total_bytes").set(h.swap_total_bytes as f64);
    gauge!("maestro_host_swap_used_bytes").set(h.swap_used_bytes as f64);
    gauge!("maestro_host_cpu_percent").set(h.cpu_percent);
    for (i, c) in h.cpu_per_core_percent.iter().enumerate() {
        gauge!("maestro_host_cpu_core_percent", "core" => i.to_string()).set(*c);
    }
    for (window, v) in ["1m", "5m", "15m"].iter().zip(h.load_average.into_iter().flatten()) {
        gauge!("maestro_host_load_average", "window" => *window).set(v);
    }
    let e = &s.effective;
    let cgroup = if e.source == LimitSource::Cgroup { "cgroup" } else { "host" };
    gauge!("maestro_memory_limit_bytes", "source" => cgroup).set(e.limit_bytes as f64);
    gauge!("maestro_memory_used_bytes").set(e.used_bytes as f64);
    gauge!("maestro_memory_available_bytes").set(e.available_bytes as f64);
    gauge!("maestro_memory_used_percent").set(e.used_percent());
    gauge!("maestro_memory_pressure_percent", "device" => "cpu").set(e.used_percent());
    if let Some(c) = &s.container {
        gauge!("maestro_container_memory_usage_bytes").set(c.memory_usage_bytes as f64);
        if let Some(limit) = c.memory_limit_bytes {
            gauge!("maestro_container_memory_limit_bytes").set(limit as f64);
        }
    }
    let p = &s.process;
    gauge!("maestro_process_resident_memory_bytes").set(p.rss_bytes as f64);
    gauge!("maestro_process_virtual_memory_bytes").set(p.virtual_bytes as f64);
    gauge!("maestro_process_cpu_percent").set(p.cpu_percent);
    if let Some(threads) = p.threads {
        gauge!("maestro_process_threads").set(f64::from(threads));
    }
    record_gpus(s);
    gauge!("maestro_health_level").set(s.health as u8 as f64 + 1.0);
    gauge!("maestro_sample_duration_seconds").set(s.sample_duration_us as f64 / 1e6);
    gauge!("maestro_stale_sources").set(s.stale_sources().len() as f64);
}

/// The per-device gauges, labelled by index and UUID; a figure that was not read has none.
fn record_gpus(s: &Snapshot) {
    gauge!("maestro_gpu_available").set(if s.gpu.available { 1.0 } else { 0.0 });
    let bytes = |b: Option<u64>| b.map(|b| b as f64);
    for d in &s.gpu.devices {
        let labels = [("gpu", d.index.to_string()), ("uuid", d.uuid.clone())];
        let figures = [
            ("maestro_gpu_memory_total_bytes", bytes(d.memory_total_bytes)),
            ("maestro_gpu_memory_used_bytes", bytes(d.memory_used_bytes)),
            ("maestro_gpu_memory_free_bytes", bytes(d.memory_free_bytes)),
            ("maestro_gpu_utilization_percent", d.utilization_gpu_percent),
            ("maestro_gpu_memory_utilization_percent", d.utilization_memory_percent),
            ("maestro_gpu_temperature_celsius", d.temperature_celsius),
            ("maestro_gpu_power_watts", d.power_watts),
            ("maestro_gpu_power_limit_watts", d.power_limit_watts),
            ("maestro_gpu_process_memory_used_bytes", bytes(d.process_memory_used_bytes)),
            ("maestro_gpu_torch_allocated_bytes", bytes(d.torch_allocated_bytes)),
            ("maestro_gpu_torch_reserved_bytes", bytes(d.torch_reserved_bytes)),
        ];
        for (name, value) in figures {
            if let Some(v) = value {
                gauge!(name, &labels).set(v);
            }
        }
        if let Some(p) = d.memory_used_percent() {
            gauge!("maestro_memory_pressure_percent", "device" => format!("cuda:{}", d.index)).set(p);
        }
    }
}

/// Counts alert transitions.
pub fn record_alert_event(e: &AlertEvent) {
    let kind = match e.kind {
        EventKind::Raised => "raised",
        EventKind::Resolved => "resolved",
        EventKind::Active => return,
    };
    metrics::counter!("maestro_alert_events_total", "rule" => e.alert.rule.name(), "kind" => kind)
        .increment(1);
}

/// Sets the active-alert gauge per severity.
pub fn record_active_alerts(active: &[Alert]) {
    for (severity, name) in
        [(Severity::Info, "info"), (Severity::Warning, "warning"), (Severity::Critical, "critical")]
    {
        let n = active.iter().filter(|a| a.severity == severity).count();
        gauge!("maestro_alerts_active", "severity" => name).set(n as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::snapshot::GpuDevice;

    fn with_gpu(temperature: Option<f64>, power: Option<f64>) -> Snapshot {
        let mut s = Snapshot::default();
        (s.host.load_average, s.process.threads) = (Some([0.5; 3]), Some(3));
        s.gpu.available = true;
        s.gpu.devices.push(GpuDevice {
            uuid: "GPU-render".into(),
            memory_total_bytes: Some(100),
            memory_used_bytes: Some(50),
            memory_free_bytes: Some(50),
            temperature_celsius: temperature,
            power_watts: power,
            ..GpuDevice::default()
        });
        s
    }

    #[test]
    fn a_figure_that_was_not_read_has_no_series() {
        let read = render_snapshot(&with_gpu(Some(61.0), Some(120.0)));
        assert!(read.contains(r#"maestro_gpu_temperature_celsius{gpu="0",uuid="GPU-render"} 61"#), "{read}");
        assert!(read.contains(r#"maestro_gpu_power_watts{gpu="0",uuid="GPU-render"} 120"#), "{read}");
        let silent = render_snapshot(&with_gpu(None, None));
        for gone in ["maestro_gpu_temperature_celsius", "maestro_gpu_power_watts", "maestro_gpu_torch_"] {
            assert!(!silent.contains(gone), "{gone} in\n{silent}");
        }
        // The figures that were read stay, and the silent sensors are counted.
        assert!(
            silent.contains(r#"maestro_gpu_memory_used_bytes{gpu="0",uuid="GPU-render"} 50"#),
            "{silent}"
        );
        assert!(silent.contains("# HELP maestro_gpu_memory_used_bytes"), "{silent}");
        // utilization, temperature, power, power_limit and process_memory were never read here.
        assert!(silent.contains("maestro_stale_sources 5\n"), "{silent}");
    }
}
