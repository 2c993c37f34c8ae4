//! Which compiled copy of the kernels runs: `csrc/isa.h`'s `Isa`, chosen per process from the CPU
//! and the `--cpu-isa` cap.

use std::fmt;

use crate::cpu_isa::CpuIsa;

use super::ffi::maestro_isa_supported;

/// A kernel path: the instruction set one copy of every kernel is compiled for (`csrc/isa.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Path {
    /// Baseline x86-64: 8 lanes in plain arrays, vectorised by the compiler; f16 / bf16 converted in software.
    Generic = 0,
    /// AVX2 with FMA and F16C (x86-64-v3): 8 lanes.
    Avx2 = 1,
    /// AVX-512 F/BW/VL/DQ with FMA and F16C: 16 lanes.
    Avx512 = 2,
    /// [`Path::Avx2`] whose int8 products quantise the activations per row and multiply bytes in
    /// int32 (AVX-VNNI's VEX-encoded `vpdpbusd`).
    Avx2Vnni = 3,
    /// [`Path::Avx512`] whose int8 products quantise the activations per row and multiply bytes in
    /// int32 (AVX-512 VNNI's `vpdpbusd`).
    Avx512Vnni = 4,
}

impl Path {
    /// Every path, best first.
    pub const ALL: [Path; 5] = [Path::Avx512Vnni, Path::Avx512, Path::Avx2Vnni, Path::Avx2, Path::Generic];

    /// The path that serves instruction-set level `level`, one each.
    pub fn of(level: CpuIsa) -> Path {
        match level.resolve() {
            CpuIsa::Avx512Vnni => Path::Avx512Vnni,
            CpuIsa::Avx512 => Path::Avx512,
            CpuIsa::Avx2Vnni => Path::Avx2Vnni,
            CpuIsa::Avx2 => Path::Avx2,
            CpuIsa::Generic | CpuIsa::Auto => Path::Generic,
        }
    }

    /// The level whose features this path needs.
    fn level(self) -> CpuIsa {
        match self {
            Path::Avx512Vnni => CpuIsa::Avx512Vnni,
            Path::Avx512 => CpuIsa::Avx512,
            Path::Avx2Vnni => CpuIsa::Avx2Vnni,
            Path::Avx2 => CpuIsa::Avx2,
            Path::Generic => CpuIsa::Generic,
        }
    }

    /// Whether int8 products on this path quantise the activations (the VNNI paths, for products of
    /// more than [`super::QUANTISE_ABOVE_ROWS`] rows); every other product, and every product
    /// elsewhere, keeps f32 activations.
    pub fn quantises_activations(self) -> bool {
        matches!(self, Path::Avx512Vnni | Path::Avx2Vnni)
    }

    /// Whether int4 products on this path quantise the activations to bytes (per row, symmetric):
    /// every path but the generic one, which widens the codes to f32 instead.
    pub fn quantises_int4_activations(self) -> bool {
        self != Path::Generic
    }

    /// Whether an int8 product of `rows` activation rows on this path quantises them.
    pub fn quantises_activations_at(self, rows: i64) -> bool {
        self.quantises_activations() && rows > super::QUANTISE_ABOVE_ROWS
    }

    /// Why this path cannot run in this process (kernels not built, features the CPU lacks);
    /// `None` when it can.
    pub fn unavailable(self) -> Option<String> {
        if !super::supported() {
            return Some("the CPU kernels were not built".into());
        }
        if let Some(why) = self.level().missing_on_host() {
            return Some(why);
        }
        // SAFETY: a pure CPU-feature query.
        let runs = unsafe { maestro_isa_supported(self as i32) } == 1;
        (!runs).then(|| "the kernels' own CPU check declines it".into())
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Path::Generic => "generic",
            Path::Avx2 => "avx2",
            Path::Avx512 => "avx512",
            Path::Avx2Vnni => "avx2_vnni",
            Path::Avx512Vnni => "avx512_vnni",
        })
    }
}

thread_local! {
    /// The path a [`PathGuard`] set for this thread, over the process's.
    static OVERRIDE: std::cell::Cell<Option<Path>> = const { std::cell::Cell::new(None) };
}

/// The path the kernels take on this thread: the one a [`PathGuard`] set, else the best this CPU has
/// under the process's cap ([`CpuIsa::apply`]; `Auto` when nothing set one).
pub fn active() -> Path {
    OVERRIDE.with(|o| o.get()).unwrap_or_else(|| Path::of(CpuIsa::cap()))
}

/// Every kernel this thread calls runs on `path` while the guard lives (tests and benchmarks run
/// each path side by side this way; on a path the CPU lacks a kernel declines and its caller falls
/// back to libtorch). Dropping it restores the previous choice, also when a test panics.
pub struct PathGuard {
    previous: Option<Path>,
    /// The override is this thread's: the guard must be dropped on it.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl PathGuard {
    /// Sets `path` for this thread until the guard drops.
    pub fn new(path: Path) -> Self {
        Self { previous: OVERRIDE.with(|o| o.replace(Some(path))), _not_send: std::marker::PhantomData }
    }
}

impl Drop for PathGuard {
    fn drop(&mut self) {
        OVERRIDE.with(|o| o.set(self.previous));
    }
}
