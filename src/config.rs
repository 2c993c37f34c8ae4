//! Typed configuration, layered: embedded defaults < TOML file (`--config`) < environment
//! (`MAESTRO_*`) < command-line flags.
//!
//! Every option is declared once, in [`ServerArgs`], with its flag, its environment variable and its
//! default (shown by `maestro-server --help`). The file mirrors the same options grouped into
//! sections ([`FileConfig`]); unknown keys are refused with the key named. [`Config`] is the merged,
//! typed result every module reads.

use std::{
    collections::HashMap,
    ffi::OsString,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{
    parser::ValueSource, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum,
};
use serde::Deserialize;

use crate::{alerts::AlertConfig, monitor::health::HealthThresholds, resources::requirements::TableEntry};

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `maestro-server`: serves `maestro.v1.ResourceService` and `maestro.v1.GenerationService`.
#[derive(Debug, Parser)]
#[command(name = "maestro-server", version, about, long_about = None)]
pub struct Cli {
    /// Server options (ignored by subcommands that do not serve).
    #[command(flatten)]
    pub args: ServerArgs,
    /// A one-off task instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// One-off tasks of `maestro-server`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a model directory's parameters, dtypes, predicted memory and tokenizer state.
    InspectModel {
        /// The model directory (config.json, model.safetensors, tokenizer.json).
        dir: PathBuf,
        /// Batch size for the memory prediction.
        #[arg(long, default_value_t = 1)]
        batch: u32,
        /// Duration in seconds for the memory prediction.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
}

/// Every server option: flag, environment variable and embedded default.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// TOML configuration file (sections: server, models, log, monitor, resources, generation, health, alerts).
    #[arg(long, env = "MAESTRO_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Address of the gRPC server.
    #[arg(long, env = "MAESTRO_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Address of the Prometheus `/metrics` endpoint.
    #[arg(long, env = "MAESTRO_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    pub metrics_listen: SocketAddr,
    /// Seconds to wait for in-flight calls at shutdown before closing anyway.
    #[arg(long, env = "MAESTRO_DRAIN_DEADLINE_S", default_value_t = 10.0)]
    pub drain_deadline_s: f64,
    /// PEM certificate chain for TLS (with --tls-key); unset = plaintext.
    #[arg(long, env = "MAESTRO_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    #[arg(long, env = "MAESTRO_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: require client certificates signed by it (mutual TLS).
    #[arg(long, env = "MAESTRO_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// File of accepted bearer tokens, one per line (re-read on SIGHUP); unset = no authentication.
    #[arg(long, env = "MAESTRO_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// With tokens: whether read-only telemetry RPCs stay open (health and reflection always are).
    #[arg(long, env = "MAESTRO_PUBLIC_TELEMETRY", default_value_t = true, action = clap::ArgAction::Set)]
    pub public_telemetry: bool,
    /// Largest request message the server decodes, in bytes.
    #[arg(long, env = "MAESTRO_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Concurrent streams one HTTP/2 connection may open.
    #[arg(long, env = "MAESTRO_MAX_STREAMS_PER_CONNECTION", default_value_t = 1024)]
    pub max_streams_per_connection: u32,
    /// Seconds between HTTP/2 keepalive pings (a peer that does not answer within 20 s is dropped).
    #[arg(long, env = "MAESTRO_KEEPALIVE_S", default_value_t = 30)]
    pub keepalive_s: u64,
    /// Maximum open server streams (snapshot and alert watches, generations) in total.
    #[arg(long, env = "MAESTRO_MAX_STREAMS", default_value_t = 10_000)]
    pub max_streams: usize,
    /// Directory holding models; repeatable (env: ':'-separated). A model's id is its path below a root.
    #[arg(
        long = "model-root",
        env = "MAESTRO_MODEL_ROOT",
        value_delimiter = ':',
        default_value = "./models"
    )]
    pub model_roots: Vec<PathBuf>,
    /// Log format.
    #[arg(long, env = "MAESTRO_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter: a level (info, debug, ...) or tracing directives (`maestro=debug,tower=warn`).
    #[arg(long, env = "MAESTRO_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Milliseconds between two resource samples.
    #[arg(long, env = "MAESTRO_SAMPLE_INTERVAL_MS", default_value_t = 1000)]
    pub sample_interval_ms: u64,
    /// Seconds of samples the history keeps.
    #[arg(long, env = "MAESTRO_HISTORY_SECONDS", default_value_t = 300)]
    pub history_seconds: u64,
    /// Fraction of free memory every plan keeps back (0..0.9).
    #[arg(long, env = "MAESTRO_SAFETY_MARGIN", default_value_t = 0.2)]
    pub safety_margin: f64,
    /// Longest lease a client may take, in seconds.
    #[arg(long, env = "MAESTRO_MAX_LEASE_TTL_S", default_value_t = 86_400)]
    pub max_lease_ttl_s: u64,
    /// Host or GPU memory % that triggers an automatic cleanup.
    #[arg(long, env = "MAESTRO_CLEANUP_THRESHOLD", default_value_t = 85.0)]
    pub cleanup_threshold: f64,
    /// Least seconds between two automatic cleanups.
    #[arg(long, env = "MAESTRO_CLEANUP_COOLDOWN_S", default_value_t = 30)]
    pub cleanup_cooldown_s: u64,
    /// Inference worker threads (0 = 1 on CPU, one per GPU otherwise).
    #[arg(long, env = "MAESTRO_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// libtorch intra-op threads (0 = every core).
    #[arg(long, env = "MAESTRO_TORCH_THREADS", default_value_t = 0)]
    pub torch_threads: usize,
    /// Generations queued or running at most; beyond it RESOURCE_EXHAUSTED at once.
    #[arg(long, env = "MAESTRO_QUEUE_CAPACITY", default_value_t = 16)]
    pub queue_capacity: usize,
    /// Longest generation a request may ask for, in seconds.
    #[arg(long, env = "MAESTRO_MAX_DURATION_S", default_value_t = 30.0)]
    pub max_duration_s: f64,
    /// Most concurrent requests for one model decoded together in one batch (1 = no batching).
    #[arg(long, env = "MAESTRO_MAX_BATCH", default_value_t = 4)]
    pub max_batch: usize,
    /// Decoder precision of models that `Generate` loads on demand: f32, f16 or bf16 (`LoadModel`
    /// chooses its own). f16 and bf16 read half the weight bytes per step (BENCHMARKS.md).
    #[arg(long, env = "MAESTRO_DTYPE", default_value = "f32")]
    pub dtype: String,
}

