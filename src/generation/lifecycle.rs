//! Loading and unloading models, so that weights are never resident unrecorded, never recorded
//! without weights, and never loaded twice.
//!
//! A load and an unload each run in a task of their own that the caller awaits: a caller that gives
//! up (a client deadline, a disconnect) drops only its wait, and the task still finishes the work and
//! records it (or rolls it back). Loads of one model share one task: a request for a model whose
//! load is under way waits for that load instead of starting another, and loads run one at a time,
//! so each fit verdict sees the previous load's lease. An unload first marks the record (no new use
//! may start), then asks the engine; an engine that refuses (a full queue) leaves the model recorded
//! and usable.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, SystemTime},
};

use futures::{
    future::{BoxFuture, Shared},
    FutureExt,
};

use super::{lease_for, Generation, GenerationError};
use crate::{
    engine::{EngineError, LoadOrder, Loaded, ModelFacts},
    error::Error,
    resources::{
        cache::{CacheError, CachedModel},
        device::RequestedDevice,
        ledger::LeaseKind,
        manager::{FitQuestion, LeaseGuard},
        model_id,
        requirements::{DType as ReqDType, Need},
    },
};

/// A load under way, which any number of requests can await.
type SharedLoad = Shared<BoxFuture<'static, Result<Loaded, Error>>>;

/// What a load is asked for.
#[derive(Debug, Clone)]
struct Ask {
    model: String,
    dtype: ReqDType,
    device: RequestedDevice,
    pin: bool,
}

/// The loads under way, by model, and the lock that runs them one at a time.
#[derive(Default)]
pub(super) struct Loads {
    running: Mutex<HashMap<String, SharedLoad>>,
    serial: tokio::sync::Mutex<()>,
}

impl Generation {
    /// `LoadModel`: loads `model` on `device` (`auto` places it as `ValidateModel` would) unless it is
    /// loaded, then pins or unpins it.
    pub async fn load_model(
        &self,
        model: &str,
        dtype: ReqDType,
        device: RequestedDevice,
        pin: bool,
    ) -> Result<ModelFacts, Error> {
        self.accepts()?;
        let loaded = self.ensure_loaded(model, dtype, device, pin).await?;
        self.manager.pin(model, pin).await?;
        Ok(loaded.facts)
    }

    /// Loads `model` on `device` unless it is loaded: placed and validated by the fit verdict, leased
    /// on the device it goes to while loading, recorded in the cache with its measured size. A model
    /// loaded on another device than the one asked for is FAILED_PRECONDITION: a server holds one copy
    /// of a model, and moving it is an unload and a load.
    pub async fn ensure_loaded(
        &self,
        model: &str,
        dtype: ReqDType,
        device: RequestedDevice,
        pin: bool,
    ) -> Result<Loaded, Error> {
        if let Some(loaded) = self.loaded(model, device).await? {
            return Ok(loaded);
        }
        let loaded = self.load_task(Ask { model: model.into(), dtype, device, pin }).await?;
        // Another request may have started the load this one joined, for another device.
        check_device(model, loaded, device)
    }

    /// The load of `model` under way, or a new one in a task of its own.
    fn load_task(&self, ask: Ask) -> SharedLoad {
        let mut running = self.loads.running.lock().expect("loads lock");
        if let Some(load) = running.get(&ask.model) {
            return load.clone();
        }
        let (this, model) = (self.clone(), ask.model.clone());
        let task = tokio::spawn(async move {
            let out = this.load_now(&ask).await;
            // Recorded (or failed) before it is forgotten here: a request that finds no load under
            // way finds the record.
            this.loads.running.lock().expect("loads lock").remove(&ask.model);
            out
        });
        let load = async move {
            task.await.unwrap_or_else(|e| {
                Err(GenerationError::Internal(format!("the model load stopped: {e}")).into())
            })
        }
        .boxed()
        .shared();
        running.insert(model, load.clone());
        load
    }

