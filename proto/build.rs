//! Compiles `maestro/v1/*.proto` with protox (no protoc needed) and writes the encoded file
//! descriptor set that reflection serves and the CLI decodes JSON with.
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["maestro/v1/resources.proto", "maestro/v1/generation.proto"];
    for p in protos.iter().chain(&["google/api/annotations.proto", "google/api/http.proto"]) {
        println!("cargo:rerun-if-changed={p}");
    }
    // Encoded by protox itself: prost's own descriptor types drop the options' extensions, and the
    // `google.api.http` annotations are extensions the HTTP API and its OpenAPI document read. Source
    // info stays, for the document's descriptions.
    let mut compiler = protox::Compiler::new(["."])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(protos)?;
    let encoded = compiler.encode_file_descriptor_set();
    let fds: prost_types::FileDescriptorSet = prost::Message::decode(encoded.as_slice())?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor = out.join("maestro_descriptor.bin");
    std::fs::write(&descriptor, &encoded)?;
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