/// The configuration file: the same options as the flags, grouped into sections.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    server: FileServer,
    #[serde(default)]
    models: FileModels,
    #[serde(default)]
    log: FileLog,
    #[serde(default)]
    monitor: FileMonitor,
    #[serde(default)]
    resources: FileResources,
    #[serde(default)]
    generation: FileGeneration,
    #[serde(default)]
    health: FileHealth,
    #[serde(default)]
    alerts: FileAlerts,
}

/// `[resources]`: margin, lease limit and the requirements table's overrides and additions.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileResources {
    safety_margin: Option<f64>,
    max_lease_ttl_s: Option<u64>,
    cleanup_threshold: Option<f64>,
    cleanup_cooldown_s: Option<u64>,
    #[serde(default)]
    requirements: HashMap<String, TableEntry>,
}

/// `[generation]`: the worker pool and request limits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGeneration {
    dtype: Option<String>,
    fault_injection: Option<bool>,
    max_batch: Option<usize>,
    workers: Option<usize>,
    torch_threads: Option<usize>,
    queue_capacity: Option<usize>,
    max_duration_s: Option<f64>,
}

/// `[health]`: thresholds of the health level and readiness (file only).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHealth {
    moderate_percent: Option<f64>,
    warning_percent: Option<f64>,
    critical_percent: Option<f64>,
    gpu_temp_warning_c: Option<f64>,
    gpu_temp_critical_c: Option<f64>,
    hysteresis: Option<f64>,
}

