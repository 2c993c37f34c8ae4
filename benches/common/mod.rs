//! What the MusicGen and generation benchmarks share: the cache directory, the venv's Python, and
//! the musicgen-small-shaped random checkpoint, made once by `scripts/make_reference.py`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// `~/.cache/maestro`.
pub fn cache() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/maestro")
}

/// The venv's `python3` (`MAESTRO_VENV`, else the cached venv).
pub fn python() -> PathBuf {
    std::env::var("MAESTRO_VENV").map_or_else(|_| cache().join("venv"), PathBuf::from).join("bin/python3")
}

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Name of the small-shaped checkpoint's directory under [`cache`] (also its model id there).
pub const SMALL_SHAPE: &str = "musicgen-small-shape";

/// The small-shaped checkpoint's directory, made on first use.
pub fn small_shape_dir() -> PathBuf {
    let dir = cache().join(SMALL_SHAPE);
    if !dir.join("model.safetensors").exists() {
        eprintln!("creating {} (once)", dir.display());
        let status = Command::new(python())
            .arg(repo().join("scripts/make_reference.py"))
            .arg("--small-shape")
            .arg(&dir)
            .status()
            .expect("python runs");
        assert!(status.success(), "make_reference.py --small-shape failed");
    }
    dir
}

/// The CPU's model name and the 1-minute load average, to read a run's figures against.
#[allow(dead_code)] // the benchmarks that print their host
pub fn host() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!("{cpu}, load average {}", load.split_whitespace().next().unwrap_or("unknown"))
}
