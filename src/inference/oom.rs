//! Out of memory as libtorch reports it. tch turns every C++ exception into a message string (a
//! `TchError::Torch`, or the panic of an infallible tensor op), so [`classify`] reads libtorch's own
//! texts: the CUDA caching allocator's "CUDA out of memory. Tried to allocate …", the CPU allocator's
//! "DefaultCPUAllocator: can't allocate memory: you tried to allocate N bytes", cuBLAS' and cuDNN's
//! allocation statuses. [`OutOfMemory`] is what a failed request then reports: the device, what was
//! being done, the bytes asked for and the bytes free, and libtorch's own line.

use std::fmt;

use crate::resources::device::Device;

/// libtorch's out-of-memory texts, lowercase: the allocators' messages and the CUDA libraries'
/// allocation statuses.
const MARKERS: &[&str] = &[
    // c10's CUDACachingAllocator (and its ROCm build) when a block cannot be had even after freeing
    // the cache: "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of …".
    "cuda out of memory",
    "hip out of memory",
    // cudaErrorMemoryAllocation through C10_CUDA_CHECK (a context or a raw cudaMalloc).
    "cuda error: out of memory",
    // c10's alloc_cpu: posix_memalign failing (Linux, macOS), memalign / _aligned_malloc (Android,
    // Windows).
    "defaultcpuallocator: can't allocate memory",
    "defaultcpuallocator: not enough memory",
    // cuBLAS handle or workspace, cuDNN (v8 and v9 spellings), cuSOLVER, cuSPARSE.
    "cublas_status_alloc_failed",
    "cudnn_status_alloc_failed",
    "cudnn_status_internal_error_host_allocation_failed",
    "cudnn_status_internal_error_device_allocation_failed",
    "cudnn_status_not_enough_workspace",
    "cusolver_status_alloc_failed",
    "cusparse_status_alloc_failed",
];

/// Longest part of libtorch's message a status repeats.
const DETAIL_CHARS: usize = 300;

/// What libtorch's out-of-memory message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    /// Bytes the failed allocation asked for, when the message says.
    pub requested: Option<u64>,
    /// Bytes free on the device at the failure, when the message says (CUDA's allocator does).
    pub free: Option<u64>,
    /// libtorch's line, from the allocator's words on (without the C++ backtrace).
    pub detail: String,
}

/// Reads `message` (a libtorch error or a panic carrying one): `Some` when it is out of memory.
pub fn classify(message: &str) -> Option<Reported> {
    let lower = message.to_ascii_lowercase();
    let at = MARKERS.iter().filter_map(|m| lower.find(m)).min()?;
    let requested = size_after(message, &lower, "tried to allocate ");
    let free = size_after(message, &lower, "of which ")
        .or_else(|| size_after(message, &lower, "already allocated; "));
    Some(Reported { requested, free, detail: detail(&message[at..]) })
}

/// The size written right after `phrase` ("2.00 GiB", "268435456 bytes"), in bytes.
fn size_after(message: &str, lower: &str, phrase: &str) -> Option<u64> {
    let rest = &message[lower.find(phrase)? + phrase.len()..];
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let value: f64 = rest[..end].parse().ok()?;
    let unit = rest[end..].trim_start().split(|c: char| !c.is_ascii_alphabetic()).next()?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "bytes" | "byte" | "b" => 1u64,
        "kib" | "kb" => 1 << 10,
        "mib" | "mb" => 1 << 20,
        "gib" | "gb" => 1 << 30,
        "tib" | "tb" => 1 << 40,
        "pib" | "pb" => 1 << 50,
        _ => return None,
    };
    Some((value * scale as f64).round() as u64)
}

/// The first line of `text`, also cut where a panic's debug quoting escaped the line break, and at
/// most [`DETAIL_CHARS`] characters.
fn detail(text: &str) -> String {
    let end = ["\n", "\\n", "Exception raised from"].iter().filter_map(|s| text.find(s)).min();
    let line = &text[..end.unwrap_or(text.len())];
    // A panic's `Torch("…")` closes its quote right after libtorch's text.
    let line = line.strip_suffix("\")").unwrap_or(line).trim_end();
    match line.char_indices().nth(DETAIL_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    }
}

/// Where a free figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeSource {
    /// libtorch's message said it.
    Libtorch,
    /// The monitor's latest snapshot of the device (libtorch's message did not say).
    Monitor,
}

/// A request that failed because libtorch could not allocate memory.
#[derive(Debug, Clone, PartialEq)]
pub struct OutOfMemory {
    /// The device the allocation was for.
    pub device: Device,
    /// What was being done: `generating with M`, `loading M`.
    pub during: String,
    /// Bytes asked for, when known.
    pub requested: Option<u64>,
    /// Bytes free on the device, and who said so.
    pub free: Option<(u64, FreeSource)>,
    /// libtorch's line.
    pub detail: String,
}

impl OutOfMemory {
    /// The failure `reported` on `device` while doing `during`.
    pub fn new(device: Device, during: String, reported: Reported) -> Self {
        let free = reported.free.map(|b| (b, FreeSource::Libtorch));
        Self { device, during, requested: reported.requested, free, detail: reported.detail }
    }
}

/// `2.00 GB (2000000000 bytes)`.
fn bytes(b: u64) -> String {
    format!("{:.2} GB ({b} bytes)", b as f64 / 1e9)
}

