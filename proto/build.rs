//! Compiles `maestro/v1/*.proto` with protox (no protoc needed) and writes the encoded file
//! descriptor set that reflection serves and the CLI decodes JSON with.
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["maestro/v1/resources.proto", "maestro/v1/generation.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["."])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor = out.join("maestro_descriptor.bin");
    std::fs::write(&descriptor, prost::Message::encode_to_vec(&fds))?;
    // Both sides are generated; each is compiled only with its feature, so a client-only build
    // carries no server traits. No transport: callers bring their own channel or server.
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        .server_mod_attribute(".", r#"#[cfg(feature = "server")]"#)
        .client_mod_attribute(".", r#"#[cfg(feature = "client")]"#)
        .skip_protoc_run()
        .file_descriptor_set_path(&descriptor)
        .compile_fds(fds)?;
    Ok(())
}
