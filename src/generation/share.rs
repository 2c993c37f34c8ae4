//! Each token name's fair share of the generation queue: at most `limit` generations queued or
//! running per name (`--max-queued-per-token`), so one client cannot take every slot while others
//! wait. Without a token file there is no name, and the queue stays first come, first served.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use super::GenerationError;

/// How many generations each name holds.
#[derive(Debug)]
pub struct Shares {
    limit: usize,
    held: Mutex<HashMap<Arc<str>, usize>>,
}

/// One generation counted against a name; dropping it gives the slot back.
#[derive(Debug)]
pub struct ShareGuard {
    shares: Arc<Shares>,
    name: Arc<str>,
}

impl Shares {
    /// `limit` generations per name (at least 1).
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self { limit: limit.max(1), held: Mutex::default() })
    }

    /// Counts one more generation against `name`, unless it already holds its share.
    pub fn take(self: &Arc<Self>, name: &Arc<str>) -> Result<ShareGuard, GenerationError> {
        let mut held = self.held.lock().expect("shares lock");
        let count = held.entry(name.clone()).or_default();
        if *count >= self.limit {
            let (token, held, limit) = (name.to_string(), *count, self.limit);
            return Err(GenerationError::QueueShare { token, held, limit });
        }
        *count += 1;
        Ok(ShareGuard { shares: self.clone(), name: name.clone() })
    }

    /// Generations `name` holds now.
    #[cfg(test)]
    pub fn held(&self, name: &str) -> usize {
        self.held.lock().expect("shares lock").get(name).copied().unwrap_or(0)
    }
}

impl Drop for ShareGuard {
    fn drop(&mut self) {
        let mut held = self.shares.held.lock().expect("shares lock");
        if let Some(count) = held.get_mut(&self.name) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_holds_at_most_its_share_and_gets_it_back() {
        let shares = Shares::new(2);
        let (ci, batch): (Arc<str>, Arc<str>) = ("ci".into(), "batch".into());
        let first = shares.take(&ci).unwrap();
        let _second = shares.take(&ci).unwrap();
        let err = shares.take(&ci).unwrap_err();
        assert!(matches!(err, GenerationError::QueueShare { ref token, held: 2, limit: 2 } if token == "ci"));
        assert!(err.to_string().contains("--max-queued-per-token 2"), "{err}");
        let _other = shares.take(&batch).unwrap();
        drop(first);
        assert_eq!(shares.held("ci"), 1);
        let _again = shares.take(&ci).unwrap();
        assert_eq!((shares.held("ci"), shares.held("batch"), shares.held("nobody")), (2, 1, 0));
    }
}
