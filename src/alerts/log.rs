//! The bounded alert log: every alert raised, oldest first. When full, the oldest resolved entry
//! makes room, so active alerts stay listed.

use std::{collections::VecDeque, time::SystemTime};

use super::{Alert, AlertEvent, EventKind, Severity};

/// The log and its capacity.
#[derive(Debug)]
pub(super) struct AlertLog {
    entries: VecDeque<Alert>,
    capacity: usize,
}

impl AlertLog {
    /// An empty log of `capacity` entries (at least one).
    pub(super) fn new(capacity: usize) -> Self {
        Self { entries: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// Appends a newly raised alert.
    pub(super) fn push(&mut self, alert: Alert) {
        if self.entries.len() >= self.capacity {
            let pos = self.entries.iter().position(|a| !a.is_active()).unwrap_or(0);
            self.entries.remove(pos);
        }
        self.entries.push_back(alert);
    }

    /// Marks alert `id` resolved at `now`; `None` when it has left the log.
    pub(super) fn resolve(&mut self, id: &str, now: SystemTime) -> Option<AlertEvent> {
        let alert = self.entries.iter_mut().find(|a| a.id == id)?;
        alert.resolved_at = Some(now);
        Some(AlertEvent { kind: EventKind::Resolved, alert: alert.clone() })
    }

    /// Alerts not yet resolved, oldest first.
    pub(super) fn active(&self) -> Vec<Alert> {
        self.entries.iter().filter(|a| a.is_active()).cloned().collect()
    }

    /// The log, newest first, filtered; `limit` 0 = all.
    pub(super) fn list(&self, min_severity: Severity, active_only: bool, limit: usize) -> Vec<Alert> {
        let limit = if limit == 0 { usize::MAX } else { limit };
        self.entries
            .iter()
            .rev()
            .filter(|a| a.severity >= min_severity && (!active_only || a.is_active()))
            .take(limit)
            .cloned()
            .collect()
    }
}
