//! The command line: global `--addr`, credentials and `--json`, one subcommand per RPC or task, and
//! the exit-code table at the end of `maestro --help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use maestro_proto as pb;

use crate::{client::DEFAULT_ADDR, credentials::Token, exit, units};

/// Talks to a Maestro server: telemetry, alerts, validation, leases, models and generation.
#[derive(Debug, Parser)]
#[command(name = "maestro", version, after_help = exit::HELP)]
pub struct Cli {
    /// Print the server's answer as JSON (proto field names; one object per line on streams).
    #[arg(long, global = true)]
    pub json: bool,
    /// Where the server is and the credentials to show it (under their own heading, so after the
    /// other options: the heading holds for every argument declared after it).
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--addr` and the credentials, accepted before or after the subcommand.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connection")]
pub struct ConnectArgs {
    /// Server address: `http://host:port` (a bare `host:port` too) or `https://host:port` for TLS.
    #[arg(long, env = "MAESTRO_ADDR", default_value = DEFAULT_ADDR, global = true)]
    pub addr: String,
    /// Bearer token sent with every call. Without it or --token-file, `MAESTRO_TOKEN` is used.
    #[arg(long, value_name = "TOKEN", global = true)]
    pub token: Option<Token>,
    /// File holding the bearer token (surrounding whitespace ignored); --token wins over it.
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// PEM CA that signed the server's certificate (`https://` only; default: the system's roots).
    #[arg(long, value_name = "PEM", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate chain for mutual TLS (`https://` only; needs --tls-key).
    // Both-or-neither is checked when the target is built: clap's `requires` misses a pair split
    // across the subcommand (`--tls-cert c.pem status --tls-key k.pem`).
    #[arg(long, value_name = "PEM", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", global = true)]
    pub tls_key: Option<PathBuf>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The latest resource snapshot: memory, CPU, process, GPUs, health.
    Status,
    /// Snapshot, window statistics, leases, cached models, active alerts and suggestions.
    Report,
    /// Statistics (min / mean / max / p95) over the last seconds of samples.
    History(HistoryArgs),
    /// The alert log.
    Alerts(AlertsArgs),
    /// Streams alert events (active ones first) until Ctrl-C.
    WatchAlerts(WatchAlertsArgs),
    /// Streams snapshots until Ctrl-C.
    Watch(WatchArgs),
    /// Whether a model fits for a batch and duration, with the numbers behind the verdict.
    Validate(ValidateArgs),
    /// Reserves host and/or GPU memory; prints the lease id.
    Allocate(AllocateArgs),
    /// Gives a lease back.
    Release(ReleaseArgs),
    /// Releases expired leases, evicts idle models and returns memory to the OS.
    Cleanup(CleanupArgs),
    /// The largest batch whose working set fits.
    BatchSize(BatchSizeArgs),
    /// Optimisation suggestions from the current state.
    Suggestions,
    /// Every model the server knows, loaded or not.
    Models,
    /// Loads a model into the server's cache.
    Load(LoadArgs),
    /// Evicts a model from the server's cache.
    Unload(UnloadArgs),
    /// Generates music from a prompt into a WAV, FLAC, Ogg Opus or MP3 file, written as it arrives.
    Generate(GenerateArgs),
    /// A live full-screen dashboard (q or Ctrl-C quits).
    Top(TopArgs),
    /// grpc.health.v1 Check of one service: exit 0 when SERVING, 3 otherwise (container health checks).
    Health(HealthArgs),
}

/// `history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Window length in seconds (1 .. the server's history length).
    #[arg(long, default_value_t = 60)]
    pub window: u32,
}

/// Alert severities as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SeverityArg {
    /// Everything.
    Info,
    /// Warnings and critical alerts.
    Warning,
    /// Critical alerts only.
    Critical,
}

impl From<SeverityArg> for pb::Severity {
    fn from(s: SeverityArg) -> Self {
        match s {
            SeverityArg::Info => pb::Severity::Info,
            SeverityArg::Warning => pb::Severity::Warning,
            SeverityArg::Critical => pb::Severity::Critical,
        }
    }
}

/// `alerts`.
#[derive(Debug, Args)]
pub struct AlertsArgs {
    /// Lowest severity shown.
    #[arg(long, value_enum)]
    pub severity: Option<SeverityArg>,
    /// Only alerts still active.
    #[arg(long)]
    pub active: bool,
    /// At most this many entries (0 = the whole log).
    #[arg(long, default_value_t = 0)]
    pub limit: u32,
}

/// `watch-alerts`.
#[derive(Debug, Args)]
pub struct WatchAlertsArgs {
    /// Lowest severity shown.
    #[arg(long, value_enum)]
    pub severity: Option<SeverityArg>,
}

/// `watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Milliseconds between snapshots (0 = the server's sample interval).
    #[arg(long, default_value_t = 0)]
    pub interval_ms: u32,
    /// Stop after this many snapshots (0 = until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub count: u64,
}

/// `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Model id, e.g. `facebook/musicgen-small`.
    pub model: String,
    /// Batch size (1..64).
    #[arg(long, default_value_t = 1)]
    pub batch: u32,
    /// Seconds of audio.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// `auto`, `cpu` or `cuda:N`.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// `f32`, `f16` or `bf16` (empty = the server's default).
    #[arg(long, default_value = "")]
    pub dtype: String,
    /// Seconds of audio prompt each request continues: the verdict counts encoding it.
    #[arg(long = "audio-prompt", value_name = "SECONDS", default_value_t = 0.0)]
    pub audio_prompt_s: f64,
}

