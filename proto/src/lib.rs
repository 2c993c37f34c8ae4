//! The `maestro.v1` wire contract, generated from `maestro/v1/*.proto`: message types, the
//! `ResourceService` and `GenerationService` client stubs (feature `client`, default) and server
//! traits (feature `server`), and the encoded file descriptor set.
//!
//! This is the only crate clients share with the server; it carries no transport, so a client picks
//! its own (`tonic::transport::Channel`, gRPC-Web, ...).
#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("maestro.v1");

/// The encoded file descriptor set of `maestro.v1` and its imports, for reflection and for
/// decoding messages as JSON.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("maestro_descriptor");
