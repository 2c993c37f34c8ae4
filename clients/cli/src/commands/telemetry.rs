//! `status`, `report`, `history` and `watch`: the monitor's snapshots and statistics as tables.

use maestro_proto as pb;
use tokio_stream::StreamExt;

use super::{alerts, resources, Output};
use crate::{
    args::{HistoryArgs, WatchArgs},
    client::Clients,
    table::{pairs, Table},
    units::{self, bytes, celsius, or_na, percent},
    Failure,
};

/// `status`.
pub async fn status(c: &mut Clients, out: Output) -> Result<(), Failure> {
    let snapshot = c.resources.get_status(pb::StatusRequest {}).await?.into_inner();
    out.show(&snapshot, "Snapshot", render_snapshot)?;
    Ok(())
}

/// `report`.
pub async fn report(c: &mut Clients, out: Output) -> Result<(), Failure> {
    let report = c.resources.get_report(pb::ReportRequest {}).await?.into_inner();
    out.show(&report, "ResourceReport", render_report)?;
    Ok(())
}

/// `history`.
pub async fn history(c: &mut Clients, out: Output, a: &HistoryArgs) -> Result<(), Failure> {
    let req = pb::HistoryRequest { window_seconds: a.window };
    let history = c.resources.get_history(req).await?.into_inner();
    out.show(&history, "History", |h| {
        format!("{} samples over the last {} s\n{}", h.samples.len(), h.window_seconds, stats_table(&h.stats))
    })?;
    Ok(())
}

/// `watch`: one line per snapshot until `count` or Ctrl-C.
pub async fn watch(c: &mut Clients, out: Output, a: &WatchArgs) -> Result<(), Failure> {
    let req = pb::WatchSnapshotsRequest { interval_ms: a.interval_ms };
    let mut stream = c.resources.watch_snapshots(req).await?.into_inner();
    let mut seen = 0;
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(snapshot) = next.transpose()? else { return Ok(()) };
        out.stream(&snapshot, "Snapshot", |s| format!("{}\n", snapshot_line(s)))?;
        seen += 1;
        if a.count > 0 && seen >= a.count {
            return Ok(());
        }
    }
}

/// One line summing up a snapshot (for `watch`).
pub fn snapshot_line(s: &pb::Snapshot) -> String {
    let mem = s.effective_memory.unwrap_or_default();
    let host = s.host.clone().unwrap_or_default();
    let mut line = format!(
        "#{:<6} {:<8} mem {} ({})  cpu {}",
        s.sequence,
        units::health(s.health),
        units::used_of(mem.used_bytes, mem.limit_bytes),
        percent(mem.used_percent),
        percent(host.cpu_percent)
    );
    for d in s.gpu.iter().flat_map(|g| &g.devices) {
        line.push_str(&format!(
            "  gpu{} {} ({}) {} {}",
            d.index,
            or_na(d.memory_used_bytes, bytes),
            or_na(d.memory_used_percent, percent),
            or_na(d.utilization_gpu_percent, percent),
            or_na(d.temperature_celsius, celsius)
        ));
    }
    line
}

/// A snapshot as a block of labelled lines, then a table of GPUs.
pub fn render_snapshot(s: &pb::Snapshot) -> String {
    let host = s.host.clone().unwrap_or_default();
    let mem = s.effective_memory.unwrap_or_default();
    let proc_ = s.process.unwrap_or_default();
    let source = match pb::MemoryLimitSource::try_from(mem.source).unwrap_or_default() {
        pb::MemoryLimitSource::Cgroup => "cgroup limit",
        _ => "host memory",
    };
    let mut rows = vec![
        (
            "health",
            format!(
                "{}  (sample #{} at {})",
                units::health(s.health),
                s.sequence,
                units::timestamp(s.sampled_at.as_ref())
            ),
        ),
        (
            "memory",
            format!(
                "{} used ({}), {} available; bounded by the {source}",
                units::used_of(mem.used_bytes, mem.limit_bytes),
                percent(mem.used_percent),
                bytes(mem.available_bytes)
            ),
        ),
        (
            "host memory",
            format!(
                "{} used ({}), swap {} used",
                units::used_of(host.memory_used_bytes, host.memory_total_bytes),
                percent(host.memory_used_percent),
                units::used_of(host.swap_used_bytes, host.swap_total_bytes)
            ),
        ),
        ("cpu", format!("{} on {} cores, load {}", percent(host.cpu_percent), host.cpu_count, load(&host))),
        ("container", container_line(s.container.as_ref())),
        (
            "process",
            format!(
                "pid {}, rss {}, virtual {}, cpu {}, {} threads",
                proc_.pid,
                bytes(proc_.rss_bytes),
                bytes(proc_.virtual_bytes),
                percent(proc_.cpu_percent),
                or_na(proc_.threads, |t| t.to_string())
            ),
        ),
    ];
    if !s.stale_sources.is_empty() {
        let note = "not read: a source shows its last good figures, a sensor n/a";
        rows.push(("stale", format!("{} ({note})", s.stale_sources.join(", "))));
    }
    let gpu = s.gpu.clone().unwrap_or_default();
    if !gpu.gpu_available {
        rows.push(("gpu", format!("unavailable: {}", gpu.unavailable_reason)));
    } else {
        rows.push(("gpu", format!("driver {}, {} device(s)", gpu.driver_version, gpu.devices.len())));
    }
    let mut text = pairs(&rows);
    if !gpu.devices.is_empty() {
        text.push('\n');
        text.push_str(&gpu_table(&gpu.devices));
    }
    text
}

