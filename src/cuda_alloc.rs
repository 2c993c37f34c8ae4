//! libtorch's CUDA caching allocator, measured: allocated, reserved and peak bytes per device,
//! emptying the cache and starting a new peak window, through `csrc/cuda_alloc.cpp`.
//!
//! The shim is built only where libtorch's CUDA headers and the CUDA runtime headers are present
//! (`build.rs` says so otherwise). Every call declines, with the reason, when the shim is not built
//! or when this process has not used CUDA: the allocator sets up its per-device state at the first
//! CUDA allocation, and asking before then would tell nothing true (and must not create a context
//! on a device). Callers report a declined figure as absent, never as zero.

/// The allocator's figures for one device, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocatorStats {
    /// Bytes in live tensors.
    pub allocated_bytes: u64,
    /// Bytes the allocator holds from the driver (allocated plus cached, unused blocks).
    pub reserved_bytes: u64,
    /// Most bytes allocated at once since the last [`reset_peak`] (or since start).
    pub peak_allocated_bytes: u64,
}

impl AllocatorStats {
    /// Cached blocks that [`empty_cache`] would give back to the driver.
    pub fn cached_bytes(&self) -> u64 {
        self.reserved_bytes.saturating_sub(self.allocated_bytes)
    }
}

/// Why the allocator gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Declined {
    /// This binary was built without the shim (no CUDA headers at build time).
    #[error("the CUDA allocator shim is not built into this binary")]
    NotBuilt,
    /// This process has not allocated on any CUDA device yet.
    #[error("CUDA is unused in this process")]
    CudaUnused,
    /// No such CUDA device.
    #[error("no CUDA device {0}")]
    NoDevice(usize),
    /// libtorch raised an error.
    #[error("the CUDA allocator failed")]
    Failed,
}

/// Whether this binary carries the shim.
pub const fn built() -> bool {
    cfg!(maestro_cuda_shim)
}

/// The allocator's figures for CUDA device `device` (libtorch's index).
pub fn stats(device: usize) -> Result<AllocatorStats, Declined> {
    let index = i32::try_from(device).map_err(|_| Declined::NoDevice(device))?;
    let mut out = [0i64; 3];
    // SAFETY: `out` has the three slots the shim writes; the shim catches every C++ exception.
    check(unsafe { ffi::maestro_cuda_alloc_stats(index, out.as_mut_ptr()) }, device)?;
    let bytes = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(AllocatorStats {
        allocated_bytes: bytes(out[0]),
        reserved_bytes: bytes(out[1]),
        peak_allocated_bytes: bytes(out[2]),
    })
}

/// Gives every cached, unused block of every device back to the driver.
pub fn empty_cache() -> Result<(), Declined> {
    // SAFETY: no arguments; the shim catches every C++ exception.
    check(unsafe { ffi::maestro_cuda_empty_cache() }, 0)
}

/// Starts a new peak window on `device`, so the next [`stats`] peak covers what ran since.
pub fn reset_peak(device: usize) -> Result<(), Declined> {
    let index = i32::try_from(device).map_err(|_| Declined::NoDevice(device))?;
    // SAFETY: plain integer argument; the shim catches every C++ exception.
    check(unsafe { ffi::maestro_cuda_reset_peak(index) }, device)
}

/// CUDA devices libtorch sees (0 without a driver, or without the shim).
pub fn device_count() -> usize {
    // SAFETY: no arguments; the shim catches every C++ exception.
    usize::try_from(unsafe { ffi::maestro_cuda_device_count() }).unwrap_or(0)
}

