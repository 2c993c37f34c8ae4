//! `[models]`, `[log]`, `[monitor]`, `[resources]` and `[generation]`: one struct per file section,
//! each field one option.

use std::{collections::HashMap, path::PathBuf, str::FromStr, time::Duration};

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use super::{hub_cache::HubCache, units};
use crate::{
    cpu_isa::CpuIsa,
    resources::{
        model_id::ModelRoots,
        requirements::{DType, TableEntry},
    },
};

/// Where models live.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Models (file section [models])")]
pub struct ModelsConfig {
    /// Directory holding models, searched in order; repeatable (environment: `:`-separated). A model's
    /// id is its path below a root. Replaces `./models`; the hub cache stays.
    #[arg(
        id = "models.roots",
        long = "model-root",
        env = "MAESTRO_MODEL_ROOT",
        value_name = "DIR",
        value_delimiter = ':',
        default_value = "./models"
    )]
    pub roots: Vec<PathBuf>,
    /// The Hugging Face hub cache, searched after the roots (ids `ORG/NAME`, `ORG/NAME@REV`): `auto`
    /// (where huggingface_hub keeps it, when it exists), `off`, or a directory.
    #[arg(
        id = "models.hub_cache",
        long = "hub-cache",
        env = "MAESTRO_HUB_CACHE",
        value_name = "auto|off|DIR",
        default_value = "auto",
        value_parser = HubCache::from_str
    )]
    pub hub_cache: HubCache,
}

impl ModelsConfig {
    /// Where models are looked for: the roots, then the hub cache the process environment names
    /// (for `auto`, only when it exists now).
    pub fn model_roots(&self) -> ModelRoots {
        ModelRoots { dirs: self.roots.clone(), hub_cache: self.hub_cache.dir_from_env() }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Logging (file section [log])")]
pub struct LogConfig {
    /// Log line format.
    #[arg(
        id = "log.format",
        long = "log-format",
        env = "MAESTRO_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub format: LogFormat,
    /// Log filter: a level (info, debug, ...) or tracing directives (`maestro=debug,tower=warn`).
    #[arg(
        id = "log.level",
        long = "log-level",
        env = "MAESTRO_LOG_LEVEL",
        value_name = "FILTER",
        default_value = "info"
    )]
    pub level: String,
}

/// Resource sampling (the health and alert thresholds are the `[health]` and `[alerts]` sections).
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Monitor (file section [monitor])")]
pub struct MonitorConfig {
    /// Milliseconds between two resource samples (50..=60000).
    #[arg(
        id = "monitor.sample_interval_ms",
        long = "sample-interval-ms",
        env = "MAESTRO_SAMPLE_INTERVAL_MS",
        value_name = "MS",
        default_value = "1000",
        value_parser = units::millis::parse
    )]
    #[serde(rename = "sample_interval_ms", with = "units::millis")]
    pub sample_interval: Duration,
    /// Seconds of samples the history keeps (1..=86400).
    #[arg(
        id = "monitor.history_seconds",
        long = "history-seconds",
        env = "MAESTRO_HISTORY_SECONDS",
        value_name = "SECONDS",
        default_value = "300",
        value_parser = units::secs::parse
    )]
    #[serde(rename = "history_seconds", with = "units::secs")]
    pub history: Duration,
}

