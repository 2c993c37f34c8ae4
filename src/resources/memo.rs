//! A short memo of requirement lookups. Dashboards and admission ask the same validation question
//! many times a second, and each fresh answer costs file-system calls on a blocking thread.
//!
//! An answer is fresh for [`TTL`]. For one more `TTL` it is still served while a single refresh
//! runs in the background (stale-while-revalidate), so a busy key never sends every concurrent caller
//! to the blocking pool at once, the latency spike a plain expiry caused every `TTL`. A checkpoint
//! replaced on disk is therefore seen within `TTL` plus one lookup; an answer older than `2 × TTL`
//! is never served.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::requirements::{DType, Requirements};

/// How long an answer is fresh.
pub const TTL: Duration = Duration::from_secs(2);

/// What a lookup is keyed on: model, dtype, batch, duration (bits).
pub type Key = (String, DType, u32, u64);

/// What the memo knows of a key.
#[derive(Debug, PartialEq)]
pub enum Recall {
    /// Younger than [`TTL`].
    Fresh(Requirements),
    /// Older than [`TTL`]; `refresh` is true for exactly one caller, who must refresh the key.
    Stale {
        /// The last answer.
        requirements: Requirements,
        /// Whether this caller starts the refresh.
        refresh: bool,
    },
    /// Unknown, or too old to serve.
    Missing,
}

struct Entry {
    at: Instant,
    requirements: Requirements,
    refreshing: bool,
}

/// The memo (see the module header).
#[derive(Default)]
pub struct Memo {
    entries: Mutex<HashMap<Key, Entry>>,
}

impl Memo {
    /// What is known of `key` at `now`.
    pub fn recall(&self, key: &Key, now: Instant) -> Recall {
        let mut entries = self.entries.lock().expect("memo lock");
        let Some(entry) = entries.get_mut(key) else { return Recall::Missing };
        let age = now.saturating_duration_since(entry.at);
        if age < TTL {
            Recall::Fresh(entry.requirements.clone())
        } else if age < 2 * TTL {
            let refresh = !entry.refreshing;
            entry.refreshing = true;
            Recall::Stale { requirements: entry.requirements.clone(), refresh }
        } else {
            Recall::Missing
        }
    }

    /// Records a fresh answer for `key` at `now`, dropping answers too old to serve.
    pub fn remember(&self, key: Key, requirements: Requirements, now: Instant) {
        let mut entries = self.entries.lock().expect("memo lock");
        entries.retain(|_, e| now.saturating_duration_since(e.at) < 2 * TTL);
        entries.insert(key, Entry { at: now, requirements, refreshing: false });
    }

    /// Drops `key` (its refresh failed: the next caller looks it up and sees the error).
    pub fn forget(&self, key: &Key) {
        self.entries.lock().expect("memo lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::requirements::{DType, Registry};

    fn answer(duration_s: f64) -> Requirements {
        let registry = Registry::default();
        registry.table("facebook/musicgen-small").expect("built-in row").requirements(DType::F32, duration_s)
    }

    fn key() -> Key {
        ("facebook/musicgen-small".into(), DType::F32, 1, 10f64.to_bits())
    }

    #[test]
    fn fresh_then_stale_with_one_refresher_then_missing() {
        let (memo, t0) = (Memo::default(), Instant::now());
        assert_eq!(memo.recall(&key(), t0), Recall::Missing);
        memo.remember(key(), answer(10.0), t0);
        assert_eq!(memo.recall(&key(), t0 + TTL / 2), Recall::Fresh(answer(10.0)));
        let stale = t0 + TTL + Duration::from_millis(1);
        assert_eq!(memo.recall(&key(), stale), Recall::Stale { requirements: answer(10.0), refresh: true });
        assert_eq!(memo.recall(&key(), stale), Recall::Stale { requirements: answer(10.0), refresh: false });
        assert_eq!(memo.recall(&key(), t0 + 2 * TTL), Recall::Missing);
    }

    #[test]
    fn a_refresh_makes_the_answer_fresh_and_a_failed_one_forgets_it() {
        let (memo, t0) = (Memo::default(), Instant::now());
        memo.remember(key(), answer(10.0), t0);
        let later = t0 + TTL + Duration::from_millis(1);
        assert!(matches!(memo.recall(&key(), later), Recall::Stale { refresh: true, .. }));
        memo.remember(key(), answer(20.0), later);
        assert_eq!(memo.recall(&key(), later), Recall::Fresh(answer(20.0)));
        memo.forget(&key());
        assert_eq!(memo.recall(&key(), later), Recall::Missing);
    }

    #[test]
    fn answers_too_old_to_serve_are_dropped() {
        let (memo, t0) = (Memo::default(), Instant::now());
        memo.remember(key(), answer(10.0), t0);
        let other = ("facebook/musicgen-large".into(), DType::F16, 2, 5f64.to_bits());
        memo.remember(other, answer(5.0), t0 + 2 * TTL);
        assert_eq!(memo.entries.lock().unwrap().len(), 1);
    }
}
