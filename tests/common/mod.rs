//! Test harness: starts the real server in-process on `127.0.0.1:0` and hands back connected
//! generated clients plus a shutdown handle (no fixed ports, no sleeps).
#![allow(dead_code)]

use std::{net::SocketAddr, time::Duration};

use maestro::{
    app::App,
    config::Config,
    pb::{
        generation_service_client::GenerationServiceClient, resource_service_client::ResourceServiceClient,
    },
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

/// A running server and clients connected to it.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// A channel to it (clone for more clients).
    pub channel: Channel,
    /// ResourceService client.
    pub resources: ResourceServiceClient<Channel>,
    /// GenerationService client.
    pub generation: GenerationServiceClient<Channel>,
    /// Health client.
    pub health: HealthClient<Channel>,
    stop: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The embedded defaults with test-friendly endpoints and a short drain deadline.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.metrics_listen = "127.0.0.1:0".parse().unwrap();
    config.server.drain_deadline = Duration::from_secs(5);
    config
}

/// Starts a server with `config` on an ephemeral port.
pub async fn start_server(config: Config) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = App::build(config).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let join = tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    TestServer {
        addr,
        resources: ResourceServiceClient::new(channel.clone()),
        generation: GenerationServiceClient::new(channel.clone()),
        health: HealthClient::new(channel.clone()),
        channel,
        stop: Some(stop),
        join: Some(join),
    }
}

impl TestServer {
    /// Triggers the shutdown and waits for the server to return.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        self.join.take().unwrap().await?
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
