// libtorch's CUDA caching allocator, measured: allocated / reserved / peak bytes per device,
// emptying the cache and resetting the peak. Built only where libtorch's CUDA headers and the CUDA
// runtime headers are present (build.rs); every entry point declines when CUDA is unused.
//
// Never touches a device CUDA has not initialised: the allocator initialises its per-device state
// lazily, at the first CUDA allocation of the process, and until then every call declines without
// asking the driver anything. Reading statistics creates no context.
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>

#include <dlfcn.h>

#include <cstdint>

namespace {

using c10::CachingAllocator::StatType;
constexpr auto kAggregate = static_cast<size_t>(StatType::AGGREGATE);

// The allocator when this process has used CUDA, else null.
c10::cuda::CUDACachingAllocator::CUDAAllocator* live_allocator() {
  auto* allocator = c10::cuda::CUDACachingAllocator::get();
  if (allocator == nullptr || !allocator->initialized()) {
    return nullptr;
  }
  return allocator;
}

bool valid_device(int device) {
  return device >= 0 && device < static_cast<int>(c10::cuda::device_count());
}

}  // namespace

extern "C" {

// Return codes shared by every entry point.
enum : int32_t { kOk = 0, kUnused = 1, kNoDevice = 2, kFailed = 3 };

// out[0] allocated, out[1] reserved, out[2] peak allocated since the last reset (bytes).
int32_t maestro_cuda_alloc_stats(int32_t device, int64_t* out) {
  try {
    auto* allocator = live_allocator();
    if (allocator == nullptr) return kUnused;
    if (!valid_device(device)) return kNoDevice;
    const auto stats = allocator->getDeviceStats(static_cast<c10::DeviceIndex>(device));
    out[0] = stats.allocated_bytes[kAggregate].current;
    out[1] = stats.reserved_bytes[kAggregate].current;
    out[2] = stats.allocated_bytes[kAggregate].peak;
    return kOk;
  } catch (...) {
    return kFailed;
  }
}

// Returns every cached, unused block of every device to the driver.
int32_t maestro_cuda_empty_cache() {
  try {
    auto* allocator = live_allocator();
    if (allocator == nullptr) return kUnused;
    allocator->emptyCache();
    return kOk;
  } catch (...) {
    return kFailed;
  }
}

// Starts a new peak window on `device`.
int32_t maestro_cuda_reset_peak(int32_t device) {
  try {
    auto* allocator = live_allocator();
    if (allocator == nullptr) return kUnused;
    if (!valid_device(device)) return kNoDevice;
    allocator->resetPeakStats(static_cast<c10::DeviceIndex>(device));
    return kOk;
  } catch (...) {
    return kFailed;
  }
}

// The PCI bus id ("0000:17:00.0") of CUDA device `device`, NUL-terminated in `buf`, so the
// caller can match libtorch's indices to NVML's. The runtime's own function, found in the libcudart
// that libc10_cuda already loaded (no second link to a versioned library); it reads the device's
// attributes and creates no context.
int32_t maestro_cuda_pci_bus_id(int32_t device, char* buf, int32_t len) {
  try {
    if (!valid_device(device)) return kNoDevice;
    using GetBusId = int (*)(char*, int, int);
    auto get = reinterpret_cast<GetBusId>(dlsym(RTLD_DEFAULT, "cudaDeviceGetPCIBusId"));
    if (get == nullptr || get(buf, len, device) != 0) return kFailed;
    return kOk;
  } catch (...) {
    return kFailed;
  }
}

// CUDA devices libtorch sees (0 without a driver); asks the driver nothing beyond the count.
int32_t maestro_cuda_device_count() {
  try {
    return static_cast<int32_t>(c10::cuda::device_count());
  } catch (...) {
    return 0;
  }
}

}  // extern "C"