/// `[alerts]`: thresholds and timing of the alert rules (file only).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAlerts {
    host_memory_warning_percent: Option<f64>,
    host_memory_critical_percent: Option<f64>,
    gpu_memory_warning_percent: Option<f64>,
    gpu_memory_critical_percent: Option<f64>,
    gpu_temp_warning_c: Option<f64>,
    gpu_temp_critical_c: Option<f64>,
    rss_budget_bytes: Option<u64>,
    leak_slope_mb_per_min: Option<f64>,
    leak_sustain_s: Option<u64>,
    hysteresis: Option<f64>,
    min_samples: Option<u32>,
    log_capacity: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    auth_token_file: Option<PathBuf>,
    public_telemetry: Option<bool>,
    max_message_bytes: Option<usize>,
    max_streams_per_connection: Option<u32>,
    keepalive_s: Option<u64>,
    listen: Option<SocketAddr>,
    metrics_listen: Option<SocketAddr>,
    drain_deadline_s: Option<f64>,
    max_streams: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModels {
    roots: Option<Vec<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    format: Option<LogFormat>,
    level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMonitor {
    sample_interval_ms: Option<u64>,
    history_seconds: Option<u64>,
}

/// Server endpoints and shutdown behaviour.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// gRPC address (default `127.0.0.1:50051`).
    pub listen: SocketAddr,
    /// Prometheus address (default `127.0.0.1:9464`).
    pub metrics_listen: SocketAddr,
    /// How long shutdown waits for in-flight calls (default 10 s).
    pub drain_deadline: Duration,
    /// Cap on open server streams (default 10 000).
    pub max_streams: usize,
    /// TLS certificate, key and optional client CA (default none: plaintext).
    pub tls: Option<TlsFiles>,
    /// Bearer tokens file (default none: no authentication).
    pub auth_token_file: Option<PathBuf>,
    /// Whether telemetry stays open when tokens are set (default true).
    pub public_telemetry: bool,
    /// Largest decoded request (default 4 MiB).
    pub max_message_bytes: usize,
    /// Streams per HTTP/2 connection (default 1024).
    pub max_streams_per_connection: u32,
    /// HTTP/2 keepalive interval (default 30 s).
    pub keepalive: Duration,
}

/// TLS material.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA that client certificates must chain to (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// Where models live.
#[derive(Debug, Clone)]
pub struct ModelsConfig {
    /// Model roots, searched in order (default `./models`).
    pub roots: Vec<PathBuf>,
}

/// Logging.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    pub format: LogFormat,
    /// A tracing filter (default `info`).
    pub level: String,
}

/// Resource sampling, health and alerts.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// Time between samples (default 1 s).
    pub sample_interval: Duration,
    /// Length of the history ring buffer (default 300 s).
    pub history: Duration,
    /// Health level thresholds (`[health]`; defaults 70 / 80 / 90 %, 85 / 95 °C, hysteresis 5).
    pub health: HealthThresholds,
    /// Alert rules (`[alerts]`; defaults in [`AlertConfig`]).
    pub alerts: AlertConfig,
}

/// Resource management.
#[derive(Debug, Clone)]
pub struct ResourcesConfig {
    /// Fraction of free memory kept back from every plan (default 0.2).
    pub safety_margin: f64,
    /// Longest client lease (default 24 h).
    pub max_lease_ttl: Duration,
    /// Requirements table entries that override or extend the built-in table.
    pub requirements: HashMap<String, TableEntry>,
    /// Memory % that triggers an automatic cleanup (default 85).
    pub cleanup_threshold: f64,
    /// Least time between automatic cleanups (default 30 s).
    pub cleanup_cooldown: Duration,
}

