//! Server streams: a cap on how many are open, and the snapshot, alert and report streams themselves.
//!
//! Every stream ends when the client goes (tonic drops it, freeing its slot) and when the server
//! shuts down (the shutdown token).

use std::{
    collections::HashMap,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{Stream, StreamExt};
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::Status;

use super::{convert, pb};
use crate::{
    alerts::{Alert, AlertEvent, EventKind, Severity},
    error::Error,
    monitor::snapshot::Snapshot,
};

/// A boxed server stream.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A cap on one kind of open stream: generations (`--max-streams`) or watches (`--max-watches`,
/// and `--max-watches-per-connection` per client connection), each its own budget, so that a flood
/// of one never refuses the other, and one connection never takes every watch.
#[derive(Clone, Debug)]
pub struct StreamSlots {
    slots: Arc<Semaphore>,
    max: usize,
    /// What it counts, for the refusal.
    what: &'static str,
    /// The flag that sets it.
    flag: &'static str,
    /// At most this many per connection (by the peer's address and port), when set.
    per_connection: Option<(usize, ConnectionCounts)>,
}

/// Open streams per connection, by the peer's address and port.
type ConnectionCounts = Arc<Mutex<HashMap<SocketAddr, usize>>>;

/// A stream's slot: given back (to the budget and to its connection's share) when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    _connection: Option<ConnectionShare>,
}

/// One stream counted against its connection.
#[derive(Debug)]
struct ConnectionShare {
    peer: SocketAddr,
    counts: ConnectionCounts,
}

impl Drop for ConnectionShare {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().expect("connection counts");
        if let Some(n) = counts.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.peer);
            }
        }
    }
}

impl StreamSlots {
    /// `max` generation streams (`--max-streams`).
    pub fn generations(max: usize) -> Self {
        let slots = Arc::new(Semaphore::new(max));
        Self { slots, max, what: "generation streams", flag: "--max-streams", per_connection: None }
    }

    /// `max` watch streams: snapshots, alerts, reports (`--max-watches`), at most `per_connection`
    /// of them on one connection (`--max-watches-per-connection`; 0 = no such cap).
    pub fn watches(max: usize, per_connection: usize) -> Self {
        let slots = Arc::new(Semaphore::new(max));
        let per_connection = (per_connection > 0).then(|| (per_connection, Arc::default()));
        Self { slots, max, what: "watch streams", flag: "--max-watches", per_connection }
    }

    /// A slot, held for the life of a stream; refused at once when none is free.
    pub fn acquire(&self) -> Result<Slot, Error> {
        self.acquire_from(None)
    }

    /// A slot for a stream of the connection from `peer`; refused at once when none is free or the
    /// connection holds its share.
    pub fn acquire_from(&self, peer: Option<SocketAddr>) -> Result<Slot, Error> {
        let connection = match (&self.per_connection, peer) {
            (Some((limit, counts)), Some(peer)) => Some(self.count(*limit, counts, peer)?),
            _ => None,
        };
        let permit = self.slots.clone().try_acquire_owned().map_err(|_| {
            Error::TooManyStreams(format!(
                "too many open {}: limit {} reached ({})",
                self.what, self.max, self.flag
            ))
        })?;
        Ok(Slot { _permit: permit, _connection: connection })
    }

    fn count(
        &self,
        limit: usize,
        counts: &ConnectionCounts,
        peer: SocketAddr,
    ) -> Result<ConnectionShare, Error> {
        let mut map = counts.lock().expect("connection counts");
        let n = map.entry(peer).or_default();
        if *n >= limit {
            return Err(Error::TooManyStreams(format!(
                "too many open {} on this connection: limit {limit} reached ({}-per-connection)",
                self.what, self.flag
            )));
        }
        *n += 1;
        Ok(ConnectionShare { peer, counts: counts.clone() })
    }
}

struct SnapshotStream {
    rx: watch::Receiver<Arc<Snapshot>>,
    ticker: Option<tokio::time::Interval>,
    last_sequence: u64,
    // One registration for the stream's life: a fresh `cancelled()` per message locked the token's
    // tree once per subscriber per tick, which showed in the fan-out profile.
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    _slot: Slot,
}