    /// The load itself, one at a time.
    async fn load_now(&self, ask: &Ask) -> Result<Loaded, Error> {
        let Ask { model, dtype, device, pin } = ask.clone();
        let model = model.as_str();
        let _serial = self.loads.serial.lock().await;
        if let Some(loaded) = self.loaded(model, device).await? {
            return Ok(loaded);
        }
        let question = FitQuestion {
            model: model.into(),
            batch: 1,
            duration_s: 1.0,
            device,
            dtype,
            audio_prompt_s: 0.0,
            conversion_bytes: 0,
        };
        let answer = self.manager.fit(question).await?;
        let verdict = answer.verdict();
        if !verdict.fits {
            return Err(GenerationError::DoesNotFit(verdict.summary(model)).into());
        }
        let found = model_id::resolve(model, &self.roots)?;
        // The weights, the runtime and a first CUDA context; the working set is a generation's.
        let need = Need { batch: 0, working_set_bytes: 0, ..verdict.need.clone() };
        let lease =
            self.manager.lease(lease_for(&format!("load:{model}"), LeaseKind::ModelLoad, &need)).await?;
        let order = LoadOrder { model: model.into(), dir: found.dir, dtype, device: verdict.device };
        let loaded = match self.engine.load(order).await {
            Err(EngineError::OutOfMemory(oom)) => return Err(self.out_of_memory(*oom).into()),
            other => other.map_err(GenerationError::from)?,
        };
        metrics::counter!("maestro_model_loads_total", "model" => model.to_string()).increment(1);
        let weights = answer.requirements.weights_bytes();
        let facts = &loaded.facts;
        let entry = CachedModel {
            model: model.into(),
            device: facts.device,
            dtype,
            estimated_bytes: weights,
            measured_bytes: Some(facts.measured_bytes),
            loaded_at: SystemTime::now(),
            last_used: std::time::Instant::now(),
            in_flight: 0,
            pinned: pin,
            loaded: Some(loaded.clone()),
            unloading: false,
        };
        if let Err(e) = self.manager.register(entry).await {
            // Weights no record names would stay until a restart: give them back.
            if let Err(unload) = self.engine.unload(&loaded.handle).await {
                tracing::error!(model, error = %unload, "cannot unload a model that could not be recorded");
            }
            return Err(e);
        }
        self.release_when_measured(lease);
        tracing::info!(model, device = %facts.device.name(), measured = facts.measured_bytes, estimated = weights, "model loaded");
        Ok(loaded)
    }

    /// `model` as the cache records it when it is loaded where `device` asks (`auto`: anywhere). A
    /// model being unloaded (an eviction, say) is waited for: the request then loads it again.
    async fn loaded(&self, model: &str, device: RequestedDevice) -> Result<Option<Loaded>, Error> {
        let Some(entry) = self.manager.settled_model(model).await? else { return Ok(None) };
        let loaded = entry
            .loaded
            .ok_or_else(|| GenerationError::Internal(format!("{model} is recorded without its engine")))?;
        check_device(model, loaded, device).map(Some)
    }

    /// Keeps a load's lease until a sample taken after the load shows its weights in the device's
    /// measured usage (at most five sampling intervals), so no verdict in between counts them nowhere.
    fn release_when_measured(&self, lease: LeaseGuard) {
        let monitor = self.manager.monitor().clone();
        let (loaded, within) = (SystemTime::now(), monitor.settings().interval * 5);
        tokio::spawn(async move {
            if !monitor.sampled_after(loaded, within).await {
                tracing::warn!(lease = %lease.lease().id.as_str(), "no sample after the load; releasing its lease anyway");
            }
            drop(lease);
        });
    }

    /// Unloads `model`; in use → FAILED_PRECONDITION, or with `force` waits up to the unload deadline.
    /// An engine that cannot take the unload (a full queue) leaves the model recorded and usable.
    pub async fn unload(&self, model: &str, force: bool) -> Result<CachedModel, Error> {
        self.accepts()?;
        let deadline = tokio::time::Instant::now() + self.settings.unload_wait;
        let entry = loop {
            match self.manager.begin_unload(model).await? {
                Err(CacheError::InUse { .. }) if force && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                begun => break begun?,
            }
        };
        let this = self.clone();
        // The unload outlives a caller that gives up, so the record follows the weights either way.
        tokio::spawn(async move { this.finish_unload(entry).await })
            .await
            .map_err(|e| GenerationError::Internal(format!("the model unload stopped: {e}")))?
    }

    /// Asks the engine to drop an entry marked as unloading, then forgets it, or makes it usable
    /// again when the engine refused.
    async fn finish_unload(&self, entry: CachedModel) -> Result<CachedModel, Error> {
        let dropped = match &entry.loaded {
            Some(loaded) => self.engine.unload(&loaded.handle).await,
            None => Ok(()),
        };
        self.manager.end_unload(&entry.model, dropped.is_ok()).await?;
        if let Err(e) = &dropped {
            tracing::warn!(model = entry.model, error = %e, "the engine refused an unload; the model stays loaded");
        }
        dropped.map(|()| entry).map_err(Error::from)
    }
}

/// `loaded` when it lives where `device` asks (`auto`: anywhere).
fn check_device(model: &str, loaded: Loaded, device: RequestedDevice) -> Result<Loaded, Error> {
    let at = loaded.facts.device;
    match device {
        RequestedDevice::On(asked) if asked != at => {
            Err(GenerationError::OnAnotherDevice { model: model.into(), at, asked }.into())
        }
        _ => Ok(loaded),
    }
}