/// The three load averages, or `n/a` when the server could not read them.
fn load(host: &pb::HostStatus) -> String {
    let all = [host.load_average_1m, host.load_average_5m, host.load_average_15m];
    or_na(all.into_iter().collect::<Option<Vec<f64>>>(), |l| {
        l.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(" / ")
    })
}

fn container_line(c: Option<&pb::ContainerStatus>) -> String {
    match c {
        Some(c) if c.limited => format!(
            "cgroup {}, limit {}, usage {}",
            c.cgroup_version,
            bytes(c.memory_limit_bytes),
            bytes(c.memory_usage_bytes)
        ),
        Some(c) if !c.cgroup_version.is_empty() => format!("cgroup {}, no memory limit", c.cgroup_version),
        _ => "no cgroup".into(),
    }
}

fn gpu_table(devices: &[pb::GpuDevice]) -> String {
    let header = ["GPU", "NAME", "MEMORY", "MEM", "UTIL", "TEMP", "POWER", "SERVER", "TORCH RESERVED"];
    let mut t = Table::new(&header).right(&[0, 2, 3, 4, 5, 6, 7, 8]);
    for d in devices {
        t.row(vec![
            d.index.to_string(),
            d.name.clone(),
            units::gpu_memory(d),
            or_na(d.memory_used_percent, percent),
            or_na(d.utilization_gpu_percent, percent),
            or_na(d.temperature_celsius, celsius),
            format!("{} / {}", or_na(d.power_watts, units::watts), or_na(d.power_limit_watts, units::watts)),
            or_na(d.process_memory_used_bytes, bytes),
            or_na(d.torch_reserved_bytes, bytes),
        ]);
    }
    t.render()
}

/// Per-metric statistics, each in its metric's unit.
pub fn stats_table(stats: &[pb::MetricStats]) -> String {
    let mut t = Table::new(&["METRIC", "MIN", "MEAN", "MAX", "P95", "SAMPLES"]).right(&[1, 2, 3, 4, 5]);
    for m in stats {
        let u = |v: f64| units::in_unit(v, &m.unit);
        t.row(vec![m.metric.clone(), u(m.min), u(m.mean), u(m.max), u(m.p95), m.count.to_string()]);
    }
    t.render()
}

/// The whole report: snapshot, statistics, leases, cached models, alerts, suggestions.
pub fn render_report(r: &pb::ResourceReport) -> String {
    let mut text = format!("health {}\n\n", units::health(r.health));
    if let Some(s) = &r.snapshot {
        text.push_str(&render_snapshot(s));
    }
    text.push_str(&format!("\nover the last {} s\n{}", r.window_seconds, stats_table(&r.window_stats)));
    text.push_str(&section("leases", resources::lease_table(&r.leases)));
    text.push_str(&section("cached models", cached_table(&r.cached_models)));
    text.push_str(&section("active alerts", alerts::alert_table(&r.active_alerts)));
    text.push_str(&section("suggestions", resources::suggestion_table(&r.suggestions)));
    text
}

fn section(title: &str, table: Option<String>) -> String {
    match table {
        Some(t) => format!("\n{title}\n{t}"),
        None => format!("\n{title}: none\n"),
    }
}

/// Cached models, or `None` when there are none.
pub fn cached_table(models: &[pb::CachedModel]) -> Option<String> {
    if models.is_empty() {
        return None;
    }
    let mut t = Table::new(&[
        "MODEL",
        "DEVICE",
        "DTYPE",
        "ESTIMATED",
        "MEASURED",
        "IN FLIGHT",
        "PINNED",
        "LAST USED",
    ])
    .right(&[3, 4, 5]);
    for m in models {
        t.row(vec![
            m.model.clone(),
            m.device.clone(),
            m.dtype.clone(),
            bytes(m.estimated_bytes),
            bytes(m.measured_bytes),
            m.in_flight.to_string(),
            units::yes_no(m.pinned).into(),
            units::ago(m.last_used.as_ref()),
        ]);
    }
    Some(t.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gpu_whose_sensors_did_not_answer_shows_n_a() {
        let gpu = pb::GpuDevice {
            index: 0,
            memory_total_bytes: Some(80_000_000_000),
            memory_used_bytes: Some(40_000_000_000),
            memory_used_percent: Some(50.0),
            power_limit_watts: Some(700.0),
            ..Default::default()
        };
        let s = pb::Snapshot {
            host: Some(pb::HostStatus { load_average_1m: Some(0.5), ..Default::default() }),
            gpu: Some(pb::GpuStatus { gpu_available: true, devices: vec![gpu], ..Default::default() }),
            stale_sources: vec!["gpu:0/temperature".into(), "gpu:0/power".into()],
            ..Default::default()
        };
        let line = snapshot_line(&s);
        assert!(line.ends_with("gpu0 40.00 GB (50.0 %) n/a n/a"), "{line}");
        let text = render_snapshot(&s);
        assert!(text.contains("n/a / 700 W") && text.contains("load n/a"), "{text}");
        assert!(text.contains("gpu:0/temperature, gpu:0/power (not read"), "{text}");
        assert!(!text.contains("0 °C"), "{text}");
    }
}