/// Snapshots every `interval` (`None` = each new sample), each turned into a message by
/// `message(snapshot, skipped)` with the count of samples skipped: the wire type, or bytes encoded
/// once for every subscriber ([`super::fanout`]).
pub fn snapshots<T, F>(
    rx: watch::Receiver<Arc<Snapshot>>,
    interval: Option<Duration>,
    shutdown: CancellationToken,
    slot: Slot,
    message: F,
) -> BoxStream<T>
where
    T: Send + 'static,
    F: Fn(&Snapshot, u64) -> T + Send + 'static,
{
    let ticker = interval.map(|i| {
        let mut t = tokio::time::interval(i);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    // The first message is the current snapshot, so a watcher has something to show at once.
    let last_sequence = rx.borrow().sequence.saturating_sub(1);
    let shutdown = Box::pin(shutdown.cancelled_owned());
    let state = (SnapshotStream { rx, ticker, last_sequence, shutdown, _slot: slot }, message);
    Box::pin(futures::stream::unfold(state, |(mut s, message)| async move {
        let snap = next_snapshot(&mut s).await?;
        let skipped = snap.sequence.saturating_sub(s.last_sequence + 1);
        s.last_sequence = snap.sequence;
        Some((Ok(message(&snap, skipped)), (s, message)))
    }))
}

async fn next_snapshot(s: &mut SnapshotStream) -> Option<Arc<Snapshot>> {
    if let Some(ticker) = &mut s.ticker {
        tokio::select! {
            () = &mut s.shutdown => return None,
            _ = ticker.tick() => {}
        }
    }
    while s.rx.borrow().sequence <= s.last_sequence {
        tokio::select! {
            () = &mut s.shutdown => return None,
            changed = s.rx.changed() => changed.ok()?,
        }
    }
    Some(s.rx.borrow_and_update().clone())
}

/// The active alerts (as `KIND_ACTIVE`), then every raised / resolved event at `min` or above.
pub fn alerts(
    active: Vec<Alert>,
    events: broadcast::Receiver<AlertEvent>,
    min: Severity,
    shutdown: CancellationToken,
    slot: Slot,
) -> BoxStream<pb::AlertEvent> {
    let replay = futures::stream::iter(
        active
            .into_iter()
            .filter(move |a| a.severity >= min)
            .map(|alert| Ok(convert::alert_event(&AlertEvent { kind: EventKind::Active, alert }))),
    );
    let live =
        futures::stream::unfold((events, shutdown, slot), move |(mut rx, shutdown, slot)| async move {
            loop {
                let event = tokio::select! {
                    () = shutdown.cancelled() => return None,
                    e = rx.recv() => e,
                };
                match event {
                    Ok(e) if e.alert.severity >= min => {
                        return Some((Ok(convert::alert_event(&e)), (rx, shutdown, slot)))
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "alert watcher too slow; events dropped");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
    Box::pin(replay.chain(live))
}

/// A report every `interval` (the first at once) until the client goes or the server shuts down;
/// the report is the one all watchers share ([`super::reports`]).
pub fn reports(
    shared: super::reports::SharedReports,
    interval: Duration,
    shutdown: CancellationToken,
    slot: Slot,
    show_lease_ids: bool,
) -> BoxStream<pb::ResourceReport> {
    let mut ticks = tokio::time::interval(interval);
    // A slow reader gets the next report when it reads, not a burst of old ones.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = (ticks, shared, shutdown, slot);
    Box::pin(futures::stream::unfold(state, move |(mut ticks, shared, shutdown, slot)| async move {
        tokio::select! {
            () = shutdown.cancelled() => return None,
            _ = ticks.tick() => {}
        }
        let report = shared.get(show_lease_ids).await;
        Some((report, (ticks, shared, shutdown, slot)))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(sequence: u64) -> Arc<Snapshot> {
        Arc::new(Snapshot { sequence, ..Snapshot::default() })
    }

    #[tokio::test]
    async fn a_stalled_reader_gets_the_latest_snapshot_with_the_count_it_skipped() {
        let (tx, rx) = watch::channel(snap(1));
        let slots = StreamSlots::watches(1, 1);
        let mut stream =
            snapshots(rx, None, CancellationToken::new(), slots.acquire().unwrap(), convert::snapshot);
        assert_eq!(stream.next().await.unwrap().unwrap().sequence, 1);
        for seq in 2..=50 {
            tx.send_replace(snap(seq));
        }
        let s = stream.next().await.unwrap().unwrap();
        assert_eq!((s.sequence, s.skipped), (50, 48));
        assert!(slots.acquire().is_err(), "the stream holds its slot");
        drop(stream);
        assert!(slots.acquire().is_ok(), "dropping the stream frees the slot");
    }

    #[tokio::test]
    async fn shutdown_ends_the_streams() {
        let (_tx, rx) = watch::channel(snap(1));
        let (_etx, erx) = broadcast::channel(4);
        let slots = StreamSlots::watches(2, 2);
        let token = CancellationToken::new();
        let mut s = snapshots(rx, None, token.clone(), slots.acquire().unwrap(), convert::snapshot);
        let mut a = alerts(Vec::new(), erx, Severity::Info, token.clone(), slots.acquire().unwrap());
        assert!(s.next().await.is_some());
        token.cancel();
        assert!(s.next().await.is_none());
        assert!(a.next().await.is_none());
    }
}
