//! Compiles the protos with protox (no protoc needed) and embeds the file descriptor set for
//! reflection; emits an rpath to libtorch so binaries and tests run without LD_LIBRARY_PATH.
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/maestro/v1/resources.proto", "proto/maestro/v1/generation.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor = out.join("maestro_descriptor.bin");
    std::fs::write(&descriptor, prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .skip_protoc_run()
        .file_descriptor_set_path(&descriptor)
        .compile_fds(fds)?;
    if let Ok(lib) = env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        let version = libtorch_version(std::path::Path::new(&lib)).unwrap_or_else(|| "unknown".into());
        println!("cargo:rustc-env=MAESTRO_LIBTORCH_VERSION={version}");
    }
    Ok(())
}

/// The version of the libtorch in `lib`: PyTorch's `version.py` beside it, or a libtorch
/// distribution's `build-version` file.
fn libtorch_version(lib: &std::path::Path) -> Option<String> {
    let root = lib.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        let line = text.lines().find(|l| l.starts_with("__version__"))?;
        return Some(line.split(['\'', '"']).nth(1)?.to_string());
    }
    std::fs::read_to_string(root.join("build-version")).ok().map(|v| v.trim().to_string())
}
