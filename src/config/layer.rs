//! The layering: the embedded defaults, then the TOML file, then what clap took from the environment
//! and the flags (clap has already let a flag beat its environment variable). figment merges the three
//! as serde values and extracts the typed [`Config`], naming the key of a value that does not fit; a
//! key no section declares is refused by the sections' `deny_unknown_fields`.

use std::path::Path;

use clap::{parser::ValueSource, ArgMatches};
use figment::{
    error::{Kind, OneOf},
    providers::Serialized,
    value::Value,
    Figment,
};

use super::{reference, Config, ConfigError};

/// Merges the file (when there is one) over the defaults, and the options set by a flag or an
/// environment variable over both. `parsed` is clap's reading of the same command line.
pub(super) fn resolve(
    file: Option<&Path>,
    parsed: &Config,
    matches: &ArgMatches,
) -> Result<Config, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = file {
        figment = figment.merge(Serialized::defaults(read_file(path)?));
    }
    for (key, value) in explicit(parsed, matches)? {
        figment = figment.merge(Serialized::default(&key, value));
    }
    figment.extract().map_err(|e| match file {
        Some(path) => ConfigError::Parse { path: path.to_path_buf(), message: describe(&e) },
        None => ConfigError::Layer(describe(&e)),
    })
}

/// The options clap took from a flag or an environment variable, as (file key, value); the others
/// hold clap's default and must not hide the file's value.
fn explicit(parsed: &Config, matches: &ArgMatches) -> Result<Vec<(String, Value)>, ConfigError> {
    let values = Value::serialize(parsed).map_err(|e| ConfigError::Layer(e.to_string()))?;
    let set = |key: &String| {
        matches!(matches.value_source(key), Some(ValueSource::CommandLine | ValueSource::EnvVariable))
    };
    let lookup = |key: String| match values.find_ref(&key) {
        Some(value) => Ok((key, value.clone())),
        None => Err(ConfigError::Layer(format!("option {key} has no field of that name"))),
    };
    reference::file_keys().into_iter().filter(set).map(lookup).collect()
}

fn read_file(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    toml::from_str(&text).map_err(|e| {
        let line = e.span().map_or(1, |span| text[..span.start].matches('\n').count() + 1);
        ConfigError::Parse {
            path: path.to_path_buf(),
            message: format!("line {line}: {}", e.message().trim()),
        }
    })
}

/// One line naming the key: ``unknown key `server.lisen`, expected one of ...`` or
/// ``key `server.listen`: invalid type ...``.
fn describe(e: &figment::Error) -> String {
    let key = e.path.iter().map(|k| toml_key(k)).collect::<Vec<_>>().join(".");
    match &e.kind {
        // figment's path already ends with the unknown key.
        Kind::UnknownField(field, expected) => {
            let key = if key.is_empty() { toml_key(field) } else { key };
            format!("unknown key `{key}`, expected {}", OneOf(expected))
        }
        kind if key.is_empty() => kind.to_string(),
        kind => format!("key `{key}`: {kind}"),
    }
}

/// A key as the file would spell it: bare when it can be, quoted otherwise (a model id).
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option's clap id is a path to its serde field, or the layering could not find it.
    #[test]
    fn every_file_key_names_a_field() {
        let values = Value::serialize(Config::default()).unwrap();
        for key in reference::file_keys() {
            assert!(values.find_ref(&key).is_some(), "{key} is not a field of Config");
        }
    }
}
