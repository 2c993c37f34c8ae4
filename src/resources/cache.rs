//! The model cache's bookkeeping: what is loaded where, how big it is (estimated and measured), who
//! is using it, and which entries eviction may take. Plain data; the inference worker that owns the
//! tensors performs an eviction when told.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime},
};

use super::{device::Device, requirements::DType};
use crate::engine::Loaded;

/// A model that counts as recently used for a non-forced cleanup.
pub const RECENT: Duration = Duration::from_secs(60);

/// One loaded model.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedModel {
    /// Model id.
    pub model: String,
    /// Where its tensors live.
    pub device: Device,
    /// Decoder precision.
    pub dtype: DType,
    /// Bytes the requirements predicted.
    pub estimated_bytes: u64,
    /// Bytes measured at load (host RSS or device memory delta).
    pub measured_bytes: Option<u64>,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// Last time a request started or finished with it.
    pub last_used: Instant,
    /// Requests using it now.
    pub in_flight: u32,
    /// Kept through non-forced cleanups and pressure eviction.
    pub pinned: bool,
    /// The engine's handle and the model's facts; `None` only in records made without an engine
    /// (tests of the bookkeeping).
    pub loaded: Option<Loaded>,
    /// An unload has begun: no request may start using it, and no second unload or eviction begins.
    pub unloading: bool,
}

impl CachedModel {
    /// The best figure for its size: measured when known.
    pub fn bytes(&self) -> u64 {
        self.measured_bytes.unwrap_or(self.estimated_bytes)
    }

    fn idle(&self) -> bool {
        self.in_flight == 0 && !self.unloading
    }
}

/// Why a cache operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The model is not loaded.
    #[error("model {0} is not loaded")]
    NotLoaded(String),
    /// The model has requests in flight.
    #[error("model {model} is in use by {in_flight} request(s)")]
    InUse {
        /// Model id.
        model: String,
        /// Requests using it.
        in_flight: u32,
    },
    /// An unload of the model has begun.
    #[error("model {0} is being unloaded")]
    Unloading(String),
}

/// Every loaded model, by id.
#[derive(Debug, Default, Clone)]
pub struct ModelCache {
    entries: BTreeMap<String, CachedModel>,
}

