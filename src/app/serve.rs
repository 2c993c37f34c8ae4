//! Serving, and the drain that a rolling update relies on. The first shutdown request (SIGTERM,
//! SIGINT):
//!
//! 1. every service but liveness (`""`) goes NOT_SERVING at once, on the main and the health port,
//!    while the server keeps serving for `--drain-grace-s`, so endpoint controllers and clients'
//!    health watches move traffic away;
//! 2. the server stops accepting (new connections are refused, open ones get GOAWAY), and every
//!    watch stream (snapshots, alerts, health) ends with OK;
//! 3. in-flight `Generate` streams finish, for at most `--drain-deadline-s`; those still running then
//!    are cancelled and end with UNAVAILABLE saying so;
//! 4. the monitor, the manager, cleanup, the HTTP port and the health port stop, the inference workers
//!    are joined (for at most [`WORKER_JOIN`]), and `serve` returns Ok (the process exits 0).
//!
//! So a shutdown takes at most grace + deadline + [`SHUTDOWN_OVERHEAD`].
//!
//! A second request skips whatever waiting is left (the grace, then the deadline).

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

use super::App;
use crate::{
    engine::Engine,
    grpc::{
        self,
        auth::{AuthLayer, OriginPolicy},
        deadline::DeadlineLayer,
        health_service::HealthTable,
        observe::ObserveLayer,
    },
    shutdown::Signals,
};

/// How long streams cancelled at the deadline get to send their status before connections close.
const LAST_WORDS: Duration = Duration::from_secs(2);

/// How long the inference workers get to end once every generation is cancelled: one decoding step
/// or the end of a load. A worker still busy then (a load of a large checkpoint) is left to the
/// process's exit.
const WORKER_JOIN: Duration = Duration::from_secs(5);

/// The most a shutdown takes past `--drain-grace-s` + `--drain-deadline-s`: the cancelled streams'
/// last words, then the workers' join. A pod's `terminationGracePeriodSeconds` must cover grace +
/// deadline + this.
pub const SHUTDOWN_OVERHEAD: Duration = Duration::from_secs(LAST_WORDS.as_secs() + WORKER_JOIN.as_secs());

type GrpcServer = JoinHandle<Result<(), tonic::transport::Error>>;

impl App {
    /// Serves until the first shutdown request, then drains (see the module's steps).
    pub async fn serve(mut self, listener: TcpListener, mut signals: Signals) -> anyhow::Result<()> {
        let dashboard = crate::dashboard::DashboardInfo {
            scheme: if self.tls.is_some() { "https" } else { "http" },
            port: listener.local_addr().context("gRPC listener address")?.port(),
            history_seconds: self.config.monitor.history.as_secs(),
        };
        let exposition = crate::metrics::Exposition::new(self.monitor.subscribe());
        let pages = crate::http::router(exposition, dashboard);
        let metrics_listener = self.metrics_listener.take().context("served once")?;
        let http = tokio::spawn(crate::http::serve(
            metrics_listener,
            pages,
            crate::http::HttpSettings::default(),
            self.shutdown.clone(),
        ));
        tracing::info!(addr = %self.metrics_addr, "serving HTTP (Prometheus /metrics)");
        let health_port =
            self.health_listener.take().map(|l| serve_health(l, &self.health, self.shutdown.clone()));
        // Decided before the first call can ask, then followed.
        let first = crate::probes::decide(
            &mut self.monitor.readiness(),
            self.readiness.queue_has_room.as_ref(),
            &mut self.readiness.warm.clone(),
        );
        self.health.set(grpc::GENERATION_SERVICE, first.is_ok());
        let draining = CancellationToken::new();
        tokio::spawn(crate::probes::follow_readiness(
            self.health.clone(),
            self.monitor.readiness(),
            self.readiness.queue_has_room.clone(),
            self.readiness.warm.clone(),
            draining.clone(),
        ));
        self.watch_files().context("SIGHUP handler")?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let mut server = self.grpc_server(listener, stop_rx)?;

        let first = tokio::select! {
            name = signals.next() => name,
            result = &mut server => return result.context("server task")?.context("gRPC server failed"),
        };
        draining.cancel();
        self.drain(first, &mut signals, stop_tx, &mut server).await?;
        self.shutdown.cancel();
        join_workers(&self.workers, WORKER_JOIN).await;
        // Bounded by the HTTP port's own grace period.
        let _ = http.await;
        if let Some(port) = health_port {
            let _ = port.await;
        }
        tracing::info!("server stopped");
        Ok(())
    }

