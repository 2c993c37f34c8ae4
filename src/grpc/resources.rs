//! `maestro.v1.ResourceService`: telemetry, validation, leases, cleanup and advice.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::{
    convert,
    pb::{self, resource_service_server::ResourceService},
    requests,
    streams::{self, BoxStream, StreamSlots},
};
use crate::{
    error::Error,
    monitor,
    resources::{
        cleanup::{self, Evictor},
        manager, optimizer,
        validate::{self, Device},
    },
};

/// The ResourceService handlers.
#[derive(Clone)]
pub struct ResourceApi {
    monitor: monitor::Handle,
    manager: manager::Handle,
    evictor: Option<Arc<dyn Evictor>>,
    slots: StreamSlots,
    shutdown: CancellationToken,
}

impl ResourceApi {
    /// Handlers over the monitor, the stream cap and the shutdown token.
    pub fn new(
        monitor: monitor::Handle,
        manager: manager::Handle,
        slots: StreamSlots,
        shutdown: CancellationToken,
    ) -> Self {
        Self { monitor, manager, evictor: None, slots, shutdown }
    }

    /// Who evicts models for `Cleanup` (the inference pool, when there is one).
    pub fn with_evictor(mut self, evictor: Option<Arc<dyn Evictor>>) -> Self {
        self.evictor = evictor;
        self
    }

    /// A `WatchSnapshots` stream of `message(snapshot, skipped)`, once the request is valid and a
    /// stream slot is free. Shared by the generated route and [`super::fanout`].
    pub(super) fn watch_snapshots_as<T, F>(
        &self,
        req: pb::WatchSnapshotsRequest,
        message: F,
    ) -> Result<BoxStream<T>, Error>
    where
        T: Send + 'static,
        F: Fn(&monitor::snapshot::Snapshot, u64) -> T + Send + 'static,
    {
        let interval = requests::snapshot_interval(req.interval_ms, self.monitor.settings().interval)?;
        let slot = self.slots.acquire()?;
        let rx = self.monitor.subscribe();
        Ok(streams::snapshots(rx, interval, self.shutdown.clone(), slot, message))
    }

    async fn suggestions(
        &self,
        snapshot: &monitor::snapshot::Snapshot,
    ) -> Result<Vec<pb::Suggestion>, Error> {
        let cached = self.manager.cached().await?;
        let warning = self.monitor.settings().health.warning_percent;
        let list = optimizer::suggest(snapshot, &cached, warning, std::time::Instant::now());
        Ok(list.iter().map(convert::suggestion).collect())
    }

    fn history_limit(&self) -> u64 {
        self.monitor.settings().history.as_secs()
    }
}

#[tonic::async_trait]
impl ResourceService for ResourceApi {
    async fn get_status(&self, _: Request<pb::StatusRequest>) -> Result<Response<pb::Snapshot>, Status> {
        Ok(Response::new(convert::snapshot(&self.monitor.latest(), 0)))
    }