impl ModelCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a loaded model (replacing an older record of the same id).
    pub fn insert(&mut self, entry: CachedModel) {
        self.entries.insert(entry.model.clone(), entry);
    }

    /// The record of a model.
    pub fn get(&self, model: &str) -> Option<&CachedModel> {
        self.entries.get(model)
    }

    /// Every record, by id.
    pub fn entries(&self) -> impl Iterator<Item = &CachedModel> {
        self.entries.values()
    }

    /// Bytes of every loaded model.
    pub fn total_bytes(&self) -> u64 {
        self.entries.values().map(CachedModel::bytes).sum()
    }

    /// A request starts using `model`: it cannot be evicted until [`ModelCache::end_use`].
    pub fn begin_use(&mut self, model: &str, now: Instant) -> Result<(), CacheError> {
        let e = self.entries.get_mut(model).ok_or_else(|| CacheError::NotLoaded(model.into()))?;
        if e.unloading {
            return Err(CacheError::Unloading(model.into()));
        }
        e.in_flight += 1;
        e.last_used = now;
        Ok(())
    }

    /// A request is done with `model`.
    pub fn end_use(&mut self, model: &str, now: Instant) {
        if let Some(e) = self.entries.get_mut(model) {
            e.in_flight = e.in_flight.saturating_sub(1);
            e.last_used = now;
        }
    }

    /// Pins or unpins a model.
    pub fn set_pinned(&mut self, model: &str, pinned: bool) -> Result<(), CacheError> {
        let e = self.entries.get_mut(model).ok_or_else(|| CacheError::NotLoaded(model.into()))?;
        e.pinned = pinned;
        Ok(())
    }

    /// Forgets a model that was unloaded; refused while it is in use.
    pub fn remove(&mut self, model: &str) -> Result<CachedModel, CacheError> {
        self.check_idle(model)?;
        Ok(self.entries.remove(model).expect("checked by check_idle"))
    }

    fn check_idle(&self, model: &str) -> Result<&CachedModel, CacheError> {
        let e = self.entries.get(model).ok_or_else(|| CacheError::NotLoaded(model.into()))?;
        if e.unloading {
            return Err(CacheError::Unloading(model.into()));
        }
        if e.in_flight > 0 {
            return Err(CacheError::InUse { model: model.into(), in_flight: e.in_flight });
        }
        Ok(e)
    }

    /// Begins unloading an idle model: it stays recorded (its weights are still resident) but no
    /// request may start using it until [`ModelCache::finish_unload`] forgets it or
    /// [`ModelCache::abort_unload`] gives it back. Returns the record as it was.
    pub fn begin_unload(&mut self, model: &str) -> Result<CachedModel, CacheError> {
        let entry = self.check_idle(model)?.clone();
        self.entries.get_mut(model).expect("checked by check_idle").unloading = true;
        Ok(entry)
    }

    /// The engine dropped the model's weights: forgets it.
    pub fn finish_unload(&mut self, model: &str) -> Option<CachedModel> {
        self.entries.remove(model)
    }

    /// The engine refused the unload: the model is usable again.
    pub fn abort_unload(&mut self, model: &str) {
        if let Some(e) = self.entries.get_mut(model) {
            e.unloading = false;
        }
    }

    /// Models a cleanup may evict, least recently used first: idle ones always; unless `force`,
    /// not pinned and not used within [`RECENT`]. A model in use is never a candidate.
    pub fn evictable(&self, now: Instant, force: bool) -> Vec<&CachedModel> {
        let mut out: Vec<&CachedModel> = self
            .entries
            .values()
            .filter(|e| e.idle())
            .filter(|e| force || (!e.pinned && now.saturating_duration_since(e.last_used) >= RECENT))
            .collect();
        out.sort_by_key(|e| e.last_used);
        out
    }

    /// Victims under memory pressure: idle, unpinned, least recently used first; max(2, n/3) of them,
    /// or more while `still_needed` bytes remain to be freed.
    pub fn pressure_victims(&self, still_needed: u64) -> Vec<String> {
        let mut idle: Vec<&CachedModel> = self.entries.values().filter(|e| e.idle() && !e.pinned).collect();
        idle.sort_by_key(|e| e.last_used);
        let quota = (self.entries.len() / 3).max(2);
        let mut freed = 0u64;
        let mut out = Vec::new();
        for e in idle {
            if out.len() >= quota && freed >= still_needed {
                break;
            }
            freed += e.bytes();
            out.push(e.model.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(model: &str, bytes: u64, last_used: Instant) -> CachedModel {
        CachedModel {
            model: model.into(),
            device: Device::Cpu,
            dtype: DType::F32,
            estimated_bytes: bytes,
            measured_bytes: None,
            loaded_at: SystemTime::now(),
            last_used,
            in_flight: 0,
            pinned: false,
            loaded: None,
            unloading: false,
        }
    }

    #[test]
    fn in_use_and_recent_models_are_spared() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(600);
        let mut c = ModelCache::new();
        c.insert(entry("old", 10, t0));
        c.insert(entry("busy", 20, t0));
        c.insert(entry("recent", 30, later - Duration::from_secs(5)));
        c.insert(entry("pinned", 40, t0));
        c.set_pinned("pinned", true).unwrap();
        c.begin_use("busy", t0).unwrap();
        let names = |v: Vec<&CachedModel>| v.into_iter().map(|e| e.model.clone()).collect::<Vec<_>>();
        assert_eq!(names(c.evictable(later, false)), vec!["old"]);
        assert_eq!(names(c.evictable(later, true)), vec!["old", "pinned", "recent"]);
        assert!(matches!(c.remove("busy"), Err(CacheError::InUse { in_flight: 1, .. })));
        c.end_use("busy", later);
        assert!(c.remove("busy").is_ok());
        assert_eq!(c.get("old").unwrap().bytes(), 10);
    }

    #[test]
    fn pressure_takes_at_least_two_or_what_it_needs() {
        let t0 = Instant::now();
        let mut c = ModelCache::new();
        for (i, name) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
            c.insert(entry(name, 100, t0 + Duration::from_secs(i as u64)));
        }
        assert_eq!(c.pressure_victims(0), vec!["a", "b"]);
        assert_eq!(c.pressure_victims(350), vec!["a", "b", "c", "d"]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Load(u8),
        Begin(u8),
        End(u8),
        Evict(u8),
        Pressure,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6).prop_map(Op::Load),
            (0u8..6).prop_map(Op::Begin),
            (0u8..6).prop_map(Op::End),
            (0u8..6).prop_map(Op::Evict),
            Just(Op::Pressure),
        ]
    }

    proptest! {
        #[test]
        fn an_in_use_model_is_never_evicted(ops in proptest::collection::vec(op(), 1..200)) {
            let t0 = Instant::now();
            let mut c = ModelCache::new();
            let mut users = [0u32; 6];
            for (step, op) in ops.into_iter().enumerate() {
                let now = t0 + Duration::from_secs(step as u64 * 30);
                match op {
                    Op::Load(m) => if c.get(&m.to_string()).is_none() { c.insert(entry(&m.to_string(), 100, now)) },
                    Op::Begin(m) => if c.begin_use(&m.to_string(), now).is_ok() { users[m as usize] += 1 },
                    Op::End(m) => if users[m as usize] > 0 { users[m as usize] -= 1; c.end_use(&m.to_string(), now) },
                    Op::Evict(m) => {
                        let removed = c.remove(&m.to_string()).is_ok();
                        prop_assert!(!(removed && users[m as usize] > 0));
                    }
                    Op::Pressure => {
                        for victim in c.pressure_victims(u64::MAX) {
                            prop_assert_eq!(users[victim.parse::<usize>().unwrap()], 0);
                            c.remove(&victim).unwrap();
                        }
                    }
                }
                for e in c.entries() {
                    prop_assert_eq!(e.in_flight, users[e.model.parse::<usize>().unwrap()]);
                }
                for e in c.evictable(now, true) {
                    prop_assert_eq!(users[e.model.parse::<usize>().unwrap()], 0);
                }
            }
        }
    }
}
