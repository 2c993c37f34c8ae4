//! Wires the configuration into the running server and owns its ordered shutdown.
//!
//! Shutdown order: health NOT_SERVING → cancel every open stream (the [`CancellationToken`] each
//! stream watches; it also closes the HTTP port) → stop accepting and drain in-flight calls → give
//! up after the drain deadline → join the inference workers (within the drain deadline again) and
//! wait for the HTTP port to close its connections.

use std::future::Future;

use std::sync::Arc;

use anyhow::Context;
use tokio::{net::TcpListener, sync::oneshot};
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic_health::server::HealthReporter;

use crate::{
    config::Config,
    grpc::{
        self,
        auth::{AuthLayer, Tokens},
        observe::ObserveLayer,
        pb::{
            generation_service_server::GenerationServiceServer,
            resource_service_server::ResourceServiceServer,
        },
        streams::StreamSlots,
        GenerationApi, ResourceApi,
    },
    inventory::{Compute, Inventory},
    monitor::{
        self,
        sampler::{Sampler, SystemSampler},
        MonitorSettings,
    },
    resources::{
        self,
        cleanup::{self, AutoCleanup, Evictor},
        manager::ManagerSettings,
        requirements::Registry,
    },
};

/// A configured server, ready to serve on a listener.
pub struct App {
    config: Config,
    shutdown: CancellationToken,
    health: HealthReporter,
    health_service: tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
    monitor: monitor::Handle,
    metrics_listener: TcpListener,
    tokens: Option<Tokens>,
    tls: Option<tonic::transport::ServerTlsConfig>,
    metrics_addr: std::net::SocketAddr,
    resources: ResourceApi,
    generation: GenerationApi,
    workers: Workers,
}

/// What the generation side is made of: its gRPC service, the evictor cleanup uses (none without
/// libtorch) and the workers to join at shutdown.
struct GenerationParts {
    api: GenerationApi,
    evictor: Option<Arc<dyn Evictor>>,
    workers: Workers,
}

/// The inference worker threads, joined last at shutdown; nothing to join without libtorch.
#[cfg(feature = "torch")]
type Workers = crate::inference::Pool;
#[cfg(not(feature = "torch"))]
type Workers = ();

/// Where the generation side places its workers.
struct Placement<'a> {
    inventory: &'a Inventory,
    executor: crate::inventory::Executor,
}

/// libtorch's CUDA devices by PCI address, read through the allocator shim (`cudaGetDeviceCount`
/// and `cudaDeviceGetPCIBusId` start the runtime but create no context). Without the shim they cannot
/// be matched to NVML's, so no GPU is placed on (and the log says why).
#[cfg(feature = "torch")]
fn native_compute() -> Compute {
    let cuda_bus_ids: Vec<String> = (0..crate::cuda_alloc::device_count())
        .filter_map(|i| crate::cuda_alloc::pci_bus_id(i).ok())
        .collect();
    let seen = tch::Cuda::device_count();
    if cuda_bus_ids.is_empty() && seen > 0 {
        tracing::warn!(
            devices = seen,
            "libtorch sees CUDA devices but this build lacks the CUDA allocator shim: they cannot be matched to NVML's, so work stays on the CPU"
        );
    }
    Compute { cuda_bus_ids, executor: crate::inventory::Executor::Native }
}

#[cfg(not(feature = "torch"))]
fn native_compute() -> Compute {
    Compute::default()
}

/// The real machine's sampler: NVML, plus libtorch's CUDA allocator figures where it is linked.
fn system_sampler() -> SystemSampler {
    let nvml = crate::monitor::sampler::NvmlSource::init();
    #[cfg(feature = "torch")]
    let gpus = crate::monitor::devices::WithAllocator::new(nvml, Box::new(crate::cuda_alloc::Probe));
    #[cfg(not(feature = "torch"))]
    let gpus = nvml;
    SystemSampler::with_gpus(Box::new(gpus))
}