impl fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "out of memory while {} on {}: ", self.during, self.device.name())?;
        match self.requested {
            Some(b) => write!(f, "libtorch asked for {}", bytes(b))?,
            None => write!(f, "libtorch's message does not say how much it asked for")?,
        }
        match self.free {
            Some((b, FreeSource::Libtorch)) => write!(f, " with {} free", bytes(b))?,
            Some((b, FreeSource::Monitor)) => {
                write!(f, " with {} free (the monitor's latest reading)", bytes(b))?
            }
            None => write!(f, "; the free memory of {} is unknown", self.device.name())?,
        }
        write!(f, "; libtorch: {}", self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// c10's CUDACachingAllocator since PyTorch 2.1.
    const CUDA: &str = "CUDA out of memory. Tried to allocate 1.95 GiB. GPU 0 has a total capacity of 14.57 GiB \
        of which 1.58 GiB is free. Process 2493055 has 12.02 GiB memory in use. Of the allocated memory 734.07 MiB \
        is allocated by PyTorch, and 33.93 MiB is reserved by PyTorch but unallocated. If reserved but \
        unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid \
        fragmentation.  See documentation for Memory Management  \
        (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)";
    /// The same allocator before 2.1.
    const CUDA_OLD: &str =
        "CUDA out of memory. Tried to allocate 36.00 MiB (GPU 0; 7.93 GiB total capacity; \
        130.35 MiB already allocated; 47.06 MiB free; 188.00 MiB reserved in total by PyTorch) If reserved \
        memory is >> allocated memory try setting max_split_size_mb to avoid fragmentation.";
    /// c10's alloc_cpu on Linux, as tch carries it: C++ assertion prefix and backtrace included.
    const CPU: &str = "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate \
        memory: you tried to allocate 288230376151711744 bytes. Error code 12 (Cannot allocate memory)\n\
        frame #0: c10::ThrowEnforceNotMet(char const*, int, char const*, std::string const&, void const*) + 0x59";

    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;

    #[test]
    fn cuda_caching_allocator_gives_requested_and_free_bytes() {
        let r = classify(CUDA).expect("out of memory");
        assert_eq!(r.requested, Some((1.95 * GIB).round() as u64));
        assert_eq!(r.free, Some((1.58 * GIB).round() as u64));
        assert!(r.detail.starts_with("CUDA out of memory. Tried to allocate 1.95 GiB."), "{}", r.detail);
        assert!(r.detail.ends_with('…') && r.detail.chars().count() == DETAIL_CHARS + 1, "{}", r.detail);
        let old = classify(CUDA_OLD).expect("out of memory");
        assert_eq!(old.requested, Some((36.0 * MIB).round() as u64));
        assert_eq!(old.free, Some((47.06 * MIB).round() as u64));
    }

    #[test]
    fn the_cpu_allocator_gives_requested_bytes_and_loses_its_backtrace() {
        let r = classify(CPU).expect("out of memory");
        assert_eq!(r.requested, Some(288_230_376_151_711_744));
        assert_eq!(r.free, None);
        assert_eq!(
            r.detail,
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 288230376151711744 bytes. \
             Error code 12 (Cannot allocate memory)"
        );
        let windows = "DefaultCPUAllocator: not enough memory: you tried to allocate 4096 bytes.";
        assert_eq!(classify(windows).unwrap().requested, Some(4096));
    }

    #[test]
    fn a_panic_of_an_infallible_tensor_op_is_read_through_its_quoting() {
        let panic = format!("called `Result::unwrap()` on an `Err` value: Torch({CPU:?})");
        let r = classify(&panic).expect("out of memory");
        assert_eq!(r.requested, Some(288_230_376_151_711_744));
        assert!(
            r.detail.starts_with("DefaultCPUAllocator") && !r.detail.contains("frame #0"),
            "{}",
            r.detail
        );
        let one_line =
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes. Error code 12 (x)";
        let panic = format!("called `Result::unwrap()` on an `Err` value: Torch({one_line:?})");
        assert_eq!(classify(&panic).unwrap().detail, one_line);
    }

    #[test]
    fn cuda_library_allocation_statuses_are_out_of_memory_without_figures() {
        for message in [
            "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
            "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
            "cuDNN error: CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED",
            "cuDNN error: CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED",
            "cuDNN error: CUDNN_STATUS_NOT_ENOUGH_WORKSPACE",
            "CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported",
            "HIP out of memory. Tried to allocate 20.00 MiB",
        ] {
            let r = classify(message).unwrap_or_else(|| panic!("{message:?} is out of memory"));
            assert!(!r.detail.contains('\n'), "{:?}", r.detail);
        }
    }

    #[test]
    fn other_errors_are_not_out_of_memory() {
        for message in [
            "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if you passed in a non-contiguous input.",
            "CUDA error: device-side assert triggered",
            "the caption cache is out of memory slots",
            "shape '[2, 3]' is invalid for input of size 7",
            "",
        ] {
            assert_eq!(classify(message), None, "{message:?}");
        }
    }

    #[test]
    fn the_status_names_device_request_and_free_memory_with_their_source() {
        let reported = classify(CPU).unwrap();
        let mut oom = OutOfMemory::new(Device::Cpu, "generating with m".into(), reported);
        let told = oom.to_string();
        assert!(
            told.starts_with("out of memory while generating with m on cpu: libtorch asked for"),
            "{told}"
        );
        assert!(
            told.contains("288230376151711744 bytes") && told.contains("free memory of cpu is unknown"),
            "{told}"
        );
        oom.free = Some((2_000_000_000, FreeSource::Monitor));
        let told = oom.to_string();
        assert!(
            told.contains("with 2.00 GB (2000000000 bytes) free (the monitor's latest reading)"),
            "{told}"
        );
        let cuda = OutOfMemory::new(Device::Cuda(1), "loading m".into(), classify(CUDA).unwrap());
        let told = cuda.to_string();
        assert!(
            told.starts_with("out of memory while loading m on cuda:1: libtorch asked for 2.09 GB"),
            "{told}"
        );
        assert!(told.contains(&format!("with {} free;", bytes((1.58 * GIB).round() as u64))), "{told}");
    }
}
