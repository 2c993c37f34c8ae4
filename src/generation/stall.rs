//! A client that stops taking its audio costs only itself.
//!
//! The engine never waits on a client: a generation's events go into an unbounded channel that
//! counts what the engine sent, and the stream counts what it took. A client that reads keeps the
//! two level; one that stops reading (its HTTP/2 window closed: a phone in the background, a full
//! proxy) leaves events behind. A stream waiting for the engine (queued, in its prefill) has nothing
//! behind and is never stalled. Once events have been left behind and nothing has been taken for
//! `--stall-timeout-s`, the watchdog task cancels the generation (the engine drops the row from its
//! batch at its next step), gives back its lease and model use and ends its journal line; the
//! stream ends RESOURCE_EXHAUSTED naming the stall should its client ever read again. What collects
//! meanwhile is bounded by the audio the row makes within the timeout.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{progress::JournalEntry, GenerationError, Holds};
use crate::resources::journal::Outcome;

/// What the stream and its watchdog share.
pub(super) struct StallWatch {
    timeout: Duration,
    /// Events the engine sent.
    sent: Arc<AtomicUsize>,
    /// Events the stream took.
    taken: AtomicUsize,
    /// When the stream last took one (or was admitted).
    last_taken: Mutex<Instant>,
    /// Set once the watchdog has stopped the generation.
    stalled: AtomicBool,
}

impl StallWatch {
    /// A watch for a stream admitted now, whose engine counts what it sends in `sent`.
    pub fn new(timeout: Duration, sent: Arc<AtomicUsize>) -> Arc<Self> {
        Arc::new(Self {
            timeout,
            sent,
            taken: AtomicUsize::new(0),
            last_taken: Mutex::new(Instant::now()),
            stalled: AtomicBool::new(false),
        })
    }

    /// The stream took an event (or learnt the engine is done).
    pub fn took(&self) {
        self.taken.fetch_add(1, Ordering::SeqCst);
        *self.last_taken.lock().expect("stall lock") = Instant::now();
    }

    /// The error the stream ends with once stalled.
    pub fn stalled(&self) -> Option<GenerationError> {
        let stalled = self.stalled.load(Ordering::SeqCst);
        stalled.then_some(GenerationError::Stalled { timeout: self.timeout })
    }

    /// Whether the engine has sent events the stream has not taken.
    fn behind(&self) -> bool {
        self.sent.load(Ordering::SeqCst) > self.taken.load(Ordering::SeqCst)
    }
}

/// What the watchdog gives back when the client stalls.
pub(super) struct Stoppable {
    /// Cancels the generation in the engine.
    pub cancel: CancellationToken,
    /// The lease and the model use.
    pub holds: Arc<Mutex<Option<Holds>>>,
    /// The generation's journal line.
    pub journal: Arc<Mutex<JournalEntry>>,
    /// Who the client is, for the log.
    pub peer: Option<SocketAddr>,
    /// Which generation, for the log.
    pub request_id: String,
}

/// Watches `watch` until the stream ends (`done`) or stalls; on a stall, stops the generation and
/// gives back what it holds.
pub(super) async fn watchdog(watch: Arc<StallWatch>, stop: Stoppable, done: CancellationToken) {
    // How often the stream is looked at: a fraction of the timeout, at most a second.
    let recheck = (watch.timeout / 4).min(Duration::from_secs(1));
    // Since when events have been left behind, while they are.
    let mut behind_since: Option<Instant> = None;
    loop {
        tokio::select! {
            () = done.cancelled() => return,
            () = tokio::time::sleep(recheck) => {}
        }
        if !watch.behind() {
            behind_since = None;
            continue;
        }
        let since = *behind_since.get_or_insert_with(Instant::now);
        let quiet_from = since.max(*watch.last_taken.lock().expect("stall lock"));
        if quiet_from.elapsed() >= watch.timeout {
            break;
        }
    }
    watch.stalled.store(true, Ordering::SeqCst);
    let error = GenerationError::Stalled { timeout: watch.timeout };
    let peer = stop.peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
    tracing::warn!(%peer, request_id = stop.request_id, timeout = ?watch.timeout, "client stopped taking its audio; generation cancelled");
    stop.cancel.cancel();
    drop(stop.holds.lock().expect("holds lock").take());
    stop.journal.lock().expect("journal lock").ended(None, 0.0, Outcome::Failed(error.to_string()));
}
