//! Writes an rpath to libtorch into the `maestro` binary and its tests.
//!
//! The CLI asks for the library without libtorch, but its tests (which run the server with
//! generation) and a workspace build (`make build`, `make test`) link it with libtorch. The root crate's rpath
//! applies to its own targets only; without this one `maestro` would not start outside a shell that
//! sets `LD_LIBRARY_PATH`. An rpath that ends up unused costs nothing.
use std::{env, path::PathBuf, process::Command};

fn main() {
    for var in ["LIBTORCH", "LIBTORCH_LIB", "LIBTORCH_USE_PYTORCH", "PYTHON_SYS_EXECUTABLE", "PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    if let Some(lib) = libtorch_lib() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}

/// Where libtorch's shared libraries are, found the way torch-sys finds them.
fn libtorch_lib() -> Option<PathBuf> {
    if let Ok(lib) = env::var("LIBTORCH_LIB") {
        return Some(PathBuf::from(lib).join("lib"));
    }
    if let Ok(root) = env::var("LIBTORCH") {
        return Some(PathBuf::from(root).join("lib"));
    }
    env::var_os("LIBTORCH_USE_PYTORCH")?;
    let python = env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
    let script = "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))";
    let out = Command::new(python).args(["-c", script]).output().ok()?;
    let dir = String::from_utf8(out.stdout).ok()?;
    out.status.success().then(|| PathBuf::from(dir.trim()))
}