/// Resource management.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Resources (file section [resources])")]
pub struct ResourcesConfig {
    /// Fraction of free memory every plan keeps back (0..=0.9).
    #[arg(
        id = "resources.safety_margin",
        long = "safety-margin",
        env = "MAESTRO_SAFETY_MARGIN",
        value_name = "FRACTION",
        default_value_t = 0.2
    )]
    pub safety_margin: f64,
    /// Longest lease a client may take, in seconds.
    #[arg(
        id = "resources.max_lease_ttl_s",
        long = "max-lease-ttl-s",
        env = "MAESTRO_MAX_LEASE_TTL_S",
        value_name = "SECONDS",
        default_value = "86400",
        value_parser = units::secs::parse
    )]
    #[serde(rename = "max_lease_ttl_s", with = "units::secs")]
    pub max_lease_ttl: Duration,
    /// Client leases the server holds at once, whoever asks; 0 = no limit.
    #[arg(
        id = "resources.max_leases",
        long = "max-leases",
        env = "MAESTRO_MAX_LEASES",
        value_name = "N",
        default_value_t = 4096
    )]
    pub max_leases: usize,
    /// Client leases one token name may hold at once; 0 = no limit.
    #[arg(
        id = "resources.max_leases_per_token",
        long = "max-leases-per-token",
        env = "MAESTRO_MAX_LEASES_PER_TOKEN",
        value_name = "N",
        default_value_t = 64
    )]
    pub max_leases_per_token: usize,
    /// Fewest bytes (host plus GPU) a client lease may reserve: a smaller one reserves nothing real
    /// and only fills the ledger.
    #[arg(
        id = "resources.min_lease_bytes",
        long = "min-lease-bytes",
        env = "MAESTRO_MIN_LEASE_BYTES",
        value_name = "BYTES",
        default_value_t = 1_000_000
    )]
    pub min_lease_bytes: u64,
    /// Host plus GPU bytes one token name may hold in client leases at once; 0 = no limit but memory.
    #[arg(
        id = "resources.max_lease_bytes_per_token",
        long = "max-lease-bytes-per-token",
        env = "MAESTRO_MAX_LEASE_BYTES_PER_TOKEN",
        value_name = "BYTES",
        default_value_t = 0
    )]
    pub max_lease_bytes_per_token: u64,
    /// Host or GPU memory % that triggers an automatic cleanup (1..=100).
    #[arg(
        id = "resources.cleanup_threshold",
        long = "cleanup-threshold",
        env = "MAESTRO_CLEANUP_THRESHOLD",
        value_name = "PERCENT",
        default_value_t = 85.0
    )]
    pub cleanup_threshold: f64,
    /// Least seconds between two automatic cleanups.
    #[arg(
        id = "resources.cleanup_cooldown_s",
        long = "cleanup-cooldown-s",
        env = "MAESTRO_CLEANUP_COOLDOWN_S",
        value_name = "SECONDS",
        default_value = "30",
        value_parser = units::secs::parse
    )]
    #[serde(rename = "cleanup_cooldown_s", with = "units::secs")]
    pub cleanup_cooldown: Duration,
    /// Seconds a cached model must go unused before suggestions advise evicting it (under memory
    /// pressure every idle unpinned model is advised at once).
    #[arg(
        id = "resources.suggest_evict_idle_s",
        long = "suggest-evict-idle-s",
        env = "MAESTRO_SUGGEST_EVICT_IDLE_S",
        value_name = "SECONDS",
        default_value = "600",
        value_parser = units::secs::parse
    )]
    #[serde(rename = "suggest_evict_idle_s", with = "units::secs")]
    pub suggest_evict_idle: Duration,
    /// Requirements table entries that override or extend the built-in table
    /// (`[resources.requirements."<id>"]`; a table, so the file is its only source).
    #[arg(skip)]
    #[serde(default, skip_serializing)]
    pub requirements: HashMap<String, TableEntry>,
}

