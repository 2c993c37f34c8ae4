//! What the dashboard knows: the latest snapshot, a few minutes of CPU and GPU utilisation, the
//! active alerts, the last report and the state of the connection. Plain data updated by
//! [`Event`]s, so a frame can be rendered from it without a server or a terminal.

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, Instant},
};

use maestro_proto as pb;

/// Points kept per sparkline (five minutes at the default one-second interval).
pub const HISTORY_POINTS: usize = 300;

/// Something the feed learned.
#[derive(Debug, Clone)]
pub enum Event {
    /// Both streams are open.
    Connected,
    /// A new snapshot.
    Snapshot(Box<pb::Snapshot>),
    /// An alert was replayed, raised or resolved.
    Alert(pb::AlertEvent),
    /// A fresh report (leases, cached models).
    Report(Box<pb::ResourceReport>),
    /// The report could not be had (the server may not implement it yet).
    ReportUnavailable(String),
    /// The connection ended; the feed retries after `retry_in`.
    Disconnected {
        /// Why, as one line.
        error: String,
        /// Delay before the next attempt.
        retry_in: Duration,
        /// Consecutive failed attempts.
        attempt: u32,
    },
}

/// The state of the connection, as the header shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    /// The first attempt is under way.
    Connecting,
    /// Streams are open.
    Connected,
    /// Waiting to reconnect.
    Retrying {
        /// Why the last attempt ended.
        error: String,
        /// When the next attempt starts.
        at: Instant,
        /// Consecutive failed attempts.
        attempt: u32,
    },
}

/// Everything a frame shows.
#[derive(Debug, Clone)]
pub struct Dashboard {
    /// The server's address.
    pub addr: String,
    /// The connection.
    pub link: Link,
    /// The latest snapshot.
    pub snapshot: Option<pb::Snapshot>,
    /// Host CPU %, oldest first.
    pub cpu: VecDeque<u64>,
    /// GPU utilisation % per device index, oldest first.
    pub gpu: BTreeMap<u32, VecDeque<u64>>,
    /// Active alerts by id.
    pub alerts: BTreeMap<String, pb::Alert>,
    /// The latest report.
    pub report: Option<pb::ResourceReport>,
    /// Why there is no report, when there is none.
    pub report_note: Option<String>,
}

impl Dashboard {
    /// An empty dashboard for `addr`.
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            link: Link::Connecting,
            snapshot: None,
            cpu: VecDeque::new(),
            gpu: BTreeMap::new(),
            alerts: BTreeMap::new(),
            report: None,
            report_note: None,
        }
    }

    /// Folds one event into the state.
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::Connected => {
                self.link = Link::Connected;
                // The alert stream replays every active alert on (re)connection.
                self.alerts.clear();
            }
            Event::Snapshot(s) => self.push_snapshot(*s),
            Event::Alert(e) => self.push_alert(e),
            Event::Report(r) => {
                self.report = Some(*r);
                self.report_note = None;
            }
            Event::ReportUnavailable(why) => {
                self.report = None;
                self.report_note = Some(why);
            }
            Event::Disconnected { error, retry_in, attempt } => {
                self.link = Link::Retrying { error, at: Instant::now() + retry_in, attempt };
            }
        }
    }

    fn push_snapshot(&mut self, s: pb::Snapshot) {
        let host = s.host.clone().unwrap_or_default();
        push(&mut self.cpu, host.cpu_percent);
        for d in s.gpu.iter().flat_map(|g| &g.devices) {
            // An unread utilisation is a gap, not a 0 % point.
            if let Some(utilization) = d.utilization_gpu_percent {
                push(self.gpu.entry(d.index).or_default(), utilization);
            }
        }
        self.snapshot = Some(s);
    }

    fn push_alert(&mut self, e: pb::AlertEvent) {
        let Some(alert) = e.alert else { return };
        use pb::alert_event::Kind;
        match Kind::try_from(e.kind).unwrap_or_default() {
            Kind::Resolved => {
                self.alerts.remove(&alert.id);
            }
            Kind::Active | Kind::Raised => {
                self.alerts.insert(alert.id.clone(), alert);
            }
            Kind::Unspecified if alert.active => {
                self.alerts.insert(alert.id.clone(), alert);
            }
            Kind::Unspecified => {}
        }
    }
}

fn push(series: &mut VecDeque<u64>, percent: f64) {
    if series.len() == HISTORY_POINTS {
        series.pop_front();
    }
    series.push_back(percent.clamp(0.0, 100.0).round() as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert_event(kind: pb::alert_event::Kind, id: &str) -> Event {
        let alert = pb::Alert {
            id: id.into(),
            active: kind != pb::alert_event::Kind::Resolved,
            ..Default::default()
        };
        Event::Alert(pb::AlertEvent { kind: kind as i32, alert: Some(alert) })
    }

    #[test]
    fn alerts_come_and_go_and_reset_on_reconnection() {
        let mut d = Dashboard::new("http://x");
        d.apply(alert_event(pb::alert_event::Kind::Raised, "a"));
        d.apply(alert_event(pb::alert_event::Kind::Active, "b"));
        d.apply(alert_event(pb::alert_event::Kind::Resolved, "a"));
        assert_eq!(d.alerts.keys().collect::<Vec<_>>(), ["b"]);
        d.apply(Event::Connected);
        assert!(d.alerts.is_empty(), "the server replays what is still active");
    }

    #[test]
    fn sparklines_keep_a_bounded_history() {
        let mut d = Dashboard::new("http://x");
        for i in 0..(HISTORY_POINTS + 10) {
            let host = pb::HostStatus { cpu_percent: (i % 100) as f64, ..Default::default() };
            d.apply(Event::Snapshot(Box::new(pb::Snapshot { host: Some(host), ..Default::default() })));
        }
        assert_eq!(d.cpu.len(), HISTORY_POINTS);
        assert_eq!(*d.cpu.back().unwrap(), ((HISTORY_POINTS + 9) % 100) as u64);
    }

    #[test]
    fn an_unread_utilisation_is_a_gap_not_zero() {
        let mut d = Dashboard::new("http://x");
        for utilization in [Some(40.0), None, Some(60.0)] {
            let device = pb::GpuDevice { utilization_gpu_percent: utilization, ..Default::default() };
            let gpu = pb::GpuStatus { devices: vec![device], ..Default::default() };
            d.apply(Event::Snapshot(Box::new(pb::Snapshot { gpu: Some(gpu), ..Default::default() })));
        }
        assert_eq!(d.gpu[&0], [40, 60]);
    }
}
