//! The HTTP port: an axum [`Router`] served by hyper over HTTP/1.1. It serves `GET /metrics` (the
//! Prometheus exposition, rendered at each scrape) and the live dashboard at `/`
//! ([`crate::dashboard`]); any other path is 404.
//!
//! Every connection must send a whole request head within [`HttpSettings::header_read_timeout`], on
//! connect and between keep-alive requests, or hyper closes it: a client that connects and sends
//! nothing holds a task for that long and no longer. At shutdown the listener closes, each open
//! connection finishes the response it is writing and closes, and connections still open after
//! [`HttpSettings::grace`] are dropped.

use std::{io, net::SocketAddr, time::Duration};

use axum::{extract::State, http::header::CONTENT_TYPE, response::IntoResponse, routing::get, Router};
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;

use crate::metrics::Exposition;

/// The content type of the Prometheus text exposition format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How the HTTP port treats its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Time a connection has to send a request head, from connect and between requests (default
    /// 5 s; a scraper sends its request at once).
    pub header_read_timeout: Duration,
    /// Time open connections have to finish at shutdown before they are dropped (default 5 s).
    pub grace: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self { header_read_timeout: Duration::from_secs(5), grace: Duration::from_secs(5) }
    }
}

/// The pages of the HTTP port: `GET /metrics` renders `metrics`, the dashboard's pages reach the gRPC
/// port `dashboard` names; every other path is 404.
pub fn router(metrics: Exposition, dashboard: crate::dashboard::DashboardInfo) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(metrics)
        .merge(crate::dashboard::routes(dashboard))
}

async fn render_metrics(State(metrics): State<Exposition>) -> impl IntoResponse {
    ([(CONTENT_TYPE, PROMETHEUS_TEXT)], metrics.render())
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then closes every connection
/// within `settings.grace` and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: HttpSettings,
    shutdown: CancellationToken,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(settings.header_read_timeout);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            // Reap finished connections so the set holds only open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = accept(&listener, &shutdown) => match accepted {
                Some(accepted) => accepted,
                None => continue,
            },
        };
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "HTTP connection closed with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(settings.grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            grace = ?settings.grace,
            open = connections.len(),
            "HTTP connections still open after the grace period; dropping them"
        );
    }
    connections.shutdown().await;
}

/// The next connection; `None` after an accept error, which is logged. Errors that are not about
/// one connection (out of file descriptors) pause accepting for a second instead of spinning.
async fn accept(listener: &TcpListener, shutdown: &CancellationToken) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok(accepted) => Some(accepted),
        Err(e) if is_connection_error(&e) => None,
        Err(e) => {
            tracing::warn!(error = %e, "HTTP accept failed; retrying in 1 s");
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            None
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}