    /// Steps 1 to 3: not ready while still serving, stop accepting and end the watches, let the
    /// generations finish within the deadline.
    async fn drain(
        &self,
        first: &str,
        signals: &mut Signals,
        stop_accepting: oneshot::Sender<()>,
        server: &mut GrpcServer,
    ) -> anyhow::Result<()> {
        self.health.not_ready();
        let (grace, deadline) = (self.config.server.drain_grace, self.config.server.drain_deadline);
        tracing::info!(
            signal = first,
            ?grace,
            ?deadline,
            "draining: NOT_SERVING, still serving for the grace"
        );
        let mut skip = tokio::select! {
            () = tokio::time::sleep(grace) => false,
            name = signals.next() => {
                tracing::warn!(signal = name, "second shutdown request: skipping the drain's waiting");
                true
            }
        };
        let _ = stop_accepting.send(());
        self.watches.cancel();
        if !skip {
            skip = tokio::select! {
                result = &mut *server => return result.context("server task")?.context("gRPC server failed"),
                () = tokio::time::sleep(deadline) => false,
                name = signals.next() => {
                    tracing::warn!(signal = name, "second shutdown request: not waiting for the generations");
                    true
                }
            };
        }
        tracing::warn!(skipped = skip, ?deadline, "cancelling the generations still running");
        self.generations.cancel();
        match tokio::time::timeout(LAST_WORDS, &mut *server).await {
            Ok(result) => result.context("server task")?.context("gRPC server failed"),
            Err(_) => {
                server.abort();
                Ok(())
            }
        }
    }

    /// Re-reads the token file and the TLS files when they change and on SIGHUP, until shutdown.
    fn watch_files(&mut self) -> std::io::Result<()> {
        if let (Some(tokens), Some(files)) = (self.tokens.clone(), self.reloads.tokens.take()) {
            files.spawn(move || tokens.reload().map(drop), self.shutdown.clone())?;
        }
        if let (Some(tls), Some(files)) = (self.tls.clone(), self.reloads.tls.take()) {
            files.spawn(move || tls.reload(), self.shutdown.clone())?;
        }
        Ok(())
    }

    /// The gRPC server on `listener`, until `stop` (then it drains its open calls).
    fn grpc_server(&self, listener: TcpListener, stop: oneshot::Receiver<()>) -> anyhow::Result<GrpcServer> {
        let addr = listener.local_addr().context("listener address")?;
        let (reflection_v1, reflection_v1alpha) = grpc::reflection();
        let server = &self.config.server;
        let max_message = server.max_message_bytes;
        let generation =
            grpc::GenerationRoutes::new(self.generation.clone(), max_message, server.max_unary_message_bytes);
        let origins = OriginPolicy::new(self.metrics_addr.port(), server.cors_origins());
        let router = Server::builder()
            .http2_keepalive_interval(Some(server.keepalive))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .max_concurrent_streams(Some(server.max_streams_per_connection))
            .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
            // gRPC-Web for the dashboard: HTTP/1.1 accepted, CORS for the allowed origins only.
            .accept_http1(true)
            .layer(crate::dashboard::cors(origins.clone()))
            // The HTTP/JSON API: each call becomes its RPC's gRPC call through the layers below.
            .layer(crate::gateway::GatewayLayer::new(max_message))
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(ObserveLayer)
            .layer(AuthLayer::new(self.tokens.clone(), server.public_telemetry, origins))
            .layer(DeadlineLayer::new(server.request_timeout, server.load_timeout))
            .add_service(self.health.service())
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(grpc::ResourceRoutes::new(self.resources.clone(), server.max_unary_message_bytes))
            .add_service(generation);
        let stop = async {
            let _ = stop.await;
        };
        announce(addr, self.tls.is_some(), self.tokens.is_some());
        Ok(match self.tls.clone() {
            Some(tls) => {
                let incoming = grpc::tls::incoming(listener, tls, server.max_connections);
                tokio::spawn(router.serve_with_incoming_shutdown(incoming, stop))
            }
            None => {
                let incoming = grpc::transport::incoming(listener, server.max_connections);
                tokio::spawn(router.serve_with_incoming_shutdown(incoming, stop))
            }
        })
    }
}

/// Says where gRPC is served, and warns when hosts beyond this one may reach it with no token to show.
fn announce(addr: std::net::SocketAddr, tls: bool, tokens: bool) {
    tracing::info!(%addr, tls, "serving gRPC");
    if !tokens && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "listening beyond loopback with no --auth-token-file: whoever reaches the port may \
             generate, load and unload models"
        );
    }
}

/// Largest HTTP/2 header list a request may send (hyper's default, stated so that it is documented
/// and tested here): a bearer token and gRPC metadata need a few hundred bytes. HTTP/1.1 heads are
/// bounded by hyper's own limits (100 headers, a ~400 KiB read buffer, 30 s to send the head).
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// Connections the health port holds at once: probes open one at a time, a few per kubelet.
const HEALTH_CONNECTIONS: usize = 256;

/// Serves the health service alone, in plaintext, on `listener` (kubelet's gRPC probes speak neither
/// TLS nor mTLS), until `stop`.
fn serve_health(listener: TcpListener, health: &HealthTable, stop: CancellationToken) -> JoinHandle<()> {
    let service = health.service();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving the gRPC health service (plaintext)");
    }
    let incoming = grpc::transport::incoming(listener, HEALTH_CONNECTIONS);
    tokio::spawn(async move {
        let serve = Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned());
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "the health port failed");
        }
    })
}

async fn join_workers(engine: &Arc<dyn Engine>, deadline: Duration) {
    match engine.shutdown(deadline).await {
        Ok(()) => tracing::info!("inference workers stopped"),
        Err(e) => tracing::warn!(error = %e, "inference workers left running"),
    }
}
