//! Typed configuration, layered: embedded defaults < TOML file (`--config`) < environment
//! (`MAESTRO_*`) < command-line flags.
//!
//! Each option is declared once, as a field of its section's struct ([`ServerConfig`] for `[server]`,
//! and so on): the field's clap attributes give its flag, its environment variable and its default
//! (all shown by `maestro-server --help`), its clap id is its file key (`server.listen`), and serde
//! reads the same struct from the file. clap resolves a flag over its environment variable and reads
//! no other variable, so unrelated `MAESTRO_*` variables are left alone; `layer` puts the file
//! between the defaults and those two with figment. Unknown file keys are refused with the key named,
//! and `validate` checks ranges on the result. [`Config`] is both the declaration and the merged
//! value every module reads.

pub mod fuzz;
mod hub_cache;
mod layer;
mod ranges;
mod reference;
mod sections;
mod server;
mod thresholds;
mod units;

use std::{ffi::OsString, path::PathBuf};

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::{Deserialize, Serialize};

pub use hub_cache::HubCache;
pub use reference::{options, OptionDoc};
pub use sections::{GenerationConfig, LogConfig, LogFormat, ModelsConfig, MonitorConfig, ResourcesConfig};
pub use server::{ServerConfig, TlsFiles};
pub use thresholds::{AlertsConfig, HealthConfig};

/// `maestro-server`: serves `maestro.v1.ResourceService` and `maestro.v1.GenerationService`.
#[derive(Debug, Parser)]
#[command(name = "maestro-server", version, about, long_about = None)]
pub struct Cli {
    /// TOML configuration file: sections server, models, log, monitor, resources, generation, health,
    /// alerts (unknown keys are refused).
    #[arg(long, env = "MAESTRO_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Every server option (ignored by subcommands that do not serve).
    #[command(flatten)]
    pub options: Config,
    /// A one-off task instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// One-off tasks of `maestro-server`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a model's parameters, dtypes, predicted memory and tokenizer state.
    InspectModel {
        /// The model directory (config.json, tokenizer.json and the weights in any layout), or a
        /// model id, found as the server finds it: under the model roots, then in the hub cache
        /// (`facebook/musicgen-small`, `facebook/musicgen-small@REV`).
        dir: PathBuf,
        /// Batch size for the memory prediction.
        #[arg(long, default_value_t = 1)]
        batch: u32,
        /// Duration in seconds for the memory prediction.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
    /// Write a model directory's weights (pickle, or shards) as one model.safetensors beside them,
    /// which then loads instead (memory-mapped header, no pickle); the originals are kept.
    ConvertCheckpoint {
        /// The model directory.
        dir: PathBuf,
    },
}

/// The configuration: one field per file section, in `--help` order.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`: endpoints, TLS, authentication, HTTP/2 limits, shutdown.
    #[command(flatten)]
    pub server: ServerConfig,
    /// `[models]`: model roots and the hub cache.
    #[command(flatten)]
    pub models: ModelsConfig,
    /// `[log]`: logging.
    #[command(flatten)]
    pub log: LogConfig,
    /// `[monitor]`: sampling and history.
    #[command(flatten)]
    pub monitor: MonitorConfig,
    /// `[resources]`: plans, leases, cleanup and the requirements table.
    #[command(flatten)]
    pub resources: ResourcesConfig,
    /// `[generation]`: the worker pool and request limits.
    #[command(flatten)]
    pub generation: GenerationConfig,
    /// `[health]`: health level and readiness thresholds.
    #[command(flatten)]
    pub health: HealthConfig,
    /// `[alerts]`: alert rule thresholds.
    #[command(flatten)]
    pub alerts: AlertsConfig,
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
        /// What is wrong, naming the key.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid option {option}: {message}")]
    Invalid {
        /// The option: flag, environment variable and file key.
        option: String,
        /// What is wrong, with the limit and the value.
        message: String,
    },
    /// A flag's or variable's value cannot be layered (a path that is not UTF-8).
    #[error("invalid option value: {0}")]
    Layer(String),
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

impl Default for Config {
    /// The embedded defaults: every option's declared default, with neither the environment nor a
    /// file, so tests that start from it do not depend on the shell they run in.
    fn default() -> Self {
        let command = Config::augment_args(clap::Command::new("maestro-server")).mut_args(|a| a.env(None));
        let matches =
            command.try_get_matches_from(["maestro-server"]).expect("the defaults need no argument");
        Config::from_arg_matches(&matches).expect("the embedded defaults parse")
    }
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
        let config = layer::resolve(cli.config.as_deref(), &cli.options, &matches)?;
        ranges::validate(&config)?;
        Ok((config, cli.command))
    }
}
