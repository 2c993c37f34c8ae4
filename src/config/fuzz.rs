//! The fuzzing entry point of the server's configuration file: bytes written as the TOML file
//! `--config` names, then layered and validated exactly as `maestro-server` starts. Whatever the
//! bytes, the result is a configuration or an error naming the file, never a panic. Shared by the
//! `cargo fuzz` target (`fuzz/`) and the property tests in `make test`.

use std::path::Path;

use super::{CliError, Config};

/// Writes `bytes` as `maestro.toml` in the scratch folder `dir` and loads the configuration from it
/// (flags and `MAESTRO_*` variables layer over it as usual; the fuzzer sets none).
pub fn check(bytes: &[u8], dir: &Path) {
    let path = dir.join("maestro.toml");
    std::fs::write(&path, bytes).expect("the scratch folder is writable");
    match Config::load([Path::new("maestro-server"), Path::new("--config"), &path]) {
        Ok((config, command)) => {
            assert!(command.is_none(), "a file chose a subcommand");
            assert!(config.generation.per_device_workers() > 0, "accepted no worker");
        }
        Err(CliError::Config(_)) => {}
        Err(CliError::Args(e)) => panic!("the file's bytes reached the flags: {e}"),
    }
}
