//! What libtorch this process runs on, for the start-up log and the inference pool.

/// libtorch's build and run-time facts.
#[derive(Debug, Clone)]
pub struct TorchInfo {
    /// The libtorch version this binary links (read at build time).
    pub version: &'static str,
    /// libtorch's intra-op thread count.
    pub threads: i32,
    /// Whether CUDA can be used.
    pub cuda_available: bool,
    /// CUDA devices visible to libtorch.
    pub cuda_devices: i64,
}

/// Reads libtorch's version, threads and CUDA availability.
pub fn info() -> TorchInfo {
    TorchInfo {
        version: env!("MAESTRO_LIBTORCH_VERSION"),
        threads: tch::get_num_threads(),
        cuda_available: tch::Cuda::is_available(),
        cuda_devices: tch::Cuda::device_count(),
    }
}
