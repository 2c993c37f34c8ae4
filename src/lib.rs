//! Maestro: a gRPC service that serves MusicGen text-to-music generation without running out of
//! memory. See `DESIGN.md` in the shared folder for the architecture; each module's header says its role.

pub mod alerts;
pub mod app;
pub mod audio_input;
pub mod audio_out;
pub mod checkpoint;
pub mod chroma;
pub mod config;
pub mod cpu_isa;
#[cfg(feature = "torch")]
pub mod cuda_alloc;
pub mod dashboard;
pub mod engine;
pub mod error;
pub mod gateway;
pub mod generation;
pub mod grpc;
pub mod http;
pub mod inference;
pub mod inventory;
pub mod metrics;
pub mod monitor;
#[cfg(feature = "torch")]
pub mod musicgen;
pub mod probes;
pub mod reload;
pub mod resources;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "torch")]
pub mod torch;