    async fn get_report(
        &self,
        _: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ResourceReport>, Status> {
        let snapshot = self.monitor.latest();
        let window = self.monitor.settings().history.min(Duration::from_secs(300));
        let samples = self.monitor.history(window).await?;
        let cached = self.manager.cached().await?;
        let active = self.monitor.alerts(crate::alerts::Severity::Info, true, 0).await?;
        Ok(Response::new(pb::ResourceReport {
            snapshot: Some(convert::snapshot(&snapshot, 0)),
            window_stats: monitor::history::window_stats(&samples)
                .iter()
                .map(convert::metric_stats)
                .collect(),
            window_seconds: window.as_secs() as u32,
            leases: self.manager.leases().await?.iter().map(convert::lease).collect(),
            cached_models: cached.iter().map(convert::cached_model).collect(),
            active_alerts: active.iter().map(convert::alert).collect(),
            health: convert::health(snapshot.health) as i32,
            suggestions: self.suggestions(&snapshot).await?,
            requirements: cached.iter().map(convert::requirement_comparison).collect(),
        }))
    }

    async fn get_history(&self, req: Request<pb::HistoryRequest>) -> Result<Response<pb::History>, Status> {
        let window = requests::history_window(req.into_inner().window_seconds, self.history_limit())?;
        let samples = self.monitor.history(Duration::from_secs(window.into())).await?;
        Ok(Response::new(pb::History {
            window_seconds: window,
            stats: monitor::history::window_stats(&samples).iter().map(convert::metric_stats).collect(),
            samples: samples.iter().map(|s| convert::snapshot(s, 0)).collect(),
        }))
    }

    async fn validate_model(
        &self,
        req: Request<pb::ValidateRequest>,
    ) -> Result<Response<pb::ValidationResult>, Status> {
        let question = requests::fit_question(req.into_inner())?;
        let (model, duration) = (question.model.clone(), question.duration_s);
        let answer = self.manager.fit(question).await?;
        Ok(Response::new(convert::validation(&model, duration, &answer)))
    }

    async fn allocate(&self, req: Request<pb::AllocateRequest>) -> Result<Response<pb::Lease>, Status> {
        let request = requests::lease_request(req.into_inner(), self.manager.settings().max_ttl)?;
        let lease = self.manager.allocate(request).await?;
        tracing::info!(lease = %lease.id.as_str(), owner = %lease.owner, cpu = lease.cpu_bytes, gpu = lease.gpu_bytes, "lease granted");
        Ok(Response::new(convert::lease(&lease)))
    }

    async fn release(
        &self,
        req: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let id = requests::lease_id(&req.into_inner())?;
        let lease = self.manager.release(id).await?;
        Ok(Response::new(pb::ReleaseResponse { lease: Some(convert::lease(&lease)) }))
    }

    async fn cleanup(&self, req: Request<pb::CleanupRequest>) -> Result<Response<pb::CleanupResult>, Status> {
        let req = req.into_inner();
        metrics::counter!("maestro_cleanups_total", "trigger" => "manual").increment(1);
        let evictor = self.evictor.as_deref();
        let report =
            cleanup::run(&self.manager, &self.monitor, evictor, req.force, req.dry_run, None).await?;
        Ok(Response::new(convert::cleanup(&report)))
    }

    async fn get_optimization_suggestions(
        &self,
        _: Request<pb::SuggestionsRequest>,
    ) -> Result<Response<pb::Suggestions>, Status> {
        let snapshot = self.monitor.latest();
        let suggestions = self.suggestions(&snapshot).await?;
        Ok(Response::new(pb::Suggestions { suggestions, health: convert::health(snapshot.health) as i32 }))
    }

    async fn get_optimal_batch_size(
        &self,
        req: Request<pb::BatchSizeRequest>,
    ) -> Result<Response<pb::BatchSizeAdvice>, Status> {
        let req = req.into_inner();
        let question = requests::batch_question(&req)?;
        let answer = self.manager.fit(question.clone()).await?;
        let snapshot = self.monitor.latest();
        let (on_gpu, free) = match answer.verdict().device {
            Device::Cuda(i) => {
                (true, snapshot.gpu.devices.iter().find(|d| d.index == i).map_or(0, |d| d.memory_free_bytes))
            }
            _ => (false, snapshot.effective.available_bytes),
        };
        let memory = if req.gpu_memory_bytes > 0 { req.gpu_memory_bytes } else { free };
        let r = &answer.requirements;
        let advice = validate::optimal_batch(r, memory, answer.margin, on_gpu, requests::MAX_BATCH);
        Ok(Response::new(pb::BatchSizeAdvice {
            model: question.model,
            batch_size: advice.batch,
            memory_bytes: advice.memory_bytes,
            usable_bytes: advice.usable_bytes,
            weights_bytes: r.weights_bytes,
            per_sample_bytes: r.per_sample_bytes,
            safety_margin: answer.margin,
            cfg_factor: 2,
            duration_s: question.duration_s,
            source: convert::source(r.source) as i32,
            device: answer.verdict().device.name(),
            reason: advice.reason,
        }))
    }

    async fn list_alerts(
        &self,
        req: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::AlertList>, Status> {
        let req = req.into_inner();
        let min = convert::min_severity(req.min_severity, "min_severity")?;
        let alerts = self.monitor.alerts(min, req.active_only, req.limit as usize).await?;
        Ok(Response::new(pb::AlertList { alerts: alerts.iter().map(convert::alert).collect() }))
    }

    type WatchSnapshotsStream = BoxStream<pb::Snapshot>;
    async fn watch_snapshots(
        &self,
        req: Request<pb::WatchSnapshotsRequest>,
    ) -> Result<Response<Self::WatchSnapshotsStream>, Status> {
        Ok(Response::new(self.watch_snapshots_as(req.into_inner(), convert::snapshot)?))
    }

    type WatchAlertsStream = BoxStream<pb::AlertEvent>;
    async fn watch_alerts(
        &self,
        req: Request<pb::WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let min = convert::min_severity(req.into_inner().min_severity, "min_severity")?;
        let slot = self.slots.acquire()?;
        let (active, events) = self.monitor.watch_alerts().await?;
        Ok(Response::new(streams::alerts(active, events, min, self.shutdown.clone(), slot)))
    }
}
