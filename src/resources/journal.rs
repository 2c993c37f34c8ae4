//! What happened recently, for reports and dashboards: the generations queued and running now, the
//! last generations that ended (how fast, how they ended) and the last evictions with their reasons.
//!
//! A plain mutex over small collections: every writer holds it for a push or a removal, readers copy
//! it out. The rings keep [`JOURNAL_LEN`] entries each, oldest dropped first.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
    time::{Instant, SystemTime},
};

use super::device::Device;

/// Entries each ring keeps.
pub const JOURNAL_LEN: usize = 64;

/// A generation admitted and not ended yet.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedGeneration {
    /// Request id.
    pub request_id: String,
    /// Model id.
    pub model: String,
    /// Where it runs.
    pub device: Device,
    /// Seconds of audio asked for.
    pub duration_s: f64,
    /// When it was admitted.
    pub admitted: Instant,
    /// When its worker started decoding it; `None` while it waits.
    pub started: Option<Instant>,
}

/// How a generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every sample was sent.
    Completed,
    /// The client went away or its deadline passed.
    Cancelled,
    /// An error, with its message.
    Failed(String),
}

/// A generation that ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentGeneration {
    /// Request id.
    pub request_id: String,
    /// Model id.
    pub model: String,
    /// Where it ran.
    pub device: Device,
    /// Seconds of audio asked for.
    pub duration_s: f64,
    /// When it ended.
    pub ended_at: SystemTime,
    /// Milliseconds from admission to the first audio; `None` when none was sent.
    pub time_to_first_audio_ms: Option<f64>,
    /// Audio seconds per wall-clock second; 0 when it did not complete.
    pub real_time_factor: f64,
    /// How it ended.
    pub outcome: Outcome,
}

/// A model evicted from the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Eviction {
    /// Model id.
    pub model: String,
    /// Where it lived.
    pub device: Device,
    /// Bytes its cache entry accounted.
    pub bytes: u64,
    /// When.
    pub at: SystemTime,
    /// Why: the cleanup that evicted it and what triggered that.
    pub reason: String,
}

#[derive(Debug, Default)]
struct Inner {
    queue: Vec<QueuedGeneration>,
    recent: VecDeque<RecentGeneration>,
    evictions: VecDeque<Eviction>,
}

/// The journal, shared by the generation service, cleanups and reports.
#[derive(Debug, Clone, Default)]
pub struct Journal {
    inner: Arc<Mutex<Inner>>,
}

fn push_ring<T>(ring: &mut VecDeque<T>, item: T) {
    if ring.len() == JOURNAL_LEN {
        ring.pop_front();
    }
    ring.push_back(item);
}

impl Journal {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding it leaves plain data: keep using it.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A generation was admitted.
    pub fn admitted(&self, entry: QueuedGeneration) {
        self.lock().queue.push(entry);
    }

    /// Its worker started decoding it.
    pub fn started(&self, request_id: &str) {
        let mut inner = self.lock();
        if let Some(e) = inner.queue.iter_mut().find(|e| e.request_id == request_id) {
            e.started.get_or_insert_with(Instant::now);
        }
    }

    /// It ended: out of the queue, into the recent ring.
    pub fn ended(&self, request_id: &str, first_audio_ms: Option<f64>, rtf: f64, outcome: Outcome) {
        let mut inner = self.lock();
        let Some(at) = inner.queue.iter().position(|e| e.request_id == request_id) else { return };
        let e = inner.queue.remove(at);
        let recent = RecentGeneration {
            time_to_first_audio_ms: first_audio_ms,
            request_id: e.request_id,
            model: e.model,
            device: e.device,
            duration_s: e.duration_s,
            ended_at: SystemTime::now(),
            real_time_factor: rtf,
            outcome,
        };
        push_ring(&mut inner.recent, recent);
    }

    /// A model was evicted.
    pub fn evicted(&self, model: &str, device: Device, bytes: u64, reason: &str) {
        let eviction =
            Eviction { model: model.into(), device, bytes, at: SystemTime::now(), reason: reason.into() };
        push_ring(&mut self.lock().evictions, eviction);
    }

    /// The generations not ended, in admission order.
    pub fn queue(&self) -> Vec<QueuedGeneration> {
        self.lock().queue.clone()
    }

    /// The last generations that ended, newest first.
    pub fn recent(&self) -> Vec<RecentGeneration> {
        self.lock().recent.iter().rev().cloned().collect()
    }

    /// The last evictions, newest first.
    pub fn evictions(&self) -> Vec<Eviction> {
        self.lock().evictions.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(id: &str) -> QueuedGeneration {
        QueuedGeneration {
            request_id: id.into(),
            model: "m".into(),
            device: Device::Cpu,
            duration_s: 1.0,
            admitted: Instant::now(),
            started: None,
        }
    }

    #[test]
    fn generations_move_from_the_queue_to_the_recent_ring() {
        let j = Journal::default();
        j.admitted(queued("a"));
        j.admitted(queued("b"));
        j.started("a");
        let q = j.queue();
        assert_eq!((q.len(), q[0].started.is_some(), q[1].started.is_some()), (2, true, false));
        j.ended("a", Some(12.0), 2.5, Outcome::Completed);
        j.ended("a", None, 0.0, Outcome::Cancelled);
        assert_eq!(j.queue().len(), 1);
        let recent = j.recent();
        assert_eq!((recent.len(), recent[0].outcome.clone()), (1, Outcome::Completed));
        assert_eq!(recent[0].time_to_first_audio_ms, Some(12.0));
    }

    #[test]
    fn rings_keep_the_newest() {
        let j = Journal::default();
        for i in 0..JOURNAL_LEN + 5 {
            j.evicted(&format!("m{i}"), Device::Cpu, 1, "test");
        }
        let e = j.evictions();
        assert_eq!(e.len(), JOURNAL_LEN);
        assert_eq!(e[0].model, format!("m{}", JOURNAL_LEN + 4));
    }
}
