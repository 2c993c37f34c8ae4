//! The dashboard's connection: opens WatchSnapshots and WatchAlerts, polls GetReport, and turns
//! all of it into [`Event`]s. When anything breaks it says so and reconnects with exponential
//! backoff; it stops when the dashboard drops its receiver.

use std::time::Duration;

use maestro_proto as pb;
use tokio::{sync::mpsc, task::JoinHandle, time::MissedTickBehavior};
use tonic::Code;

use super::state::Event;
use crate::{client, Failure};

/// Delay before the first retry; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest delay between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often leases and cached models are refreshed.
const REPORT_EVERY: Duration = Duration::from_secs(2);
/// How often a server that does not implement GetReport is asked again.
const REPORT_RETRY_EVERY: Duration = Duration::from_secs(30);

/// The delay before retry number `attempt` (1-based).
pub fn backoff(attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// Starts the feed for `addr`, sending events into `tx`.
pub fn spawn(addr: String, interval_ms: u32, tx: mpsc::Sender<Event>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut attempt = 0;
        loop {
            let error = session(&addr, interval_ms, &tx, &mut attempt).await;
            if tx.is_closed() {
                return;
            }
            attempt += 1;
            let retry_in = backoff(attempt);
            if tx.send(Event::Disconnected { error, retry_in, attempt }).await.is_err() {
                return;
            }
            tokio::time::sleep(retry_in).await;
        }
    })
}

/// One connection, until it fails; returns why.
async fn session(addr: &str, interval_ms: u32, tx: &mpsc::Sender<Event>, attempt: &mut u32) -> String {
    let mut c = match client::connect(addr).await {
        Ok(c) => c,
        Err(f) => return f.message,
    };
    let snapshots = c.resources.watch_snapshots(pb::WatchSnapshotsRequest { interval_ms }).await;
    let alerts = c.resources.watch_alerts(pb::WatchAlertsRequest { min_severity: 0 }).await;
    let (mut snapshots, mut alerts) = match (snapshots, alerts) {
        (Ok(s), Ok(a)) => (s.into_inner(), a.into_inner()),
        (Err(e), _) | (_, Err(e)) => return Failure::from(e).message,
    };
    if tx.send(Event::Connected).await.is_err() {
        return String::new();
    }
    *attempt = 0;
    let mut report_every = REPORT_EVERY;
    let mut tick = tokio::time::interval(report_every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            m = snapshots.message() => match m {
                Ok(Some(s)) => Event::Snapshot(s),
                Ok(None) => return "the server closed the snapshot stream".into(),
                Err(e) => return Failure::from(e).message,
            },
            m = alerts.message() => match m {
                Ok(Some(a)) => Event::Alert(a),
                Ok(None) => return "the server closed the alert stream".into(),
                Err(e) => return Failure::from(e).message,
            },
            _ = tick.tick() => {
                let event = report(&mut c).await;
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
        Ok(r) => Event::Report(r.into_inner()),
        Err(e) if e.code() == Code::Unimplemented => Event::ReportUnavailable(
            "leases and cached models: this server does not implement GetReport".into(),
        ),
        Err(e) => Event::ReportUnavailable(Failure::from(e).message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(6), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