/// Generation: the worker pool and request limits.
#[derive(Debug, Clone)]
pub struct GenerationConfig {
    /// Worker threads; 0 = 1 on CPU, one per GPU otherwise (default 0).
    pub workers: usize,
    /// libtorch intra-op threads; 0 = every core (default 0).
    pub torch_threads: usize,
    /// Generations queued or running at most (default 16).
    pub queue_capacity: usize,
    /// Longest generation in seconds (default 30).
    pub max_duration_s: f64,
    /// Most requests decoded together (default 4).
    pub max_batch: usize,
    /// Decoder precision of models loaded on demand by `Generate` (default f32).
    pub dtype: crate::resources::requirements::DType,
    /// Chaos testing only (file key `generation.fault_injection`, default false): the prompts
    /// `maestro:fault:panic` and `maestro:fault:oom` inject a worker panic or an out-of-memory error,
    /// and loading a model whose id ends with `fault-oom-on-load` fails with out-of-memory.
    pub fault_injection: bool,
}

/// The merged configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Generation.
    pub generation: GenerationConfig,
    /// Resource management.
    pub resources: ResourcesConfig,
    /// Server endpoints and shutdown.
    pub server: ServerConfig,
    /// Model roots.
    pub models: ModelsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Sampling and history.
    pub monitor: MonitorConfig,
}

/// A configuration that cannot be used; the message names the problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown key or a wrong type.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message (names the key).
        message: String,
    },
    /// A value is out of range.
    #[error("invalid option {option}: {message}")]
    Invalid {
        /// The option (flag name).
        option: &'static str,
        /// What is wrong, with the limit and the value.
        message: String,
    },
}

impl Default for Config {
    /// The embedded defaults (the environment still applies, as it does to the server).
    fn default() -> Self {
        Self::load(["maestro-server"]).expect("embedded defaults are valid").0
    }
}

