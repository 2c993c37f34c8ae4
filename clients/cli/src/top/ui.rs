//! One frame of the dashboard, drawn from a [`Dashboard`] alone: header with the connection and
//! health, memory gauges, CPU and GPU sparklines, GPU temperatures and power, active alerts, leases
//! and cached models.

use std::time::Instant;

use maestro_proto as pb;
use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Cell, Gauge, Paragraph, Row, Sparkline, Table, Wrap},
    Frame,
};

use super::state::{Dashboard, Link};
use crate::units::{self, bytes, celsius, or_na, percent};

/// Draws the whole dashboard into the frame.
pub fn render(frame: &mut Frame, d: &Dashboard) {
    let gpus = devices(d).len().min(4) as u16;
    let [header, memory, sparks, gpu, alerts, bottom, footer] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(4 + gpus),
        Constraint::Length(6),
        Constraint::Length(3 + gpus),
        Constraint::Min(4),
        Constraint::Min(5),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(header_widget(d), header);
    render_memory(frame, memory, d);
    render_sparklines(frame, sparks, d);
    if gpus == 0 {
        let none =
            Paragraph::new("no GPU reported").block(Block::bordered().title(" temperatures and power "));
        frame.render_widget(none, gpu);
    } else {
        frame.render_widget(gpu_table(d), gpu);
    }
    frame.render_widget(alert_table(d), alerts);
    render_bottom(frame, bottom, d);
    let keys =
        Line::from(vec![Span::styled(" q ", Style::new().add_modifier(Modifier::REVERSED)), " quit".into()]);
    frame.render_widget(Paragraph::new(keys), footer);
}

fn devices(d: &Dashboard) -> Vec<pb::GpuDevice> {
    d.snapshot.iter().flat_map(|s| s.gpu.iter()).flat_map(|g| g.devices.clone()).collect()
}

/// Green below 70 %, yellow below 80 %, red from there (the server's health bands).
fn level_color(p: f64) -> Color {
    if p < 70.0 {
        Color::Green
    } else if p < 80.0 {
        Color::Yellow
    } else {
        Color::Red
    }
}

fn health_style(level: i32) -> Style {
    let color = match pb::HealthLevel::try_from(level).unwrap_or_default() {
        pb::HealthLevel::Healthy => Color::Green,
        pb::HealthLevel::Moderate => Color::Yellow,
        pb::HealthLevel::Warning => Color::LightRed,
        pb::HealthLevel::Critical => Color::Red,
        pb::HealthLevel::Unspecified => Color::Gray,
    };
    Style::new().fg(color).add_modifier(Modifier::BOLD)
}

fn header_widget(d: &Dashboard) -> Paragraph<'static> {
    let link = match &d.link {
        Link::Connecting => Span::styled("connecting…", Style::new().fg(Color::Yellow)),
        Link::Connected => Span::styled("● connected", Style::new().fg(Color::Green)),
        Link::Retrying { error, at, attempt } => {
            let wait = at.saturating_duration_since(Instant::now()).as_secs_f64();
            let text = format!("disconnected, reconnecting in {wait:.1} s (attempt {attempt}): {error}");
            Span::styled(text, Style::new().fg(Color::Red).add_modifier(Modifier::BOLD))
        }
    };
    let mut first =
        vec![Span::styled("maestro top  ", Style::new().add_modifier(Modifier::BOLD)), d.addr.clone().into()];
    first.push("  ".into());
    first.push(link);
    let second = match &d.snapshot {
        Some(s) => {
            let stale = if s.stale_sources.is_empty() {
                String::new()
            } else {
                format!("  stale: {}", s.stale_sources.join(", "))
            };
            let when = units::timestamp(s.sampled_at.as_ref());
            Line::from(vec![
                "health ".into(),
                Span::styled(units::health(s.health), health_style(s.health)),
                format!("  sample #{} at {when}{stale}", s.sequence).into(),
            ])
        }
        None => Line::from("waiting for the first snapshot"),
    };
    Paragraph::new(vec![Line::from(first), second]).wrap(Wrap { trim: true })
}