/// The PCI bus id of CUDA device `device` as the runtime writes it (`0000:17:00.0`), to match
/// libtorch's device indices with NVML's ([`crate::monitor::devices`]).
pub fn pci_bus_id(device: usize) -> Result<String, Declined> {
    let index = i32::try_from(device).map_err(|_| Declined::NoDevice(device))?;
    let mut buf = [0u8; 32];
    // SAFETY: `buf` holds `len` bytes; the runtime writes at most that many, NUL-terminated.
    check(unsafe { ffi::maestro_cuda_pci_bus_id(index, buf.as_mut_ptr().cast(), 32) }, device)?;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// The allocator as the monitor reads it: libtorch's devices by PCI address and their figures.
pub struct Probe;

impl crate::monitor::devices::AllocatorProbe for Probe {
    fn cuda_bus_ids(&mut self) -> Vec<String> {
        (0..device_count()).map(|i| pci_bus_id(i).unwrap_or_default()).collect()
    }

    fn allocator_bytes(&mut self, cuda_index: usize) -> Option<(u64, u64)> {
        stats(cuda_index).ok().map(|s| (s.allocated_bytes, s.reserved_bytes))
    }
}

/// The shim's return codes (`csrc/cuda_alloc.cpp`).
fn check(code: i32, device: usize) -> Result<(), Declined> {
    match code {
        0 => Ok(()),
        1 => Err(Declined::CudaUnused),
        2 => Err(Declined::NoDevice(device)),
        -1 => Err(Declined::NotBuilt),
        _ => Err(Declined::Failed),
    }
}

#[cfg(maestro_cuda_shim)]
mod ffi {
    extern "C" {
        pub fn maestro_cuda_alloc_stats(device: i32, out: *mut i64) -> i32;
        pub fn maestro_cuda_empty_cache() -> i32;
        pub fn maestro_cuda_reset_peak(device: i32) -> i32;
        pub fn maestro_cuda_pci_bus_id(device: i32, buf: *mut std::ffi::c_char, len: i32) -> i32;
        pub fn maestro_cuda_device_count() -> i32;
    }
}

/// Built without the shim: every call declines.
#[cfg(not(maestro_cuda_shim))]
#[allow(clippy::missing_safety_doc)]
mod ffi {
    pub unsafe fn maestro_cuda_alloc_stats(_device: i32, _out: *mut i64) -> i32 {
        -1
    }
    pub unsafe fn maestro_cuda_empty_cache() -> i32 {
        -1
    }
    pub unsafe fn maestro_cuda_reset_peak(_device: i32) -> i32 {
        -1
    }
    pub unsafe fn maestro_cuda_pci_bus_id(_device: i32, _buf: *mut std::ffi::c_char, _len: i32) -> i32 {
        -1
    }
    pub unsafe fn maestro_cuda_device_count() -> i32 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the build found libtorch's CUDA headers, the shim must be in the binary: a compiler
    /// failure would otherwise leave the figures absent without anyone noticing.
    #[test]
    fn is_built_wherever_the_headers_are() {
        let headers = env!("MAESTRO_CUDA_SHIM_HEADERS") == "1";
        assert_eq!(built(), headers, "headers found at build time: {headers}, shim built: {}", built());
    }

    /// Without a GPU (or before any CUDA allocation) every call declines and nothing crashes; on a
    /// GPU host the figures follow a real allocation.
    #[test]
    fn declines_cleanly_until_cuda_is_used_and_measures_after() {
        if !tch::Cuda::is_available() {
            let unused = if built() { Declined::CudaUnused } else { Declined::NotBuilt };
            assert_eq!(stats(0), Err(unused));
            assert_eq!(empty_cache(), Err(unused));
            assert_eq!(reset_peak(0), Err(unused));
            assert_eq!(device_count(), 0);
            let absent = if built() { Declined::NoDevice(0) } else { Declined::NotBuilt };
            assert_eq!(pci_bus_id(0), Err(absent));
            return;
        }
        // The GPU path: runs only on a host with CUDA.
        let t = tch::Tensor::zeros([64, 1024, 1024], (tch::Kind::Float, tch::Device::Cuda(0)));
        let s = stats(0).expect("CUDA was used");
        assert!(s.allocated_bytes >= 256 << 20 && s.reserved_bytes >= s.allocated_bytes, "{s:?}");
        drop(t);
        empty_cache().expect("CUDA was used");
        assert!(stats(0).expect("still used").reserved_bytes < s.reserved_bytes);
        assert_eq!(stats(usize::MAX), Err(Declined::NoDevice(usize::MAX)));
        let bus = pci_bus_id(0).expect("device 0 exists");
        assert!(crate::monitor::devices::normalise_bus_id(&bus).is_some(), "{bus}");
    }
}
