//! `maestro.v1.ResourceService`: telemetry, validation, leases, cleanup and advice.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::{
    auth::{Caller, Role},
    convert,
    pb::{self, resource_service_server::ResourceService},
    reports::SharedReports,
    requests,
    streams::{self, BoxStream, StreamSlots},
};
use crate::{
    error::Error,
    monitor,
    resources::{
        cleanup::{self, Evictor},
        ledger::Releaser,
        manager, report,
    },
};

/// The ResourceService handlers.
#[derive(Clone)]
pub struct ResourceApi {
    monitor: monitor::Handle,
    manager: manager::Handle,
    evictor: Option<Arc<dyn Evictor>>,
    slots: StreamSlots,
    reports: SharedReports,
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
        let reports = SharedReports::new(manager.clone(), monitor.clone());
        Self { monitor, manager, evictor: None, slots, reports, shutdown }
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
        peer: Option<std::net::SocketAddr>,
        message: F,
    ) -> Result<BoxStream<T>, Error>
    where
        T: Send + 'static,
        F: Fn(&monitor::snapshot::Snapshot, u64) -> T + Send + 'static,
    {
        let interval = requests::snapshot_interval(req.interval_ms, self.monitor.settings().interval)?;
        let slot = self.slots.acquire_from(peer)?;
        let rx = self.monitor.subscribe();
        Ok(streams::snapshots(rx, interval, self.shutdown.clone(), slot, message))
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
        req: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ResourceReport>, Status> {
        let report = report::report(&self.manager, &self.monitor).await?;
        let mut report = convert::report(&report);
        if !Caller::of(req.extensions()).sees_lease_ids() {
            convert::hide_lease_ids(&mut report);
        }
        Ok(Response::new(report))
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
        let answer = self.manager.fit(question).await?;
        Ok(Response::new(convert::validation(&answer)))
    }

    async fn allocate(&self, req: Request<pb::AllocateRequest>) -> Result<Response<pb::Lease>, Status> {
        let token = Caller::of(req.extensions()).name().map(|n| n.to_string());
        let settings = self.manager.settings();
        let limits = (settings.max_ttl, settings.min_lease_bytes);
        let request = requests::lease_request(req.into_inner(), limits, token)?;
        let lease = self.manager.allocate(request).await?;
        tracing::info!(lease = %lease.id.as_str(), owner = %lease.owner, token = lease.token, cpu = lease.cpu_bytes, gpu = lease.gpu_bytes, "lease granted");
        Ok(Response::new(convert::lease(&lease)))
    }

    async fn release(
        &self,
        req: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let caller = Caller::of(req.extensions());
        let by = Releaser::Client {
            token: caller.name().map(|n| n.to_string()),
            any: caller.role() == Role::Admin,
        };
        let id = requests::lease_id(&req.into_inner())?;
        let lease = self.manager.release(id, by).await?;
        tracing::info!(lease = %lease.id.as_str(), owner = %lease.owner, caller = caller.name().map(|n| n.to_string()), "lease released");
        Ok(Response::new(pb::ReleaseResponse { lease: Some(convert::lease(&lease)) }))
    }

    async fn cleanup(&self, req: Request<pb::CleanupRequest>) -> Result<Response<pb::CleanupResult>, Status> {
        let req = req.into_inner();
        metrics::counter!("maestro_cleanups_total", "trigger" => crate::resources::cleanup::Trigger::Manual.name()).increment(1);
        let evictor = self.evictor.as_deref();
        let reason = if req.force { "Cleanup requested (force)" } else { "Cleanup requested" };
        let flags = (req.force, req.dry_run);
        let report = cleanup::run(&self.manager, &self.monitor, evictor, flags, None, reason).await?;
        Ok(Response::new(convert::cleanup(&report)))
    }

    async fn get_optimization_suggestions(
        &self,
        _: Request<pb::SuggestionsRequest>,
    ) -> Result<Response<pb::Suggestions>, Status> {
        let snapshot = self.monitor.latest();
        let suggestions = report::suggestions(&self.manager, &self.monitor, &snapshot).await?;
        Ok(Response::new(pb::Suggestions {
            suggestions: suggestions.iter().map(convert::suggestion).collect(),
            health: convert::health(snapshot.health) as i32,
        }))
    }

    async fn get_optimal_batch_size(
        &self,
        req: Request<pb::BatchSizeRequest>,
    ) -> Result<Response<pb::BatchSizeAdvice>, Status> {
        let question = requests::batch_question(&req.into_inner())?;
        let answer = self.manager.batch_advice(question).await?;
        Ok(Response::new(convert::batch_advice(&answer)))
    }

    async fn list_alerts(
        &self,
        req: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::AlertList>, Status> {
        let req = req.into_inner();
        let min = convert::min_severity(req.min_severity, "min_severity")?;
        let exact = match req.severity {
            0 => None,
            value => Some(convert::min_severity(value, "severity")?),
        };
        let mut alerts = self.monitor.alerts(min, req.active_only, 0).await?;
        alerts.retain(|a| exact.is_none_or(|s| a.severity == s));
        // Newest first: the limit keeps the newest `limit` of the matching entries.
        if req.limit > 0 {
            alerts.truncate(req.limit as usize);
        }
        Ok(Response::new(pb::AlertList { alerts: alerts.iter().map(convert::alert).collect() }))
    }

    type WatchSnapshotsStream = BoxStream<pb::Snapshot>;
    async fn watch_snapshots(
        &self,
        req: Request<pb::WatchSnapshotsRequest>,
    ) -> Result<Response<Self::WatchSnapshotsStream>, Status> {
        let peer = super::auth::peer_addr(req.extensions());
        Ok(Response::new(self.watch_snapshots_as(req.into_inner(), peer, convert::snapshot)?))
    }

    type WatchAlertsStream = BoxStream<pb::AlertEvent>;
    async fn watch_alerts(
        &self,
        req: Request<pb::WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let peer = super::auth::peer_addr(req.extensions());
        let min = convert::min_severity(req.into_inner().min_severity, "min_severity")?;
        let slot = self.slots.acquire_from(peer)?;
        let (active, events) = self.monitor.watch_alerts().await?;
        Ok(Response::new(streams::alerts(active, events, min, self.shutdown.clone(), slot)))
    }

    type WatchReportStream = BoxStream<pb::ResourceReport>;
    async fn watch_report(
        &self,
        req: Request<pb::WatchReportRequest>,
    ) -> Result<Response<Self::WatchReportStream>, Status> {
        let show_ids = Caller::of(req.extensions()).sees_lease_ids();
        let peer = super::auth::peer_addr(req.extensions());
        let interval = requests::report_interval(req.into_inner().interval_ms)?;
        let slot = self.slots.acquire_from(peer)?;
        let (shared, shutdown) = (self.reports.clone(), self.shutdown.clone());
        Ok(Response::new(streams::reports(shared, interval, shutdown, slot, show_ids)))
    }
}