impl App {
    /// Builds every part from the configuration, sampling the real machine.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with(config, Box::new(system_sampler())).await
    }

    /// Builds every part with another sampler (tests inject scripted readings), computing on what
    /// libtorch finds here.
    pub async fn build_with(config: Config, sampler: Box<dyn Sampler>) -> anyhow::Result<Self> {
        Self::build_on(config, sampler, native_compute()).await
    }

    /// Builds every part with another sampler and another view of libtorch's devices: the tests'
    /// executor seam ([`Compute::cpu_stand_in`]) places work on scripted GPUs and computes on the CPU.
    pub async fn build_on(
        config: Config,
        sampler: Box<dyn Sampler>,
        compute: Compute,
    ) -> anyhow::Result<Self> {
        let shutdown = CancellationToken::new();
        let tls = config.server.tls().as_ref().map(tls_config).transpose()?;
        let tokens = match &config.server.auth_token_file {
            Some(file) => Some(
                Tokens::load(file)
                    .with_context(|| format!("cannot read --auth-token-file {}", file.display()))?,
            ),
            None => None,
        };
        let metrics_listen = config.server.metrics_listen;
        let metrics_listener = TcpListener::bind(metrics_listen)
            .await
            .with_context(|| format!("cannot listen on {metrics_listen} for metrics"))?;
        let metrics_addr = metrics_listener.local_addr()?;
        let health = HealthReporter::new();
        let health_service = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(health.clone()),
        );
        health.set_service_status("", tonic_health::ServingStatus::Serving).await;
        health.set_serving::<ResourceServiceServer<ResourceApi>>().await;
        health.set_serving::<GenerationServiceServer<GenerationApi>>().await;
        let settings = MonitorSettings {
            interval: config.monitor.sample_interval,
            history: config.monitor.history,
            health: config.health.thresholds(),
            alerts: config.alerts.rules(),
        };
        let monitor = monitor::spawn(settings, sampler, shutdown.clone()).await?;
        let inventory =
            Inventory::discover(&monitor.latest().gpu, &compute.cuda_bus_ids, &config.generation.devices)?;
        for line in inventory.describe() {
            tracing::info!("{line}");
        }
        let slots = StreamSlots::new(config.server.max_streams);
        let manager_settings = ManagerSettings {
            safety_margin: config.resources.safety_margin,
            roots: config.models.roots.clone(),
            registry: Arc::new(Registry::new(config.resources.requirements.clone())),
            max_ttl: config.resources.max_lease_ttl,
            suggest_evict_idle: config.resources.suggest_evict_idle,
            placeable_gpus: inventory.placeable(),
        };
        let manager = resources::manager::spawn(manager_settings, monitor.clone(), shutdown.clone());
        let (emergency, emergencies) = tokio::sync::mpsc::channel(4);
        let placement = Placement { inventory: &inventory, executor: compute.executor };
        let GenerationParts { api: generation, evictor, workers } =
            generation_api(&config, placement, manager.clone(), slots.clone(), emergency, shutdown.clone())?;
        let auto = AutoCleanup {
            threshold_percent: config.resources.cleanup_threshold,
            cooldown: config.resources.cleanup_cooldown,
        };
        tokio::spawn(cleanup::watch(
            auto,
            manager.clone(),
            monitor.clone(),
            evictor.clone(),
            emergencies,
            shutdown.clone(),
        ));
        Ok(Self {
            resources: ResourceApi::new(monitor.clone(), manager, slots, shutdown.clone())
                .with_evictor(evictor),
            generation,
            workers,
            config,
            shutdown,
            health,
            health_service,
            monitor,
            metrics_listener,
            metrics_addr,
            tokens,
            tls,
        })
    }

    /// Where `/metrics` is served.
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        self.metrics_addr
    }

    /// The monitor (tests read its state directly).
    pub fn monitor(&self) -> &monitor::Handle {
        &self.monitor
    }

    /// The token every long stream watches; cancelled at shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until `shutdown` completes, then shuts down in order within the drain deadline.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let addr = listener.local_addr().context("listener address")?;
        let pages = crate::http::router(crate::metrics::Exposition::new(self.monitor.subscribe()));
        let settings = crate::http::HttpSettings::default();
        let http =
            tokio::spawn(crate::http::serve(self.metrics_listener, pages, settings, self.shutdown.clone()));
        tracing::info!(addr = %self.metrics_addr, "serving HTTP (Prometheus /metrics)");
        tokio::spawn(follow_readiness(self.monitor.readiness(), self.health.clone(), self.shutdown.clone()));
        let (reflection_v1, reflection_v1alpha) = grpc::reflection();
        if let Some(tokens) = &self.tokens {
            grpc::auth::reload_on_sighup(tokens.clone()).context("SIGHUP handler")?;
        }
        let server = &self.config.server;
        let max_message = server.max_message_bytes;
        let mut builder = Server::builder();
        if let Some(tls) = self.tls {
            builder = builder.tls_config(tls).context("TLS configuration")?;
        }
        let router = builder
            .http2_keepalive_interval(Some(server.keepalive))
            .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
            .max_concurrent_streams(Some(server.max_streams_per_connection))
            .layer(ObserveLayer)
            .layer(AuthLayer::new(self.tokens.clone(), server.public_telemetry))
            .add_service(self.health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(grpc::ResourceRoutes::new(self.resources, max_message))
            .add_service(
                GenerationServiceServer::new(self.generation).max_decoding_message_size(max_message),
            );
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let incoming = grpc::transport::incoming(listener);
        let mut server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
            let _ = stop_rx.await;
        }));
        tracing::info!(%addr, "serving gRPC");

        tokio::select! {
            () = shutdown => {}
            result = &mut server => {
                return result.context("server task")?.context("gRPC server failed");
            }
        }
        grpc::set_all_not_serving(&self.health).await;
        self.shutdown.cancel();
        let _ = stop_tx.send(());
        let deadline = self.config.server.drain_deadline;
        match tokio::time::timeout(deadline, &mut server).await {
            Ok(result) => result.context("server task")?.context("gRPC server failed")?,
            Err(_) => {
                tracing::warn!(?deadline, "drain deadline passed with calls still open; closing them");
                server.abort();
            }
        }
        join_workers(&self.workers, deadline).await;
        // Bounded by the HTTP port's own grace period.
        let _ = http.await;
        tracing::info!("server stopped");
        Ok(())
    }
}

