//! Wires the configuration into the running server; [`serve`] serves it and owns its ordered
//! shutdown (the drain).

mod serve;

pub use serve::SHUTDOWN_OVERHEAD;

use std::sync::Arc;

use anyhow::Context;
use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;

use crate::{
    config::Config,
    engine::Engine,
    generation::{Generation, GenerationSettings},
    grpc::{
        auth::Tokens, health_service::HealthTable, streams::StreamSlots, tls::ServerTls, GenerationApi,
        ResourceApi,
    },
    inventory::{Compute, Inventory},
    monitor::{self, sampler::Sampler, MonitorSettings},
    reload,
    resources::{
        self,
        cleanup::{self, AutoCleanup, Evictor},
        ledger::TokenShare,
        manager::ManagerSettings,
        requirements::Registry,
    },
};

/// A configured server, ready to serve on a listener.
pub struct App {
    config: Config,
    /// Cancelled last, once the gRPC server has drained: the monitor, the manager, cleanup, the HTTP
    /// port and the watchdog stop.
    shutdown: CancellationToken,
    /// Cancelled when the server stops accepting: snapshot, alert and health watches end with OK.
    watches: CancellationToken,
    /// Cancelled at the drain deadline: the generations still running end with UNAVAILABLE.
    generations: CancellationToken,
    health: HealthTable,
    readiness: ReadinessInputs,
    monitor: monitor::Handle,
    /// The HTTP port's listener, until `serve` takes it.
    metrics_listener: Option<TcpListener>,
    tokens: Option<Tokens>,
    tls: Option<ServerTls>,
    /// The token and TLS files as loaded, watched from `serve` on.
    reloads: Reloads,
    metrics_addr: std::net::SocketAddr,
    /// The plaintext health port (`--health-listen`), bound at build so a bad address fails the start.
    health_listener: Option<TcpListener>,
    resources: ResourceApi,
    generation: GenerationApi,
    /// The inference engine, stopped last at shutdown.
    workers: Arc<dyn Engine>,
}

/// The files re-read when they change, fingerprinted before their first load.
#[derive(Default)]
struct Reloads {
    tokens: Option<reload::Files>,
    tls: Option<reload::Files>,
}

/// What the generation side is made of: its gRPC service, the evictor cleanup uses (none without
/// libtorch), the workers to join at shutdown and what readiness reads from it.
struct GenerationParts {
    api: GenerationApi,
    evictor: Option<Arc<dyn Evictor>>,
    workers: Arc<dyn Engine>,
    readiness: ReadinessInputs,
}

/// What the generation side tells readiness: whether its queue has room, whether the warm model is
/// loaded.
#[derive(Clone)]
struct ReadinessInputs {
    queue_has_room: Arc<dyn Fn() -> bool + Send + Sync>,
    warm: watch::Receiver<bool>,
}

impl App {
    /// Builds every part from the configuration, sampling the real machine.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with(config, Box::new(crate::inference::host::system_sampler())).await
    }

    /// Builds every part with another sampler (tests inject scripted readings), computing on what
    /// libtorch finds here.
    pub async fn build_with(config: Config, sampler: Box<dyn Sampler>) -> anyhow::Result<Self> {
        Self::build_on(config, sampler, crate::inference::host::native_compute()).await
    }

    /// Builds every part with another sampler and another view of libtorch's devices: the tests'
    /// executor seam ([`Compute::cpu_stand_in`]) places work on scripted GPUs and computes on the CPU.
    pub async fn build_on(
        config: Config,
        sampler: Box<dyn Sampler>,
        compute: Compute,
    ) -> anyhow::Result<Self> {
        let (shutdown, watches, generations) =
            (CancellationToken::new(), CancellationToken::new(), CancellationToken::new());
        let mut reloads = Reloads::default();
        let tls = match config.server.tls() {
            Some(files) => {
                reloads.tls = Some(reload::Files::new("tls", files.paths()));
                Some(ServerTls::load(files, config.server.tls_handshake_timeout)?)
            }
            None => None,
        };
        let tokens = match &config.server.auth_token_file {
            Some(file) => {
                reloads.tokens = Some(reload::Files::new("auth_tokens", vec![file.clone()]));
                let tokens = Tokens::load(file)
                    .with_context(|| format!("cannot read --auth-token-file {}", file.display()))?;
                Some(tokens)
            }
            None => None,
        };
        let metrics_listen = config.server.metrics_listen;
        let metrics_listener = TcpListener::bind(metrics_listen)
            .await
            .with_context(|| format!("cannot listen on {metrics_listen} for metrics"))?;
        let metrics_addr = metrics_listener.local_addr()?;
        let health_listener = match config.server.health_listen {
            Some(at) => Some(
                TcpListener::bind(at)
                    .await
                    .with_context(|| format!("cannot listen on {at} for --health-listen"))?,
            ),
            None => None,
        };
        let health = HealthTable::new(watches.clone());
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
        let (generations_slots, watch_slots) = (
            StreamSlots::generations(config.server.max_streams),
            StreamSlots::watches(config.server.max_watches, config.server.max_watches_per_connection),
        );
        let manager_settings = ManagerSettings {
            safety_margin: config.resources.safety_margin,
            roots: model_roots(&config.models),
            registry: Arc::new(Registry::new(config.resources.requirements.clone())),
            max_ttl: config.resources.max_lease_ttl,
            min_lease_bytes: config.resources.min_lease_bytes,
            suggest_evict_idle: config.resources.suggest_evict_idle,
            placeable_gpus: inventory.placeable(),
            max_duration_s: config.generation.max_duration_s,
            token_share: TokenShare {
                max_leases: config.resources.max_leases_per_token,
                max_bytes: config.resources.max_lease_bytes_per_token,
                max_total: config.resources.max_leases,
            },
        };
        let manager = resources::manager::spawn(manager_settings, monitor.clone(), shutdown.clone());
        let (emergency, emergencies) = tokio::sync::mpsc::channel(4);
        let engine = crate::inference::host::start_engine(&config, &inventory, compute.executor)?;
        let GenerationParts { api: generation, evictor, workers, readiness } = generation_api(
            &config,
            engine,
            manager.clone(),
            generations_slots,
            emergency,
            generations.clone(),
        );
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
        let watchdog = crate::probes::Watchdog::for_interval(config.monitor.sample_interval)
            .with_workers(workers.clone(), config.generation.worker_stuck_after);
        watchdog.spawn(health.clone(), monitor.clone(), shutdown.clone())?;
        Ok(Self {
            resources: ResourceApi::new(monitor.clone(), manager, watch_slots, watches.clone())
                .with_evictor(evictor),
            generation,
            workers,
            config,
            shutdown,
            watches,
            generations,
            health,
            readiness,
            monitor,
            metrics_listener: Some(metrics_listener),
            metrics_addr,
            health_listener,
            tokens,
            tls,
            reloads,
        })
    }

    /// Where `/metrics` is served.
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        self.metrics_addr
    }

    /// Where the plaintext health port listens (`--health-listen`), if it is on.
    pub fn health_addr(&self) -> Option<std::net::SocketAddr> {
        self.health_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The monitor (tests read its state directly).
    pub fn monitor(&self) -> &monitor::Handle {
        &self.monitor
    }
}

