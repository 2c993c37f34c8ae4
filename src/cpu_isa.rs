//! The instruction-set cap (`--cpu-isa`): which of the CPU kernels' paths this process may use, and
//! the same cap for libtorch's own kernels (`ATEN_CPU_CAPABILITY`, `ONEDNN_MAX_CPU_ISA`). Plain
//! feature detection, no libtorch: the configuration checks a cap against the host before anything
//! starts, and `musicgen::kernels` reads the cap [`CpuIsa::apply`] set.

use std::{fmt, str::FromStr, sync::atomic::AtomicU8, sync::atomic::Ordering};

use serde::{Deserialize, Serialize};

/// An instruction-set level, best first; `Auto` is the best this host has. Each concrete level
/// runs its own copy of the CPU kernels (`musicgen::kernels::Path::of`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuIsa {
    /// The best level the host supports.
    Auto,
    /// AVX-512 F/BW/VL/DQ, F16C, FMA and AVX-512 VNNI: the AVX-512 kernels, except that int8
    /// products quantise each activation row to 8 bits and multiply bytes in int32 (`vpdpbusd`).
    Avx512Vnni,
    /// AVX-512 F/BW/VL/DQ with F16C and FMA.
    Avx512,
    /// AVX2, FMA, F16C and AVX-VNNI: the AVX2 kernels with int8 products as on `Avx512Vnni`, in
    /// the VEX-encoded dot product (Alder Lake and later, Zen 5).
    Avx2Vnni,
    /// AVX2, FMA and F16C: x86-64-v3.
    Avx2,
    /// Baseline x86-64 (or any other CPU): the portable kernels.
    Generic,
}

/// Every concrete level, best first.
pub const LEVELS: [CpuIsa; 5] =
    [CpuIsa::Avx512Vnni, CpuIsa::Avx512, CpuIsa::Avx2Vnni, CpuIsa::Avx2, CpuIsa::Generic];

/// The cap [`CpuIsa::apply`] set, as an index into `Auto` + [`LEVELS`] (0 = auto).
static CAP: AtomicU8 = AtomicU8::new(0);

impl CpuIsa {
    /// The option's spelling of this level.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Avx512Vnni => "avx512_vnni",
            Self::Avx512 => "avx512",
            Self::Avx2Vnni => "avx2_vnni",
            Self::Avx2 => "avx2",
            Self::Generic => "generic",
        }
    }

    /// Why the host cannot run this level, naming the CPU features it lacks; `None` when it can.
    pub fn missing_on_host(self) -> Option<String> {
        let missing: Vec<&str> = self.features().iter().copied().filter(|f| !has_feature(f)).collect();
        (!missing.is_empty()).then(|| format!("this CPU lacks {}", missing.join(", ")))
    }

    /// The CPU features this level needs (as `std::arch` names them).
    pub fn features(self) -> &'static [&'static str] {
        const AVX2: [&str; 3] = ["avx2", "fma", "f16c"];
        const AVX512: [&str; 6] = ["avx512f", "avx512bw", "avx512vl", "avx512dq", "fma", "f16c"];
        match self {
            Self::Auto | Self::Generic => &[],
            Self::Avx2 => &AVX2,
            Self::Avx2Vnni => &["avx2", "fma", "f16c", "avxvnni"],
            Self::Avx512 => &AVX512,
            Self::Avx512Vnni => &["avx512f", "avx512bw", "avx512vl", "avx512dq", "fma", "f16c", "avx512vnni"],
        }
    }

    /// The best level this host runs.
    pub fn host() -> CpuIsa {
        static HOST: std::sync::OnceLock<CpuIsa> = std::sync::OnceLock::new();
        *HOST.get_or_init(|| {
            LEVELS.into_iter().find(|l| l.missing_on_host().is_none()).unwrap_or(Self::Generic)
        })
    }

    /// The concrete level: the host's best for `Auto`, else itself.
    pub fn resolve(self) -> CpuIsa {
        if self == Self::Auto {
            Self::host()
        } else {
            self
        }
    }

    /// The values libtorch reads before its first op, so its own kernels obey the same cap:
    /// `ATEN_CPU_CAPABILITY` (`default`, `avx2`, `avx512`) and `ONEDNN_MAX_CPU_ISA`. `None` for
    /// `Auto`, which leaves libtorch (and any values the environment already sets) alone.
    pub fn libtorch_env(self) -> Option<[(&'static str, &'static str); 2]> {
        let (aten, onednn) = match self {
            Self::Auto => return None,
            Self::Avx512Vnni => ("avx512", "AVX512_CORE_VNNI"),
            Self::Avx512 => ("avx512", "AVX512_CORE"),
            Self::Avx2Vnni => ("avx2", "AVX2_VNNI"),
            Self::Avx2 => ("avx2", "AVX2"),
            Self::Generic => ("default", "SSE41"),
        };
        Some([("ATEN_CPU_CAPABILITY", aten), ("ONEDNN_MAX_CPU_ISA", onednn)])
    }

    /// Makes this the process's cap: the kernels' ([`CpuIsa::cap`]) and libtorch's (its environment).
    /// Call it once at start-up, before any thread starts and before libtorch runs its first op:
    /// libtorch reads the variables once, and setting the environment races with threads reading it.
    pub fn apply(self) {
        for (name, value) in self.libtorch_env().into_iter().flatten() {
            std::env::set_var(name, value);
        }
        let index = LEVELS.iter().position(|l| *l == self).map_or(0, |i| i + 1);
        CAP.store(index as u8, Ordering::Relaxed);
    }

    /// The cap [`CpuIsa::apply`] set (`Auto` when none was).
    pub fn cap() -> CpuIsa {
        match CAP.load(Ordering::Relaxed) {
            0 => Self::Auto,
            i => LEVELS[usize::from(i) - 1],
        }
    }
}

/// Whether this CPU has feature `name` (an `std::arch` feature name).
fn has_feature(name: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        match name {
            "avx2" => has!("avx2"),
            "fma" => has!("fma"),
            "f16c" => has!("f16c"),
            "avxvnni" => has!("avxvnni"),
            "avx512f" => has!("avx512f"),
            "avx512bw" => has!("avx512bw"),
            "avx512vl" => has!("avx512vl"),
            "avx512dq" => has!("avx512dq"),
            "avx512vnni" => has!("avx512vnni"),
            _ => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = name;
        false
    }
}

impl fmt::Display for CpuIsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CpuIsa {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        std::iter::once(Self::Auto).chain(LEVELS).find(|l| l.as_str() == s).ok_or_else(|| {
            format!("unknown instruction set {s:?}: auto, avx512_vnni, avx512, avx2_vnni, avx2 or generic")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling_and_refuses_others() {
        for level in std::iter::once(CpuIsa::Auto).chain(LEVELS) {
            assert_eq!(level.as_str().parse::<CpuIsa>(), Ok(level));
        }
        assert!("avx".parse::<CpuIsa>().is_err());
    }

    #[test]
    fn the_host_runs_its_own_level_and_generic_everywhere() {
        assert_eq!(CpuIsa::host().missing_on_host(), None);
        assert_eq!(CpuIsa::Generic.missing_on_host(), None);
        assert_eq!(CpuIsa::Auto.resolve(), CpuIsa::host());
        assert_eq!(CpuIsa::Auto.libtorch_env(), None);
        let avx2 = CpuIsa::Avx2.libtorch_env().expect("a concrete level sets both");
        assert_eq!(avx2, [("ATEN_CPU_CAPABILITY", "avx2"), ("ONEDNN_MAX_CPU_ISA", "AVX2")]);
    }
}