#[cfg(feature = "torch")]
async fn join_workers(pool: &Workers, deadline: std::time::Duration) {
    match pool.shutdown(deadline).await {
        Ok(()) => tracing::info!("inference workers stopped"),
        Err(e) => tracing::warn!(error = %e, "inference workers left running"),
    }
}

#[cfg(not(feature = "torch"))]
async fn join_workers(_: &Workers, _: std::time::Duration) {}

/// Keeps the generation service's health in step with the monitor's readiness until shutdown.
async fn follow_readiness(
    mut ready: tokio::sync::watch::Receiver<bool>,
    health: HealthReporter,
    shutdown: CancellationToken,
) {
    loop {
        let serving = *ready.borrow_and_update();
        let status = if serving {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        health.set_service_status(grpc::GENERATION_SERVICE, status).await;
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = ready.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(feature = "torch")]
fn generation_api(
    config: &Config,
    placement: Placement<'_>,
    manager: resources::manager::Handle,
    slots: StreamSlots,
    emergency: tokio::sync::mpsc::Sender<(resources::validate::Device, String)>,
    shutdown: CancellationToken,
) -> anyhow::Result<GenerationParts> {
    use crate::inference::{
        pin,
        service::{Generation, GenerationSettings},
        Pool, PoolSettings,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let g = &config.generation;
    let devices =
        placement.inventory.worker_devices().into_iter().map(|d| pin(placement.executor, d)).collect();
    let settings = PoolSettings {
        devices,
        workers_per_device: g.per_device_workers(),
        torch_threads: if g.torch_threads > 0 { g.torch_threads } else { cores },
        queue_capacity: g.queue_capacity,
        faults: crate::inference::worker::Faults {
            enabled: g.fault_injection,
            oom_step: g.fault_oom_step,
            oom_min_batch: g.fault_oom_min_batch,
        },
        max_batch: g.max_batch,
    };
    let pool = Pool::start(&settings)?;
    let names: Vec<String> =
        pool.devices().iter().map(|p| format!("{} on {:?}", p.device.name(), p.compute)).collect();
    tracing::info!(workers_per_device = settings.workers_per_device, torch_threads = settings.torch_threads, devices = %names.join(", "), "inference pool started");
    let generation = Generation::new(
        pool.clone(),
        manager.clone(),
        GenerationSettings {
            max_duration_s: g.max_duration_s,
            unload_wait: std::time::Duration::from_secs(10),
            dtype: g.dtype,
        },
        emergency,
    );
    let evictor: Arc<dyn Evictor> = Arc::new(generation.clone());
    let api = GenerationApi::new(generation, manager, slots, shutdown);
    Ok(GenerationParts { api, evictor: Some(evictor), workers: pool })
}

#[cfg(not(feature = "torch"))]
fn generation_api(
    _config: &Config,
    _placement: Placement<'_>,
    manager: resources::manager::Handle,
    slots: StreamSlots,
    _emergency: tokio::sync::mpsc::Sender<(resources::validate::Device, String)>,
    shutdown: CancellationToken,
) -> anyhow::Result<GenerationParts> {
    Ok(GenerationParts { api: GenerationApi::new(manager, slots, shutdown), evictor: None, workers: () })
}

/// Reads the TLS files (at build time, so a bad path is a start-up error naming it).
fn tls_config(files: &crate::config::TlsFiles) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let read = |p: &std::path::Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let identity = Identity::from_pem(read(&files.cert)?, read(&files.key)?);
    let mut tls = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &files.client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(tls)
}