fn gauge(label: String, p: f64) -> Gauge<'static> {
    Gauge::default()
        .gauge_style(Style::new().fg(level_color(p)).bg(Color::DarkGray))
        .ratio((p / 100.0).clamp(0.0, 1.0))
        .label(label)
}

fn render_memory(frame: &mut Frame, area: Rect, d: &Dashboard) {
    let block = Block::bordered().title(" memory ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(s) = &d.snapshot else { return };
    let mem = s.effective_memory.unwrap_or_default();
    let proc_ = s.process.unwrap_or_default();
    let gpus = devices(d);
    let rows = Layout::vertical(vec![Constraint::Length(1); 2 + gpus.len().min(4)]).split(inner);
    let host = format!(
        "host memory {} ({})",
        units::used_of(mem.used_bytes, mem.limit_bytes),
        percent(mem.used_percent)
    );
    frame.render_widget(gauge(host, mem.used_percent), rows[0]);
    let rss_percent = 100.0 * proc_.rss_bytes as f64 / mem.limit_bytes.max(1) as f64;
    let rss = format!(
        "server rss {} ({} of the limit), {} threads",
        bytes(proc_.rss_bytes),
        percent(rss_percent),
        or_na(proc_.threads, |t| t.to_string())
    );
    frame.render_widget(gauge(rss, rss_percent), rows[1]);
    for (g, row) in gpus.iter().zip(rows.iter().skip(2)) {
        let used = units::gpu_memory(g);
        let label = format!("gpu{} memory {used} ({})", g.index, or_na(g.memory_used_percent, percent));
        frame.render_widget(gauge(label, g.memory_used_percent.unwrap_or(0.0)), *row);
    }
}

/// The last points of a series that fit in `width` columns.
fn tail(series: &std::collections::VecDeque<u64>, width: u16) -> Vec<u64> {
    let skip = series.len().saturating_sub(usize::from(width));
    series.iter().skip(skip).copied().collect()
}

fn render_sparklines(frame: &mut Frame, area: Rect, d: &Dashboard) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let host = d.snapshot.as_ref().and_then(|s| s.host.clone()).unwrap_or_default();
    let title = format!(
        " CPU {} on {} cores, load {} ",
        percent(host.cpu_percent),
        host.cpu_count,
        or_na(host.load_average_1m, |l| format!("{l:.2}"))
    );
    let cpu = tail(&d.cpu, left.width.saturating_sub(2));
    let spark = Sparkline::default()
        .block(Block::bordered().title(title))
        .data(&cpu)
        .max(100)
        .style(Style::new().fg(Color::Cyan));
    frame.render_widget(spark, left);
    match d.gpu.iter().next() {
        Some((index, series)) => {
            let now = devices(d).iter().find(|g| g.index == *index).and_then(|g| g.utilization_gpu_percent);
            let data = tail(series, right.width.saturating_sub(2));
            let title = format!(" GPU{index} utilisation {} ", or_na(now, |u| format!("{u:.0} %")));
            let spark = Sparkline::default()
                .block(Block::bordered().title(title))
                .data(&data)
                .max(100)
                .style(Style::new().fg(Color::Magenta));
            frame.render_widget(spark, right);
        }
        None => {
            let reason = d
                .snapshot
                .as_ref()
                .and_then(|s| s.gpu.clone())
                .map(|g| g.unavailable_reason)
                .unwrap_or_default();
            let text = Paragraph::new(format!("no GPU: {reason}")).wrap(Wrap { trim: true });
            frame.render_widget(text.block(Block::bordered().title(" GPU ")), right);
        }
    }
}

