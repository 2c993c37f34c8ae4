//! The decoder's step weights in one allocation: every projection, LM head and int8 scale a decoding
//! step streams is copied at load, one by one as it is loaded, into a single buffer whose start is
//! aligned to 2 MiB and advised for transparent huge pages (`madvise(MADV_HUGEPAGE)`). With THP in
//! `madvise` mode, the kernel default on many distributions, nothing gets huge pages unless asked, so
//! where libtorch's allocator happened to place each matrix decided how many TLB misses a step took
//! and how well the prefetchers followed it; in one arena every load gets the same layout.

use std::cell::Cell;

use tch::{Device, Kind, Tensor};

/// The alignment of the arena's start: one transparent huge page.
const HUGE_PAGE: i64 = 2 << 20;
/// The alignment of each tensor in the arena: a 4 KiB page, so a row walk starts on a page.
const TENSOR_ALIGN: i64 = 4096;

/// A bump allocator over one byte buffer; tensors copied in are views that keep the buffer alive.
pub(super) struct Arena {
    /// `None` where weights are not packed (another device, nothing to hold).
    bytes: Option<Tensor>,
    /// Offset of the next tensor, from the aligned start.
    next: Cell<i64>,
    start: i64,
    capacity: i64,
}

impl Arena {
    /// An arena for tensors of `sizes` bytes on `device`; only the CPU packs (elsewhere [`Arena::adopt`]
    /// keeps the tensor as it is).
    pub fn new(sizes: impl IntoIterator<Item = i64>, device: Device) -> Self {
        let capacity: i64 = sizes.into_iter().map(aligned).sum();
        if device != Device::Cpu || capacity == 0 {
            return Self { bytes: None, next: Cell::new(0), start: 0, capacity: 0 };
        }
        let bytes = Tensor::empty([capacity + HUGE_PAGE], (Kind::Uint8, Device::Cpu));
        let base = bytes.data_ptr() as i64;
        let start = (HUGE_PAGE - base % HUGE_PAGE) % HUGE_PAGE;
        advise_huge_pages(base + start, capacity);
        Self { bytes: Some(bytes), next: Cell::new(0), start, capacity }
    }

    /// `t` copied into the arena (a contiguous view of the same shape and kind), or `t` itself made
    /// contiguous where the arena does not pack or has no room left (a shape the sizes missed).
    pub fn adopt(&self, t: Tensor) -> Tensor {
        let size = (t.numel() * t.kind().elt_size_in_bytes()) as i64;
        let offset = self.next.get();
        let Some(bytes) = self.bytes.as_ref().filter(|_| offset + size <= self.capacity) else {
            return t.contiguous();
        };
        self.next.set(offset + aligned(size));
        let view = bytes.narrow(0, self.start + offset, size).view_dtype(t.kind()).view(t.size().as_slice());
        let mut view = view;
        view.copy_(&t);
        view
    }
}

/// `size` rounded up to [`TENSOR_ALIGN`].
fn aligned(size: i64) -> i64 {
    (size + TENSOR_ALIGN - 1) / TENSOR_ALIGN * TENSOR_ALIGN
}

/// Asks the kernel for huge pages over `len` bytes at `addr` before any of them is touched. Advice
/// only: where THP is off it does nothing, and a refusal changes nothing but speed.
fn advise_huge_pages(addr: i64, len: i64) {
    #[cfg(target_os = "linux")]
    // SAFETY: the range lies inside the arena's live allocation (start aligned up within the extra
    // huge page allocated for it); MADV_HUGEPAGE changes no contents.
    unsafe {
        libc::madvise(addr as *mut libc::c_void, len as usize, libc::MADV_HUGEPAGE);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (addr, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_land_page_aligned_in_one_huge_page_aligned_buffer_with_their_values() {
        let (a, b) = (
            Tensor::randn([3, 5], (Kind::Float, Device::Cpu)),
            Tensor::randn([7], (Kind::Half, Device::Cpu)),
        );
        let arena = Arena::new([60, 14], Device::Cpu);
        let (a2, b2) = (arena.adopt(a.shallow_clone()), arena.adopt(b.shallow_clone()));
        assert!(a2.equal(&a) && b2.equal(&b), "values kept");
        assert_eq!((a2.size(), a2.kind(), b2.kind()), (vec![3, 5], Kind::Float, Kind::Half));
        let (pa, pb) = (a2.data_ptr() as i64, b2.data_ptr() as i64);
        assert_eq!((pa % HUGE_PAGE, pb - pa), (0, TENSOR_ALIGN), "one buffer, page-aligned slots");
        let extra = Tensor::ones([4], (Kind::Float, Device::Cpu));
        assert!(arena.adopt(extra.shallow_clone()).equal(&extra), "no room left: kept as it is");
    }
}
