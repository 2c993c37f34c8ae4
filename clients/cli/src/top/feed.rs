//! The dashboard's connection: opens WatchSnapshots and WatchAlerts, polls GetReport, and turns
//! all of it into [`Event`]s. When anything breaks it says so and reconnects with jittered
//! exponential backoff ([`reconnect_policy`]); it stops when the dashboard drops its receiver.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use maestro_proto as pb;
use tokio::{sync::mpsc, task::JoinHandle, time::MissedTickBehavior};
use tonic::Code;

use super::state::Event;
use crate::{
    client::{self, Target},
    Failure,
};

/// Base delay before the first retry; doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest base delay between attempts (jitter adds up to as much again).
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often leases and cached models are refreshed.
const REPORT_EVERY: Duration = Duration::from_secs(2);
/// How often a server that does not implement GetReport is asked again.
const REPORT_RETRY_EVERY: Duration = Duration::from_secs(30);

/// Reconnect delays: [`FIRST_BACKOFF`] doubling up to [`MAX_BACKOFF`], each plus a random share
/// of up to 100 % of itself, so dashboards that lost the same server do not all come back at once.
/// It never gives up: `top` keeps trying until the user quits.
pub fn reconnect_policy() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(FIRST_BACKOFF)
        .with_max_delay(MAX_BACKOFF)
        .with_jitter()
        .without_max_times()
}

/// Starts the feed for `target`, sending events into `tx`.
pub fn spawn(target: Target, interval_ms: u32, tx: mpsc::Sender<Event>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut delays = reconnect_policy().build();
        let mut attempt = 0;
        loop {
            let Ended { error, connected } = session(&target, interval_ms, &tx).await;
            if tx.is_closed() {
                return;
            }
            if connected {
                // A fresh outage starts the backoff over.
                (delays, attempt) = (reconnect_policy().build(), 0);
            }
            attempt += 1;
            let retry_in = delays.next().unwrap_or(MAX_BACKOFF);
            if tx.send(Event::Disconnected { error, retry_in, attempt }).await.is_err() {
                return;
            }
            tokio::time::sleep(retry_in).await;
        }
    })
}

/// How a session ended.
struct Ended {
    /// Why.
    error: String,
    /// Whether it had connected first.
    connected: bool,
}

/// One connection, until it fails.
async fn session(target: &Target, interval_ms: u32, tx: &mpsc::Sender<Event>) -> Ended {
    let failed = |error: String| Ended { error, connected: false };
    let mut c = match client::connect(target).await {
        Ok(c) => c,
        Err(f) => return failed(f.message),
    };
    let snapshots = c.resources.watch_snapshots(pb::WatchSnapshotsRequest { interval_ms }).await;
    let alerts = c.resources.watch_alerts(pb::WatchAlertsRequest { min_severity: 0 }).await;
    let (mut snapshots, mut alerts) = match (snapshots, alerts) {
        (Ok(s), Ok(a)) => (s.into_inner(), a.into_inner()),
        (Err(e), _) | (_, Err(e)) => return failed(Failure::from(e).message),
    };
    if tx.send(Event::Connected).await.is_err() {
        return failed(String::new());
    }
    Ended { error: streams(&mut c, &mut snapshots, &mut alerts, tx).await, connected: true }
}

/// Forwards both streams and the periodic report until one of them fails; returns why.
async fn streams(
    c: &mut client::Clients,
    snapshots: &mut tonic::Streaming<pb::Snapshot>,
    alerts: &mut tonic::Streaming<pb::AlertEvent>,
    tx: &mpsc::Sender<Event>,
) -> String {
    let mut report_every = REPORT_EVERY;
    let mut tick = tokio::time::interval(report_every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            m = snapshots.message() => match m {
                Ok(Some(s)) => Event::Snapshot(Box::new(s)),
                Ok(None) => return "the server closed the snapshot stream".into(),
                Err(e) => return Failure::from(e).message,
            },
            m = alerts.message() => match m {
                Ok(Some(a)) => Event::Alert(a),
                Ok(None) => return "the server closed the alert stream".into(),
                Err(e) => return Failure::from(e).message,
            },
            _ = tick.tick() => {
                let event = report(c).await;
                // Ask a server without GetReport rarely instead of every two seconds.
                let wanted = if matches!(event, Event::Report(_)) { REPORT_EVERY } else { REPORT_RETRY_EVERY };
                if wanted != report_every {
                    report_every = wanted;
                    tick = tokio::time::interval_at(tokio::time::Instant::now() + wanted, wanted);
                }
                event
            }
        };
        if tx.send(event).await.is_err() {
            return String::new();
        }
    }
}

async fn report(c: &mut client::Clients) -> Event {
    match c.resources.get_report(pb::ReportRequest {}).await {
        Ok(r) => Event::Report(Box::new(r.into_inner())),
        Err(e) if e.code() == Code::Unimplemented => Event::ReportUnavailable(
            "leases and cached models: this server does not implement GetReport".into(),
        ),
        Err(e) => Event::ReportUnavailable(Failure::from(e).message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Delay `n` (1-based) lies in [base, 2 × base), base doubling from FIRST_BACKOFF up to MAX_BACKOFF.
    #[test]
    fn delays_double_then_cap_with_jitter_on_top() {
        for seed in 0..20 {
            let delays: Vec<Duration> = reconnect_policy().with_jitter_seed(seed).build().take(12).collect();
            assert_eq!(delays.len(), 12, "it never gives up");
            for (i, d) in delays.iter().enumerate() {
                let base = FIRST_BACKOFF.saturating_mul(1 << i).min(MAX_BACKOFF);
                assert!(base <= *d && *d < base * 2, "seed {seed}, delay {}: {d:?} vs base {base:?}", i + 1);
            }
        }
    }

    #[test]
    fn jitter_spreads_the_first_retry() {
        let first = |seed| reconnect_policy().with_jitter_seed(seed).build().next().unwrap();
        let distinct: std::collections::BTreeSet<Duration> = (0..10).map(first).collect();
        assert!(distinct.len() > 1, "ten seeds, one delay: {distinct:?}");
    }
}