fn gpu_table(d: &Dashboard) -> Table<'static> {
    let rows: Vec<Row> = devices(d)
        .iter()
        .take(4)
        .map(|g| {
            let temp = Cell::from(or_na(g.temperature_celsius, celsius))
                .style(Style::new().fg(g.temperature_celsius.map_or(Color::DarkGray, temp_color)));
            Row::new(vec![
                Cell::from(format!("gpu{}", g.index)),
                Cell::from(g.name.clone()),
                temp,
                Cell::from(format!(
                    "{} / {}",
                    or_na(g.power_watts, units::watts),
                    or_na(g.power_limit_watts, units::watts)
                )),
                Cell::from(or_na(g.utilization_gpu_percent, percent)),
                Cell::from(or_na(g.torch_reserved_bytes, bytes)),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(5),
        Constraint::Min(12),
        Constraint::Length(7),
        Constraint::Length(13),
        Constraint::Length(8),
        Constraint::Length(12),
    ];
    let header = Row::new(vec!["GPU", "NAME", "TEMP", "POWER", "UTIL", "TORCH"])
        .style(Style::new().add_modifier(Modifier::BOLD));
    Table::new(rows, widths).header(header).block(Block::bordered().title(" temperatures and power "))
}

fn temp_color(c: f64) -> Color {
    if c < 85.0 {
        Color::Green
    } else if c < 95.0 {
        Color::Yellow
    } else {
        Color::Red
    }
}

fn alert_table(d: &Dashboard) -> Table<'static> {
    let rows: Vec<Row> = d
        .alerts
        .values()
        .map(|a| {
            let color = if a.severity == pb::Severity::Critical as i32 { Color::Red } else { Color::Yellow };
            Row::new(vec![
                Cell::from(units::severity(a.severity)).style(Style::new().fg(color)),
                Cell::from(a.resource.clone()),
                Cell::from(units::in_unit(a.value, &a.unit)),
                Cell::from(units::ago(a.started_at.as_ref())),
                Cell::from(a.message.clone()),
            ])
        })
        .collect();
    let title = format!(" active alerts ({}) ", d.alerts.len());
    let widths = [
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Min(20),
    ];
    Table::new(rows, widths).block(Block::bordered().title(title))
}

fn render_bottom(frame: &mut Frame, area: Rect, d: &Dashboard) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let Some(r) = &d.report else {
        let note = d.report_note.clone().unwrap_or_else(|| "waiting for the first report".into());
        let text = Paragraph::new(note).wrap(Wrap { trim: true });
        frame.render_widget(text.block(Block::bordered().title(" leases and cached models ")), area);
        return;
    };
    let leases: Vec<Row> = r
        .leases
        .iter()
        .map(|l| {
            Row::new(vec![
                l.owner.clone(),
                l.kind.clone(),
                bytes(l.cpu_memory_bytes),
                bytes(l.gpu_memory_bytes),
            ])
        })
        .collect();
    let widths =
        [Constraint::Min(10), Constraint::Length(10), Constraint::Length(10), Constraint::Length(10)];
    let head =
        Row::new(vec!["OWNER", "KIND", "HOST", "GPU"]).style(Style::new().add_modifier(Modifier::BOLD));
    let title = format!(" leases ({}) ", r.leases.len());
    frame.render_widget(Table::new(leases, widths).header(head).block(Block::bordered().title(title)), left);
    let models: Vec<Row> = r
        .cached_models
        .iter()
        .map(|m| {
            Row::new(vec![
                m.model.clone(),
                m.device.clone(),
                bytes(m.measured_bytes.max(m.estimated_bytes)),
                m.in_flight.to_string(),
            ])
        })
        .collect();
    let widths = [Constraint::Min(16), Constraint::Length(8), Constraint::Length(10), Constraint::Length(4)];
    let head =
        Row::new(vec!["MODEL", "DEVICE", "SIZE", "BUSY"]).style(Style::new().add_modifier(Modifier::BOLD));
    let title = format!(" cached models ({}) ", r.cached_models.len());
    frame.render_widget(Table::new(models, widths).header(head).block(Block::bordered().title(title)), right);
}
