//! `grpc.health.v1.Health` over Maestro's own status table, so that shutdown can end its `Watch`
//! streams (with OK, like every other watch) when the server stops accepting: a client-side health
//! watch would otherwise hold the drain open until its deadline. The same table answers on the main
//! port and on the plaintext `--health-listen` port.
//!
//! Services: `""` is liveness (NOT_SERVING only when the process is wedged), `maestro.v1.GenerationService`
//! is readiness ("can take work"), `maestro.v1.ResourceService` answers while the server serves.
//! What sets them is [`crate::probes`]'s.

use std::collections::BTreeMap;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tonic_health::pb::{
    health_check_response::ServingStatus,
    health_server::{Health, HealthServer},
    HealthCheckRequest, HealthCheckResponse,
};

use super::{streams::BoxStream, GENERATION_SERVICE, RESOURCE_SERVICE};

/// The health of every service, shared by the probes that set it and the services that answer it.
#[derive(Clone)]
pub struct HealthTable {
    statuses: watch::Sender<BTreeMap<String, bool>>,
    /// Cancelled when the server stops accepting: every open `Watch` ends with OK.
    watches_end: CancellationToken,
}

impl HealthTable {
    /// Liveness and the resource service SERVING, the generation service NOT_SERVING until the
    /// probes say it can take work.
    pub fn new(watches_end: CancellationToken) -> Self {
        let initial = [("", true), (RESOURCE_SERVICE, true), (GENERATION_SERVICE, false)];
        let statuses = initial.into_iter().map(|(s, up)| (s.to_string(), up)).collect();
        Self { statuses: watch::Sender::new(statuses), watches_end }
    }

    /// Sets `service`'s status; watchers hear only changes.
    pub fn set(&self, service: &str, serving: bool) {
        self.statuses.send_if_modified(|all| all.insert(service.to_string(), serving) != Some(serving));
    }

    /// Whether `service` is SERVING (`None`: not a service of this server).
    pub fn serving(&self, service: &str) -> Option<bool> {
        self.statuses.borrow().get(service).copied()
    }

    /// Every service but liveness NOT_SERVING: the start of a drain.
    pub fn not_ready(&self) {
        for service in [RESOURCE_SERVICE, GENERATION_SERVICE] {
            self.set(service, false);
        }
    }

    /// The gRPC service answering from this table.
    pub fn service(&self) -> HealthServer<HealthApi> {
        HealthServer::new(HealthApi { table: self.clone() })
    }
}

/// The `Health` service.
pub struct HealthApi {
    table: HealthTable,
}

fn response(serving: Option<bool>) -> HealthCheckResponse {
    let status = match serving {
        Some(true) => ServingStatus::Serving,
        Some(false) => ServingStatus::NotServing,
        None => ServingStatus::ServiceUnknown,
    };
    HealthCheckResponse { status: status as i32 }
}

#[tonic::async_trait]
impl Health for HealthApi {
    async fn check(&self, req: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        let service = req.into_inner().service;
        match self.table.serving(&service) {
            Some(up) => Ok(Response::new(response(Some(up)))),
            None => Err(Status::not_found(format!("unknown service {service:?}"))),
        }
    }

    type WatchStream = BoxStream<HealthCheckResponse>;

    /// The service's status now, then each change, until the server stops accepting. An unknown
    /// service is SERVICE_UNKNOWN, and the stream stays open, as the protocol says.
    async fn watch(&self, req: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let service = req.into_inner().service;
        let mut statuses = self.table.statuses.subscribe();
        let end = self.table.watches_end.clone().cancelled_owned();
        let changes = async_stream(move |tx| async move {
            let mut last = None;
            tokio::pin!(end);
            loop {
                let now = statuses.borrow_and_update().get(&service).copied();
                if last != Some(now) {
                    last = Some(now);
                    if tx.send(Ok(response(now))).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    () = &mut end => return,
                    changed = statuses.changed() => if changed.is_err() { return },
                }
            }
        });
        Ok(Response::new(changes))
    }
}

/// A stream fed by a spawned producer through a small channel (the tonic streaming examples' way): the
/// producer stops when the client goes (its send fails).
fn async_stream<F, Fut>(producer: F) -> BoxStream<HealthCheckResponse>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<HealthCheckResponse, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(producer(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watch_hears_each_change_once_and_ends_when_watches_end() {
        let end = CancellationToken::new();
        let table = HealthTable::new(end.clone());
        let api = HealthApi { table: table.clone() };
        let ask = || Request::new(HealthCheckRequest { service: GENERATION_SERVICE.into() });
        let mut watch = api.watch(ask()).await.unwrap().into_inner();
        let status = |r: Option<Result<HealthCheckResponse, Status>>| r.unwrap().unwrap().status;
        assert_eq!(status(watch.next().await), ServingStatus::NotServing as i32);
        table.set(GENERATION_SERVICE, true);
        table.set(GENERATION_SERVICE, true);
        table.set("", true);
        assert_eq!(status(watch.next().await), ServingStatus::Serving as i32);
        table.not_ready();
        assert_eq!(status(watch.next().await), ServingStatus::NotServing as i32);
        end.cancel();
        assert!(watch.next().await.is_none(), "the watch ends with OK");
        let err = api.check(Request::new(HealthCheckRequest { service: "nope".into() })).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
    }
}
