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