/// Why the command line could not be turned into a configuration.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag or environment value did not parse (or `--help` / `--version` was asked for).
    #[error(transparent)]
    Args(#[from] clap::Error),
    /// The file or a layered value is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl Config {
    /// Parses flags (and the environment) and layers them over the file and the defaults.
    pub fn load<I, T>(args: I) -> Result<(Config, Option<Command>), CliError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = Cli::command().try_get_matches_from(args)?;
        let cli = Cli::from_arg_matches(&matches)?;
        let config = Self::layer(&matches, &cli.args)?;
        Ok((config, cli.command))
    }

    fn layer(matches: &ArgMatches, args: &ServerArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        // A value set by flag or environment wins; otherwise the file's; otherwise clap's default.
        let pick = |id: &str| -> bool {
            !matches!(matches.value_source(id), Some(ValueSource::DefaultValue) | None)
        };
        macro_rules! layered {
            ($id:literal, $cli:expr, $file:expr) => {
                if pick($id) {
                    $cli.clone()
                } else {
                    $file.clone().unwrap_or_else(|| $cli.clone())
                }
            };
        }
        let config = Config {
            generation: GenerationConfig {
                workers: layered!("workers", args.workers, file.generation.workers),
                torch_threads: layered!("torch_threads", args.torch_threads, file.generation.torch_threads),
                queue_capacity: layered!(
                    "queue_capacity",
                    args.queue_capacity,
                    file.generation.queue_capacity
                ),
                max_duration_s: layered!(
                    "max_duration_s",
                    args.max_duration_s,
                    file.generation.max_duration_s
                ),
                fault_injection: file.generation.fault_injection.unwrap_or(false),
                max_batch: layered!("max_batch", args.max_batch, file.generation.max_batch),
                dtype: {
                    let value = layered!("dtype", args.dtype, file.generation.dtype);
                    crate::resources::requirements::DType::parse(&value)
                        .map_err(|e| ConfigError::Invalid { option: "--dtype", message: e.to_string() })?
                },
            },
            resources: ResourcesConfig {
                safety_margin: layered!("safety_margin", args.safety_margin, file.resources.safety_margin),
                max_lease_ttl: Duration::from_secs(layered!(
                    "max_lease_ttl_s",
                    args.max_lease_ttl_s,
                    file.resources.max_lease_ttl_s
                )),
                requirements: file.resources.requirements,
                cleanup_threshold: layered!(
                    "cleanup_threshold",
                    args.cleanup_threshold,
                    file.resources.cleanup_threshold
                ),
                cleanup_cooldown: Duration::from_secs(layered!(
                    "cleanup_cooldown_s",
                    args.cleanup_cooldown_s,
                    file.resources.cleanup_cooldown_s
                )),
            },
            server: ServerConfig {
                listen: layered!("listen", args.listen, file.server.listen),
                metrics_listen: layered!("metrics_listen", args.metrics_listen, file.server.metrics_listen),
                drain_deadline: seconds(
                    "--drain-deadline-s",
                    layered!("drain_deadline_s", args.drain_deadline_s, file.server.drain_deadline_s),
                )?,
                max_streams: layered!("max_streams", args.max_streams, file.server.max_streams),
                tls: {
                    let opt = |id: &str, cli: &Option<PathBuf>, file: &Option<PathBuf>| {
                        if pick(id) {
                            cli.clone()
                        } else {
                            file.clone().or_else(|| cli.clone())
                        }
                    };
                    let cert = opt("tls_cert", &args.tls_cert, &file.server.tls_cert);
                    let key = opt("tls_key", &args.tls_key, &file.server.tls_key);
                    let client_ca = opt("tls_client_ca", &args.tls_client_ca, &file.server.tls_client_ca);
                    match (cert, key) {
                        (Some(cert), Some(key)) => Some(TlsFiles { cert, key, client_ca }),
                        (None, None) => None,
                        _ => {
                            return Err(ConfigError::Invalid {
                                option: "--tls-cert",
                                message: "--tls-cert and --tls-key go together".into(),
                            })
                        }
                    }
                },
                auth_token_file: if pick("auth_token_file") {
                    args.auth_token_file.clone()
                } else {
                    file.server.auth_token_file.clone().or_else(|| args.auth_token_file.clone())
                },
                public_telemetry: layered!(
                    "public_telemetry",
                    args.public_telemetry,
                    file.server.public_telemetry
                ),
                max_message_bytes: layered!(
                    "max_message_bytes",
                    args.max_message_bytes,
                    file.server.max_message_bytes
                ),
                max_streams_per_connection: layered!(
                    "max_streams_per_connection",
                    args.max_streams_per_connection,
                    file.server.max_streams_per_connection
                ),
                keepalive: Duration::from_secs(layered!(
                    "keepalive_s",
                    args.keepalive_s,
                    file.server.keepalive_s
                )),
            },
            models: ModelsConfig { roots: layered!("model_roots", args.model_roots, file.models.roots) },
            log: LogConfig {
                format: layered!("log_format", args.log_format, file.log.format),
                level: layered!("log_level", args.log_level, file.log.level),
            },
            monitor: MonitorConfig {
                sample_interval: Duration::from_millis(layered!(
                    "sample_interval_ms",
                    args.sample_interval_ms,
                    file.monitor.sample_interval_ms
                )),
                history: Duration::from_secs(layered!(
                    "history_seconds",
                    args.history_seconds,
                    file.monitor.history_seconds
                )),
                health: file.health.into_thresholds(),
                alerts: file.alerts.into_config(),
            },
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |option, message: String| Err(ConfigError::Invalid { option, message });
        if self.models.roots.is_empty() {
            return invalid("--model-root", "at least one model root is required".into());
        }
        let margin = self.resources.safety_margin;
        if !(0.0..=0.9).contains(&margin) {
            return invalid("--safety-margin", format!("must be within 0..=0.9, got {margin}"));
        }
        let t = self.resources.cleanup_threshold;
        if !(1.0..=100.0).contains(&t) {
            return invalid("--cleanup-threshold", format!("must be within 1..=100 percent, got {t}"));
        }
        if self.resources.max_lease_ttl.is_zero() {
            return invalid("--max-lease-ttl-s", "must be at least 1, got 0".into());
        }
        let b = self.generation.max_batch;
        if !(1..=64).contains(&b) {
            return invalid("--max-batch", format!("must be within 1..=64, got {b}"));
        }
        if self.generation.queue_capacity == 0 {
            return invalid("--queue-capacity", "must be at least 1, got 0".into());
        }
        let d = self.generation.max_duration_s;
        if !d.is_finite() || d <= 0.0 || d > 600.0 {
            return invalid("--max-duration-s", format!("must be within (0, 600], got {d}"));
        }
        if self.server.max_streams == 0 {
            return invalid("--max-streams", "must be at least 1, got 0".into());
        }
        let interval = self.monitor.sample_interval.as_millis();
        if !(50..=60_000).contains(&interval) {
            return invalid("--sample-interval-ms", format!("must be within 50..=60000, got {interval}"));
        }
        let history = self.monitor.history.as_secs();
        if !(1..=86_400).contains(&history) {
            return invalid("--history-seconds", format!("must be within 1..=86400, got {history}"));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return invalid("--log-level", format!("not a level or tracing filter: {:?}", self.log.level));
        }
        Ok(())
    }
}

