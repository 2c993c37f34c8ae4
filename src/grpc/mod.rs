//! The gRPC shell: generated types, the two Maestro services, health and reflection.
//!
//! Handlers are thin: validate and convert the request, call a domain handle, convert back. Every
//! error goes through [`status::status`].

mod audio;
pub mod auth;
pub mod convert;
pub mod deadline;
mod fanout;
pub mod fuzz;
mod generation;
pub mod health_service;
pub mod observe;
mod reports;
pub mod requests;
mod resources;
mod routes;
pub mod status;
pub mod streams;
pub mod tls;
pub mod transport;

pub use audio::{container as audio_container, format_of as audio_format_of};
pub use fanout::ResourceRoutes;
pub use generation::GenerationApi;
pub use resources::ResourceApi;
pub use routes::GenerationRoutes;

/// The generated `maestro.v1` types: private to the server, converted to and from the domain in
/// [`convert`] and [`requests`].
pub(crate) use maestro_proto as pb;

/// Fully qualified names of the Maestro services, as health and reflection know them.
pub const RESOURCE_SERVICE: &str = "maestro.v1.ResourceService";
/// See [`RESOURCE_SERVICE`].
pub const GENERATION_SERVICE: &str = "maestro.v1.GenerationService";

/// The descriptor sets of every service the gRPC port serves: Maestro's, health, reflection v1 and
/// v1alpha.
const SERVED_DESCRIPTORS: [&[u8]; 4] = [
    pb::FILE_DESCRIPTOR_SET,
    tonic_health::pb::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
];

/// The paths (`/package.Service/Method`) of every RPC the gRPC port serves, read once from the
/// embedded descriptor sets.
pub fn served_methods() -> &'static std::collections::BTreeSet<String> {
    static METHODS: std::sync::LazyLock<std::collections::BTreeSet<String>> =
        std::sync::LazyLock::new(|| {
            let mut methods = std::collections::BTreeSet::new();
            for set in SERVED_DESCRIPTORS {
                let set = <prost_types::FileDescriptorSet as prost::Message>::decode(set)
                    .expect("embedded descriptor sets are valid");
                for file in &set.file {
                    for service in &file.service {
                        for method in &service.method {
                            methods.insert(format!(
                                "/{}.{}/{}",
                                file.package(),
                                service.name(),
                                method.name()
                            ));
                        }
                    }
                }
            }
            methods
        });
    &METHODS
}

/// Reflection v1 and v1alpha over Maestro, health and reflection itself.
pub fn reflection() -> (
    tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
) {
    // Both reflection services are listed by both versions, so either client sees the whole server.
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(SERVED_DESCRIPTORS[0])
            .register_encoded_file_descriptor_set(SERVED_DESCRIPTORS[1])
            .register_encoded_file_descriptor_set(SERVED_DESCRIPTORS[2])
            .register_encoded_file_descriptor_set(SERVED_DESCRIPTORS[3])
    };
    let v1 = builder().build_v1().expect("embedded descriptor sets are valid");
    let v1alpha = builder().build_v1alpha().expect("embedded descriptor sets are valid");
    (v1, v1alpha)
}
