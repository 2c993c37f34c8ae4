//! The declared options read back from clap: flag, environment variable, file key, default and help of
//! each. The layering uses the file keys, error messages use the three spellings of an option, and the
//! options table of `docs/configuration.md` is checked against this list (`tests/config.rs`).

use clap::{Arg, ArgAction, CommandFactory};

use super::Cli;

/// One option as an operator can set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionDoc {
    /// The flag, `--listen`.
    pub flag: String,
    /// The environment variable, `MAESTRO_LISTEN`.
    pub env: String,
    /// The key in the file, `server.listen`; `None` for `--config` itself.
    pub file_key: Option<String>,
    /// The embedded defaults as `--help` shows them; empty when the option is unset by default.
    pub defaults: Vec<String>,
    /// Whether the flag may be given more than once.
    pub repeatable: bool,
    /// The separator of several values in one environment variable (`:` for the model roots).
    pub env_delimiter: Option<char>,
    /// The first line of the help text.
    pub help: String,
}

/// Every option, in `--help` order.
pub fn options() -> Vec<OptionDoc> {
    Cli::command().get_arguments().filter_map(doc).collect()
}

/// The ids of the options that have a file key; clap knows each option by its file key.
pub(super) fn file_keys() -> Vec<String> {
    Cli::command().get_arguments().map(|a| a.get_id().to_string()).filter(|id| id.contains('.')).collect()
}

/// `--safety-margin (MAESTRO_SAFETY_MARGIN, file resources.safety_margin)`: the option named every way
/// it can be set, so an error reads right whichever way the value came in.
pub(super) fn label(file_key: &str) -> String {
    match options().into_iter().find(|o| o.file_key.as_deref() == Some(file_key)) {
        Some(o) => format!("{} ({}, file {file_key})", o.flag, o.env),
        None => file_key.to_string(),
    }
}

fn doc(arg: &Arg) -> Option<OptionDoc> {
    let id = arg.get_id().as_str();
    Some(OptionDoc {
        flag: format!("--{}", arg.get_long()?),
        env: arg.get_env()?.to_string_lossy().into_owned(),
        file_key: id.contains('.').then(|| id.to_string()),
        defaults: arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect(),
        repeatable: matches!(arg.get_action(), ArgAction::Append),
        env_delimiter: arg.get_value_delimiter(),
        help: arg
            .get_help()
            .map(|h| h.to_string())
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default()
            .into(),
    })
}
