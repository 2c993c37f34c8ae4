//! Bytes read as a configuration file (`maestro::checkpoint::fuzz::config_file`): a model folder's
//! JSON configs, read as its facts and a load read them, or the server's TOML file, layered and
//! validated as at start-up: a panic or a runaway allocation is a finding.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tempfile::TempDir;

fn scratch() -> &'static TempDir {
    static DIR: OnceLock<TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a scratch folder"))
}

fuzz_target!(|bytes: &[u8]| {
    maestro::checkpoint::fuzz::config_file(bytes, scratch().path());
});