/// Generation: the worker pool and request limits.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Generation (file section [generation])")]
pub struct GenerationConfig {
    /// Inference worker threads per device Maestro places work on (each GPU, and the CPU).
    #[arg(
        id = "generation.workers_per_device",
        long = "workers-per-device",
        env = "MAESTRO_WORKERS_PER_DEVICE",
        value_name = "N",
        default_value_t = 1
    )]
    pub workers_per_device: usize,
    /// Deprecated alias of `--workers-per-device`, with the same meaning (0 = 1); used only when that
    /// one is not given.
    #[arg(id = "generation.workers", long = "workers", env = "MAESTRO_WORKERS", value_name = "N")]
    #[serde(default)]
    pub workers: Option<usize>,
    /// GPUs Maestro places work on, by NVML index or UUID (comma-separated); empty = every GPU libtorch
    /// can use. The sampler still reports the others.
    #[arg(
        id = "generation.devices",
        long = "devices",
        env = "MAESTRO_DEVICES",
        value_name = "INDEX|UUID",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub devices: Vec<String>,
    /// Model loaded (and pinned) at start, before the generation service reports SERVING; unset =
    /// ready at once.
    #[arg(id = "generation.warm_model", long = "warm-model", env = "MAESTRO_WARM_MODEL", value_name = "ID")]
    pub warm_model: Option<String>,
    /// libtorch intra-op threads; 0 = every core.
    #[arg(
        id = "generation.torch_threads",
        long = "torch-threads",
        env = "MAESTRO_TORCH_THREADS",
        value_name = "N",
        default_value_t = 0
    )]
    pub torch_threads: usize,
    /// Highest instruction set the CPU kernels and libtorch's own kernels may use: auto (the best
    /// the host has), avx512_vnni, avx512, avx2_vnni, avx2 or generic. Above what the host supports
    /// it is a start-up error.
    #[arg(
        id = "generation.cpu_isa",
        long = "cpu-isa",
        env = "MAESTRO_CPU_ISA",
        value_name = "ISA",
        default_value = "auto"
    )]
    pub cpu_isa: CpuIsa,
    /// Generations queued or running at most; beyond it RESOURCE_EXHAUSTED at once.
    #[arg(
        id = "generation.queue_capacity",
        long = "queue-capacity",
        env = "MAESTRO_QUEUE_CAPACITY",
        value_name = "N",
        default_value_t = 16
    )]
    pub queue_capacity: usize,
    /// Generations one token name may have queued or running at once (its fair share of
    /// --queue-capacity); 0 = half the queue capacity. Without a token file there is no name to count.
    #[arg(
        id = "generation.max_queued_per_token",
        long = "max-queued-per-token",
        env = "MAESTRO_MAX_QUEUED_PER_TOKEN",
        value_name = "N",
        default_value_t = 0
    )]
    pub max_queued_per_token: usize,
    /// Longest generation a request may ask for, in seconds (at most 600). Beyond a model's window
    /// (its `max_length`, 30 s for the published models) generation extends window by window.
    #[arg(
        id = "generation.max_duration_s",
        long = "max-duration-s",
        env = "MAESTRO_MAX_DURATION_S",
        value_name = "SECONDS",
        default_value_t = 120.0
    )]
    pub max_duration_s: f64,
    /// Seconds each window past the first adds to a long generation (audiocraft's `extend_stride`):
    /// the new window is prompted with the last window − stride seconds of codes. Above 0; a stride
    /// not shorter than a model's window is cut to leave a one-frame prompt.
    #[arg(
        id = "generation.extend_stride_s",
        long = "extend-stride-s",
        env = "MAESTRO_EXTEND_STRIDE_S",
        value_name = "SECONDS",
        default_value_t = 18.0
    )]
    pub extend_stride_s: f64,
    /// Longest audio a request may send (audio_prompt, melody), in seconds (at most 600).
    #[arg(
        id = "generation.max_audio_input_s",
        long = "max-audio-input-s",
        env = "MAESTRO_MAX_AUDIO_INPUT_S",
        value_name = "SECONDS",
        default_value_t = 30.0
    )]
    pub max_audio_input_s: f64,
    /// Most bytes of audio one request may send, all its inputs together; --max-message-bytes must
    /// exceed it by at least 64 KiB.
    #[arg(
        id = "generation.max_audio_input_bytes",
        long = "max-audio-input-bytes",
        env = "MAESTRO_MAX_AUDIO_INPUT_BYTES",
        value_name = "BYTES",
        default_value_t = 8 << 20
    )]
    pub max_audio_input_bytes: usize,
    /// Most concurrent requests for one model decoded together in one batch (1 = no batching; 1..=64).
    #[arg(
        id = "generation.max_batch",
        long = "max-batch",
        env = "MAESTRO_MAX_BATCH",
        value_name = "N",
        default_value_t = 4
    )]
    pub max_batch: usize,
    /// Decoder precision of models that `Generate` loads on demand: f32, f16, bf16, int8 or int4
    /// (`LoadModel` chooses its own). f16 and bf16 read half the weight bytes per step, int8 (CPU
    /// only) a quarter, int4 (CPU only) a seventh (BENCHMARKS.md; docs/building.md, "What int8
    /// costs").
    #[arg(
        id = "generation.dtype",
        long = "dtype",
        env = "MAESTRO_DTYPE",
        value_name = "DTYPE",
        default_value = "f32",
        value_parser = units::dtype::parse
    )]
    #[serde(with = "units::dtype")]
    pub dtype: DType,
    /// Chaos testing only: the prompt `maestro:fault:panic` panics the worker; a prompt containing
    /// `maestro:fault:oom` makes a decoding step ask libtorch for 256 PiB, and loading a model whose
    /// id ends with `fault-oom-on-load` does so before reading the weights: real out-of-memory failures.
    /// A prompt containing `maestro:fault:stall` holds the first decoding step until it is cancelled.
    #[arg(
        id = "generation.fault_injection",
        long = "fault-injection",
        env = "MAESTRO_FAULT_INJECTION",
        value_name = "BOOL",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub fault_injection: bool,
    /// With fault injection: the decoding step (from 0) at which a batch holding a live
    /// `maestro:fault:oom` request runs out of memory.
    #[arg(
        id = "generation.fault_oom_step",
        long = "fault-oom-step",
        env = "MAESTRO_FAULT_OOM_STEP",
        value_name = "STEP",
        default_value_t = 10
    )]
    pub fault_oom_step: usize,
    /// With fault injection: only batches of at least this many requests run out of memory (0 or 1 =
    /// every batch), so a retry at half the size can succeed.
    #[arg(
        id = "generation.fault_oom_min_batch",
        long = "fault-oom-min-batch",
        env = "MAESTRO_FAULT_OOM_MIN_BATCH",
        value_name = "N",
        default_value_t = 1
    )]
    pub fault_oom_min_batch: usize,
    /// Seconds a client may take none of its audio before its generation is stopped (its stream
    /// ends RESOURCE_EXHAUSTED; its lease, queue slot and model use are given back). What a
    /// stalled stream keeps meanwhile is the audio its generation makes in that time (0.1..=3600).
    #[arg(
        id = "generation.stall_timeout_s",
        long = "stall-timeout-s",
        env = "MAESTRO_STALL_TIMEOUT_S",
        value_name = "SECONDS",
        default_value = "10",
        value_parser = units::secs_f64::parse
    )]
    #[serde(rename = "stall_timeout_s", with = "units::secs_f64")]
    pub stall_timeout: Duration,
    /// Seconds an inference worker may hold work without progress (a decoding step, the end of a
    /// load or an unload) before liveness fails, naming the worker. It must outlast the
    /// longest legitimate pause: the load of the largest model from a slow disk (1..=86400).
    #[arg(
        id = "generation.worker_stuck_after_s",
        long = "worker-stuck-after-s",
        env = "MAESTRO_WORKER_STUCK_AFTER_S",
        value_name = "SECONDS",
        default_value = "600",
        value_parser = units::secs_f64::parse
    )]
    #[serde(rename = "worker_stuck_after_s", with = "units::secs_f64")]
    pub worker_stuck_after: Duration,
    /// With fault injection: milliseconds a finished model load is held before its caller hears of
    /// it (0 = off), so a client can give up while the weights are resident.
    #[arg(
        id = "generation.fault_load_delay_ms",
        long = "fault-load-delay-ms",
        env = "MAESTRO_FAULT_LOAD_DELAY_MS",
        value_name = "MS",
        default_value = "0",
        value_parser = units::millis::parse
    )]
    #[serde(rename = "fault_load_delay_ms", with = "units::millis")]
    pub fault_load_delay: Duration,
}

impl GenerationConfig {
    /// Workers per device: `--workers-per-device`, or the deprecated `--workers` where only it is given
    /// (its 0 meant one per device).
    pub fn per_device_workers(&self) -> usize {
        match self.workers {
            Some(n) if self.workers_per_device == 1 => {
                tracing::warn!(
                    workers = n,
                    "--workers (MAESTRO_WORKERS) is deprecated: use --workers-per-device"
                );
                n.max(1)
            }
            _ => self.workers_per_device,
        }
    }
}
