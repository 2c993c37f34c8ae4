//! Tests of what a need adds up on each device: everything once on the CPU, GPU bytes and the host
//! runtime on a GPU, and what is already in memory listed but not counted.

use super::super::{describe, DType, Registry, Resident, CUDA_CONTEXT_BYTES, GB, HOST_RUNTIME_BYTES};
use crate::resources::device::Device;

#[test]
fn on_the_cpu_everything_is_host_memory_counted_once() {
    let large = Registry::default().table("facebook/musicgen-large").unwrap().requirements(DType::F32, 10.0);
    let cpu = large.need(Device::Cpu, 1, Resident::default());
    assert_eq!(cpu.gpu_bytes(), 0);
    assert_eq!(cpu.host_bytes(), 12 * GB + large.per_sample_bytes, "the host figure plus one sample");
    assert!(cpu.host_bytes() < 17 * GB, "{}", cpu.host_bytes());
    let gpu = large.need(Device::Cuda(1), 1, Resident::default());
    assert_eq!(gpu.host_bytes(), HOST_RUNTIME_BYTES, "beside a GPU the host holds the runtime alone");
    assert_eq!(gpu.gpu_bytes(), 11 * GB + large.per_sample_bytes + CUDA_CONTEXT_BYTES);
    assert_eq!(cpu.cuda_context_bytes, 0);
}

#[test]
fn what_is_resident_is_listed_not_counted() {
    let small = Registry::default().table("facebook/musicgen-small").unwrap().requirements(DType::F16, 10.0);
    let loaded = Resident { weights: true, runtime: true, cuda_context: true };
    let cpu = small.need(Device::Cpu, 3, loaded);
    assert_eq!(cpu.host_bytes(), 3 * small.per_sample_bytes);
    assert!(!cpu.resident.cuda_context, "the CPU has no CUDA context to share");
    let gpu = small.need(Device::Cuda(0), 3, loaded);
    assert_eq!((gpu.gpu_bytes(), gpu.host_bytes()), (3 * small.per_sample_bytes, 0));
    let context_only = small.need(Device::Cuda(0), 1, Resident { cuda_context: true, ..Resident::default() });
    assert_eq!(context_only.gpu_bytes(), small.weights_bytes() + small.per_sample_bytes);
    let text = describe(&cpu.host_terms());
    assert!(text.starts_with("1.75 GB working set (3 × 10 s); already in memory"), "{text}");
    assert!(text.contains("weights (text encoder f32 0.44 GB + decoder f16"), "{text}");
    assert_eq!(
        describe(&small.need(Device::Cuda(0), 1, loaded).host_terms()).split(';').next(),
        Some("nothing")
    );
}
