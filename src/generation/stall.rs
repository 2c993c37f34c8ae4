//! A client that stops taking its audio costs only itself.
//!
//! The engine never waits on a client: a generation's events go into an unbounded channel, which a
//! client that reads keeps empty. A client that stops reading (its HTTP/2 window closed: a phone in
//! the background, a full proxy) stops polling its stream, so [`Admitted::next`](super::Admitted::next)
//! is not called. The watch notes when the stream last took something and whether it is waiting
//! for the engine (waiting is never a stall); once it has taken nothing for `--stall-timeout-s`
//! while not waiting, the watchdog task cancels the generation (the engine drops the row from its
//! batch at its next step), gives back its lease and model use, ends its journal line, and the
//! stream ends RESOURCE_EXHAUSTED naming the stall should its client ever read again. What collects
//! meanwhile is bounded by the audio the row makes within the timeout.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
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
    /// When the stream last took an event (or was admitted).
    last_taken: Mutex<Instant>,
    /// Whether the stream is waiting on the engine now.
    waiting: AtomicBool,
    /// Set once the watchdog has stopped the generation.
    stalled: AtomicBool,
}

impl StallWatch {
    /// A watch for a stream admitted now.
    pub fn new(timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            timeout,
            last_taken: Mutex::new(Instant::now()),
            waiting: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
        })
    }

    /// The stream starts waiting for the engine's next event.
    pub fn waiting(&self) {
        self.waiting.store(true, Ordering::SeqCst);
    }

    /// The stream took an event: its client reads.
    pub fn took(&self) {
        *self.last_taken.lock().expect("stall lock") = Instant::now();
        self.waiting.store(false, Ordering::SeqCst);
    }

    /// The error the stream ends with once stalled.
    pub fn stalled(&self) -> Option<GenerationError> {
        let stalled = self.stalled.load(Ordering::SeqCst);
        stalled.then_some(GenerationError::Stalled { timeout: self.timeout })
    }

    /// When the stream, not waiting, will have taken nothing for the timeout; `None` while it waits.
    fn deadline(&self) -> Option<Instant> {
        if self.waiting.load(Ordering::SeqCst) {
            return None;
        }
        Some(*self.last_taken.lock().expect("stall lock") + self.timeout)
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
    // How often a waiting stream is looked at again: a fraction of the timeout, at most a second.
    let recheck = (watch.timeout / 4).min(Duration::from_secs(1));
    loop {
        let at = watch.deadline().unwrap_or_else(|| Instant::now() + recheck);
        tokio::select! {
            () = done.cancelled() => return,
            () = tokio::time::sleep_until(at) => {}
        }
        if watch.deadline().is_some_and(|d| d <= Instant::now()) {
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