/// `allocate`.
#[derive(Debug, Args)]
pub struct AllocateArgs {
    /// Host memory to reserve (`512MiB`, `2GB`, bytes).
    #[arg(long, value_parser = units::parse_size, default_value = "0")]
    pub cpu_memory: u64,
    /// GPU memory to reserve (needs `--gpu-index`).
    #[arg(long, value_parser = units::parse_size, default_value = "0")]
    pub gpu_memory: u64,
    /// Which GPU the GPU memory is on.
    #[arg(long)]
    pub gpu_index: Option<u32>,
    /// Seconds before the lease expires by itself.
    #[arg(long, default_value_t = 300)]
    pub ttl: u32,
    /// Who holds the lease.
    #[arg(long, default_value = "maestro-cli")]
    pub owner: String,
}

/// `release`.
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The id `allocate` printed.
    pub lease_id: String,
}

/// `cleanup`.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Also evict recently used and pinned models (never ones in use).
    #[arg(long)]
    pub force: bool,
    /// List what would happen without doing it.
    #[arg(long)]
    pub dry_run: bool,
}

/// `batch-size`.
#[derive(Debug, Args)]
pub struct BatchSizeArgs {
    /// Model id.
    pub model: String,
    /// Seconds of audio per sample.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Memory to plan for (`16GB`; 0 = what is free now).
    #[arg(long, value_parser = units::parse_size, default_value = "0")]
    pub memory: u64,
    /// `auto`, `cpu` or `cuda:N`.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// `f32`, `f16` or `bf16` (empty = the server's default).
    #[arg(long, default_value = "")]
    pub dtype: String,
}

/// `load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Model id.
    pub model: String,
    /// `auto`, `cpu` or `cuda:N`.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// `f32`, `f16` or `bf16` (empty = the server's default).
    #[arg(long, default_value = "")]
    pub dtype: String,
    /// Keep it through non-forced cleanups and pressure eviction.
    #[arg(long)]
    pub pin: bool,
}

/// `unload`.
#[derive(Debug, Args)]
pub struct UnloadArgs {
    /// Model id.
    pub model: String,
    /// Wait a bounded time for in-flight requests instead of failing at once.
    #[arg(long)]
    pub force: bool,
}

/// Sample encodings a WAV can be written in (the other files have their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// 16-bit signed integers.
    S16,
    /// 32-bit floats.
    F32,
}

/// Whose rules filter sampled codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SamplingModeArg {
    /// transformers': top-k, then top-p.
    Transformers,
    /// audiocraft's: top-p when set, otherwise top-k (250 by default).
    Audiocraft,
}

/// `generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Model id, e.g. `facebook/musicgen-small`.
    #[arg(long)]
    pub model: String,
    /// What to play (empty = unconditional).
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// What to steer away from (replaces guidance's unconditional condition).
    #[arg(long, default_value = "")]
    pub negative_prompt: String,
    /// Seconds of audio.
    #[arg(long, default_value_t = 8.0)]
    pub duration: f64,
    /// Sampling seed (reproducible output).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Sampling temperature.
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Top-k sampling (0 = off).
    #[arg(long)]
    pub top_k: Option<u32>,
    /// Nucleus sampling (0 = off).
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Classifier-free guidance scale (1..20).
    #[arg(long)]
    pub guidance: Option<f64>,
    /// Argmax instead of sampling.
    #[arg(long)]
    pub greedy: bool,
    /// Whose sampling rules apply.
    #[arg(long, value_enum, default_value_t = SamplingModeArg::Transformers)]
    pub sampling_mode: SamplingModeArg,
    /// A WAV clip to continue (any rate and channel count: the server converts it).
    #[arg(long = "continue", value_name = "WAV")]
    pub continue_from: Option<PathBuf>,
    /// With --continue: write the clip's decode too, not only what follows it.
    #[arg(long, requires = "continue_from")]
    pub include_prompt: bool,
    /// A WAV melody to follow (needs a melody checkpoint).
    #[arg(long, value_name = "WAV")]
    pub melody: Option<PathBuf>,
    /// Sample encoding of a WAV output (f32 only with `.wav`).
    #[arg(long, value_enum, default_value_t = FormatArg::S16)]
    pub format: FormatArg,
    /// Milliseconds of audio per streamed chunk (0 = the server's default).
    #[arg(long, default_value_t = 0)]
    pub chunk_ms: u32,
    /// The file to write; its extension picks the format: `.wav` (or none), `.flac`, `.ogg` or `.opus`
    /// (Ogg Opus, 48 kHz), `.mp3`. Any other extension is a usage error.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// `top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Milliseconds between snapshots (0 = the server's sample interval).
    #[arg(long, default_value_t = 0)]
    pub interval_ms: u32,
}

/// `health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The service asked about: "" (default) is the whole server (liveness),
    /// `maestro.v1.GenerationService` whether it can take generations now (readiness).
    #[arg(long, default_value = "")]
    pub service: String,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn json_is_accepted_after_the_subcommand() {
        let cli = Cli::try_parse_from(["maestro", "status", "--json"]).unwrap();
        assert!(cli.json);
        assert!(matches!(cli.command, Command::Status));
    }

    #[test]
    fn credentials_are_accepted_before_or_after_the_subcommand() {
        let args = ["maestro", "--tls-cert", "c.pem", "status", "--tls-key", "k.pem", "--token", "t"];
        let c = Cli::try_parse_from(args).unwrap().connect;
        assert!(c.tls_cert.is_some() && c.tls_key.is_some() && c.token.is_some());
    }
}
