//! Prometheus exposition: gauges for every snapshot field, RPC counters, active alerts by severity,
//! served as text on `GET /metrics`.
//!
//! One recorder per process (the `metrics` facade is global); each server instance serves it on its
//! own listener. The HTTP side is a minimal HTTP/1.1 responder: it answers every request with the
//! exposition and closes, which is all a scraper needs.

use std::sync::OnceLock;

use metrics::gauge;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tokio_util::sync::CancellationToken;

use crate::{
    alerts::{Alert, AlertEvent, EventKind, Severity},
    monitor::snapshot::{LimitSource, Snapshot},
};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once) and returns its handle.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may be installed by an embedding program; then ours only renders.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Serves `/metrics` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, shutdown: CancellationToken) {
    let handle = handle();
    loop {
        let (mut socket, _) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => { tracing::warn!(error = %e, "metrics accept failed"); continue; }
            },
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = socket.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let response = if request.starts_with("GET /metrics") {
                let body = handle.render();
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string()
            };
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

/// Sets a gauge for every figure of a snapshot.
pub fn record_snapshot(s: &Snapshot) {
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
    for (window, v) in ["1m", "5m", "15m"].iter().zip(h.load_average) {
        gauge!("maestro_host_load_average", "window" => *window).set(v);
    }
    let e = &s.effective;
    let cgroup = if e.source == LimitSource::Cgroup { "cgroup" } else { "host" };
    gauge!("maestro_memory_limit_bytes", "source" => cgroup).set(e.limit_bytes as f64);
    gauge!("maestro_memory_used_bytes").set(e.used_bytes as f64);
    gauge!("maestro_memory_available_bytes").set(e.available_bytes as f64);
    gauge!("maestro_memory_used_percent").set(e.used_percent());
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
    gauge!("maestro_process_threads").set(f64::from(p.threads));
    gauge!("maestro_gpu_available").set(if s.gpu.available { 1.0 } else { 0.0 });
    for d in &s.gpu.devices {
        let labels = [("gpu", d.index.to_string()), ("uuid", d.uuid.clone())];
        gauge!("maestro_gpu_memory_total_bytes", &labels).set(d.memory_total_bytes as f64);
        gauge!("maestro_gpu_memory_used_bytes", &labels).set(d.memory_used_bytes as f64);
        gauge!("maestro_gpu_memory_free_bytes", &labels).set(d.memory_free_bytes as f64);
        gauge!("maestro_gpu_utilization_percent", &labels).set(d.utilization_gpu_percent);
        gauge!("maestro_gpu_memory_utilization_percent", &labels).set(d.utilization_memory_percent);
        gauge!("maestro_gpu_temperature_celsius", &labels).set(d.temperature_celsius);
        gauge!("maestro_gpu_power_watts", &labels).set(d.power_watts);
        gauge!("maestro_gpu_power_limit_watts", &labels).set(d.power_limit_watts);
        gauge!("maestro_gpu_torch_reserved_bytes", &labels).set(d.torch_reserved_bytes as f64);
    }
    gauge!("maestro_health_level").set(s.health as u8 as f64 + 1.0);
    gauge!("maestro_sample_duration_seconds").set(s.sample_duration_us as f64 / 1e6);
    gauge!("maestro_stale_sources").set(s.stale.len() as f64);
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
