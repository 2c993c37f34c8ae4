//! What this build computes with: the engine it starts, the CUDA devices libtorch sees, and the GPU
//! figures the sampler reads. The one place that tells a build with libtorch from one without, so
//! the application and the transports above it are the same code in both.

use std::sync::Arc;

use crate::{
    config::Config,
    engine::{
        faults::{BoundaryFaults, Faulty},
        Engine,
    },
    inventory::{Compute, Executor, Inventory},
    monitor::sampler::SystemSampler,
};

/// What a build without libtorch cannot do, as UNIMPLEMENTED names it.
pub const NO_TORCH: &str = "generation (this build has no libtorch)";

/// The faults `--fault-injection` turns on at the inference boundary.
fn boundary_faults(config: &Config) -> BoundaryFaults {
    let g = &config.generation;
    BoundaryFaults {
        enabled: g.fault_injection,
        load_delay: if g.fault_injection { g.fault_load_delay } else { Default::default() },
    }
}

/// Starts the libtorch worker pool on the inventory's worker devices.
#[cfg(feature = "torch")]
pub fn start_engine(
    config: &Config,
    inventory: &Inventory,
    executor: Executor,
) -> anyhow::Result<Arc<dyn Engine>> {
    use super::{pin, worker::Faults, Pool, PoolSettings};
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let g = &config.generation;
    let settings = PoolSettings {
        devices: inventory.worker_devices().into_iter().map(|d| pin(executor, d)).collect(),
        workers_per_device: g.per_device_workers(),
        torch_threads: if g.torch_threads > 0 { g.torch_threads } else { cores },
        queue_capacity: g.queue_capacity,
        faults: Faults {
            enabled: g.fault_injection,
            oom_step: g.fault_oom_step,
            oom_min_batch: g.fault_oom_min_batch,
        },
        max_batch: g.max_batch,
        extend_stride_s: g.extend_stride_s,
    };
    let pool = Pool::start(&settings)?;
    let names: Vec<String> =
        pool.pinned().iter().map(|p| format!("{} on {:?}", p.device.name(), p.compute)).collect();
    tracing::info!(workers_per_device = settings.workers_per_device, torch_threads = settings.torch_threads, devices = %names.join(", "), "inference pool started");
    Ok(Faulty::wrap(Arc::new(pool), boundary_faults(config)))
}

/// The engine of a build without libtorch: it refuses every model and generation.
#[cfg(not(feature = "torch"))]
pub fn start_engine(config: &Config, _: &Inventory, _: Executor) -> anyhow::Result<Arc<dyn Engine>> {
    let refusing = Arc::new(crate::engine::Refusing { reason: NO_TORCH });
    Ok(Faulty::wrap(refusing, boundary_faults(config)))
}

/// libtorch's CUDA devices by PCI address, read through the allocator shim (`cudaGetDeviceCount`
/// and `cudaDeviceGetPCIBusId` start the runtime but create no context). Without the shim they cannot
/// be matched to NVML's, so no GPU is placed on (and the log says why).
#[cfg(feature = "torch")]
pub fn native_compute() -> Compute {
    let cuda_bus_ids: Vec<String> = (0..crate::cuda_alloc::device_count())
        .filter_map(|i| crate::cuda_alloc::pci_bus_id(i).ok())
        .collect();
    let seen = tch::Cuda::device_count();
    if cuda_bus_ids.is_empty() && seen > 0 {
        tracing::warn!(
            devices = seen,
            "libtorch sees CUDA devices but this build lacks the CUDA allocator shim: they cannot be matched to NVML's, so work stays on the CPU"
        );
    }
    Compute { cuda_bus_ids, executor: Executor::Native }
}

/// No CUDA device is computed on without libtorch.
#[cfg(not(feature = "torch"))]
pub fn native_compute() -> Compute {
    Compute::default()
}

/// The real machine's sampler: NVML, plus libtorch's CUDA allocator figures where it is linked.
pub fn system_sampler() -> SystemSampler {
    let nvml = crate::monitor::sampler::NvmlSource::init();
    #[cfg(feature = "torch")]
    let gpus = crate::monitor::devices::WithAllocator::new(nvml, Box::new(crate::cuda_alloc::Probe));
    #[cfg(not(feature = "torch"))]
    let gpus = nvml;
    SystemSampler::with_gpus(Box::new(gpus))
}