fn generation_api(
    config: &Config,
    engine: Arc<dyn Engine>,
    manager: resources::manager::Handle,
    slots: StreamSlots,
    emergency: tokio::sync::mpsc::Sender<(resources::device::Device, String)>,
    shutdown: CancellationToken,
) -> GenerationParts {
    let g = &config.generation;
    let settings = GenerationSettings {
        max_duration_s: g.max_duration_s,
        unload_wait: std::time::Duration::from_secs(10),
        dtype: g.dtype,
        stall_timeout: g.stall_timeout,
        max_queued_per_token: match g.max_queued_per_token {
            0 => (g.queue_capacity / 2).max(1),
            n => n,
        },
    };
    let generation = Generation::new(engine.clone(), manager.clone(), settings, emergency);
    // Nothing loads on an engine that refuses, so nothing can be evicted there, and a warm model
    // configured there keeps the server unready, as a failed load does.
    let (evictor, warm) = match engine.refusal() {
        None => {
            let evictor: Arc<dyn Evictor> = Arc::new(generation.clone());
            (Some(evictor), warm_up(&generation, g.warm_model.clone(), g.dtype))
        }
        Some(_) => (None, watch::channel(g.warm_model.is_none()).1),
    };
    let queue = engine.clone();
    let readiness = ReadinessInputs { queue_has_room: Arc::new(move || queue.has_room()), warm };
    let api =
        GenerationApi::new(generation, manager, slots, shutdown).with_audio_limits(audio_limits(config));
    GenerationParts { api, evictor, workers: engine, readiness }
}

/// The model roots and the hub cache, with a line saying which cache is searched and why.
fn model_roots(models: &crate::config::ModelsConfig) -> crate::resources::model_id::ModelRoots {
    let roots = models.model_roots();
    match &roots.hub_cache {
        Some(cache) => {
            tracing::info!(hub_cache = %cache.display(), setting = %models.hub_cache, "hub cache searched for models")
        }
        None => tracing::info!(setting = %models.hub_cache, "no hub cache searched (off, or none found)"),
    }
    roots
}

fn audio_limits(config: &Config) -> crate::audio_input::AudioLimits {
    let g = &config.generation;
    crate::audio_input::AudioLimits { max_seconds: g.max_audio_input_s, max_bytes: g.max_audio_input_bytes }
}

/// Loads (and pins) the warm model in the background; the receiver turns true once it is loaded, at
/// once when there is none. A load that fails is logged and keeps the server unready: a replica that
/// cannot serve its model should not take traffic.
fn warm_up(
    generation: &Generation,
    model: Option<String>,
    dtype: crate::resources::requirements::DType,
) -> watch::Receiver<bool> {
    let Some(model) = model else { return watch::channel(true).1 };
    let (warm, rx) = watch::channel(false);
    let generation = generation.clone();
    tokio::spawn(async move {
        let device = crate::resources::device::RequestedDevice::Auto;
        match generation.load_model(&model, dtype, device, true).await {
            Ok(facts) => {
                tracing::info!(model, device = %facts.device.name(), "warm model loaded");
                let _ = warm.send(true);
            }
            Err(e) => {
                tracing::error!(model, error = %e, "cannot load the warm model; the server stays unready")
            }
        }
    });
    rx
}
