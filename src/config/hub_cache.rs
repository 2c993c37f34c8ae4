//! `--hub-cache`: whether the Hugging Face hub cache is a model root, and which one. Written as a
//! word or a path in all three sources (flag, environment, file), so one parser serves them all.

use std::{ffi::OsString, fmt, path::PathBuf, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::resources::hub_cache;

/// The hub cache setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum HubCache {
    /// `auto`: the cache `huggingface_hub` would use ([`hub_cache::discover`]), when it exists.
    Auto,
    /// `off`: no hub cache.
    Off,
    /// A cache directory, used whether or not it exists yet (it is looked at on every listing).
    Dir(PathBuf),
}

impl HubCache {
    /// The cache directory to search, given the environment lookup `var`: `auto` finds it as
    /// `huggingface_hub` does and uses it only when it is a directory.
    pub fn dir(&self, var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
        match self {
            HubCache::Auto => hub_cache::discover(var).filter(|d| d.is_dir()),
            HubCache::Off => None,
            HubCache::Dir(dir) => Some(dir.clone()),
        }
    }

    /// [`Self::dir`] from the process environment.
    pub fn dir_from_env(&self) -> Option<PathBuf> {
        self.dir(|name| std::env::var_os(name))
    }
}

impl FromStr for HubCache {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(HubCache::Auto),
            "off" => Ok(HubCache::Off),
            "" => Err("must be auto, off or a directory, got \"\"".to_owned()),
            path => Ok(HubCache::Dir(PathBuf::from(path))),
        }
    }
}

impl TryFrom<String> for HubCache {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<HubCache> for String {
    fn from(value: HubCache) -> String {
        value.to_string()
    }
}

impl fmt::Display for HubCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HubCache::Auto => f.write_str("auto"),
            HubCache::Off => f.write_str("off"),
            HubCache::Dir(dir) => write!(f, "{}", dir.display()),
        }
    }
}