impl FileHealth {
    fn into_thresholds(self) -> HealthThresholds {
        let d = HealthThresholds::default();
        HealthThresholds {
            moderate_percent: self.moderate_percent.unwrap_or(d.moderate_percent),
            warning_percent: self.warning_percent.unwrap_or(d.warning_percent),
            critical_percent: self.critical_percent.unwrap_or(d.critical_percent),
            gpu_temp_warning_c: self.gpu_temp_warning_c.unwrap_or(d.gpu_temp_warning_c),
            gpu_temp_critical_c: self.gpu_temp_critical_c.unwrap_or(d.gpu_temp_critical_c),
            hysteresis: self.hysteresis.unwrap_or(d.hysteresis),
        }
    }
}

impl FileAlerts {
    fn into_config(self) -> AlertConfig {
        let d = AlertConfig::default();
        AlertConfig {
            host_memory: [
                self.host_memory_warning_percent.unwrap_or(d.host_memory[0]),
                self.host_memory_critical_percent.unwrap_or(d.host_memory[1]),
            ],
            gpu_memory: [
                self.gpu_memory_warning_percent.unwrap_or(d.gpu_memory[0]),
                self.gpu_memory_critical_percent.unwrap_or(d.gpu_memory[1]),
            ],
            gpu_temperature: [
                self.gpu_temp_warning_c.unwrap_or(d.gpu_temperature[0]),
                self.gpu_temp_critical_c.unwrap_or(d.gpu_temperature[1]),
            ],
            rss_budget_bytes: self.rss_budget_bytes.unwrap_or(d.rss_budget_bytes),
            leak_slope_mb_per_min: self.leak_slope_mb_per_min.unwrap_or(d.leak_slope_mb_per_min),
            leak_sustain: self.leak_sustain_s.map_or(d.leak_sustain, Duration::from_secs),
            hysteresis: self.hysteresis.unwrap_or(d.hysteresis),
            min_samples: self.min_samples.unwrap_or(d.min_samples),
            log_capacity: self.log_capacity.unwrap_or(d.log_capacity),
        }
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    toml::from_str(&text)
        .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.message().trim().to_string() })
}

fn seconds(option: &'static str, value: f64) -> Result<Duration, ConfigError> {
    if !value.is_finite() || !(0.0..=3600.0).contains(&value) {
        return Err(ConfigError::Invalid {
            option,
            message: format!("must be within 0..=3600 seconds, got {value}"),
        });
    }
    Ok(Duration::from_secs_f64(value))
}
