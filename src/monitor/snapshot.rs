//! The domain snapshot: one sample of host, container, process and GPU resources, plus what the
//! monitor derives from it (effective memory, health level, stale sources).

use std::time::SystemTime;

/// Host memory and CPU.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostStats {
    /// Physical memory.
    pub memory_total_bytes: u64,
    /// Memory available for new allocations (MemAvailable).
    pub memory_available_bytes: u64,
    /// Memory in use.
    pub memory_used_bytes: u64,
    /// Swap size.
    pub swap_total_bytes: u64,
    /// Swap in use.
    pub swap_used_bytes: u64,
    /// Global CPU use, 0-100.
    pub cpu_percent: f64,
    /// Per-core CPU use, 0-100.
    pub cpu_per_core_percent: Vec<f64>,
    /// Load averages over 1, 5 and 15 minutes.
    pub load_average: [f64; 3],
}

/// A cgroup memory limit, when one applies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerStats {
    /// `v1` or `v2`.
    pub cgroup_version: &'static str,
    /// The limit; `None` when the cgroup sets none ("max").
    pub memory_limit_bytes: Option<u64>,
    /// The cgroup's current usage.
    pub memory_usage_bytes: u64,
}

/// The server process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    /// Process id.
    pub pid: u32,
    /// Resident set size.
    pub rss_bytes: u64,
    /// Virtual size.
    pub virtual_bytes: u64,
    /// CPU use, 0-100 per core (so up to 100 x cores).
    pub cpu_percent: f64,
    /// OS threads.
    pub threads: u32,
}

/// One GPU as NVML reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuDevice {
    /// NVML index.
    pub index: u32,
    /// Product name.
    pub name: String,
    /// Stable id.
    pub uuid: String,
    /// Memory size.
    pub memory_total_bytes: u64,
    /// Memory in use (all processes).
    pub memory_used_bytes: u64,
    /// Memory free.
    pub memory_free_bytes: u64,
    /// GPU utilisation, 0-100.
    pub utilization_gpu_percent: f64,
    /// Memory-controller utilisation, 0-100.
    pub utilization_memory_percent: f64,
    /// Core temperature in °C.
    pub temperature_celsius: f64,
    /// Power draw in W.
    pub power_watts: f64,
    /// Enforced power limit in W.
    pub power_limit_watts: f64,
    /// CUDA compute capability (major, minor).
    pub compute_capability: (u32, u32),
    /// libtorch caching allocator: bytes handed to tensors.
    pub torch_allocated_bytes: u64,
    /// libtorch caching allocator: bytes held from the driver.
    pub torch_reserved_bytes: u64,
}

impl GpuDevice {
    /// Memory in use as a percentage of the card's memory.
    pub fn memory_used_percent(&self) -> f64 {
        percent(self.memory_used_bytes, self.memory_total_bytes)
    }
}

/// The GPUs, or why there are none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuStats {
    /// Whether NVML answered.
    pub available: bool,
    /// NVML's reason when it did not.
    pub unavailable_reason: String,
    /// Driver version.
    pub driver_version: String,
    /// Every device.
    pub devices: Vec<GpuDevice>,
}

/// Which limit bounds the server's memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LimitSource {
    /// Physical memory.
    #[default]
    Host,
    /// A cgroup limit below physical memory.
    Cgroup,
}

/// Memory the server may use: the smaller of host and cgroup limits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EffectiveMemory {
    /// The limit.
    pub limit_bytes: u64,
    /// In use against that limit.
    pub used_bytes: u64,
    /// Still available under that limit.
    pub available_bytes: u64,
    /// Which limit applies.
    pub source: LimitSource,
}

impl EffectiveMemory {
    /// Derives the effective limit from host and (optional) cgroup figures.
    pub fn derive(host: &HostStats, container: Option<&ContainerStats>) -> Self {
        let host_view = EffectiveMemory {
            limit_bytes: host.memory_total_bytes,
            used_bytes: host.memory_total_bytes.saturating_sub(host.memory_available_bytes),
            available_bytes: host.memory_available_bytes,
            source: LimitSource::Host,
        };
        match container.and_then(|c| c.memory_limit_bytes.map(|limit| (limit, c.memory_usage_bytes))) {
            Some((limit, usage)) if limit < host.memory_total_bytes => EffectiveMemory {
                limit_bytes: limit,
                used_bytes: usage,
                // The cgroup cannot give more than the host has free.
                available_bytes: limit.saturating_sub(usage).min(host.memory_available_bytes),
                source: LimitSource::Cgroup,
            },
            _ => host_view,
        }
    }

    /// Used as a percentage of the limit.
    pub fn used_percent(&self) -> f64 {
        percent(self.used_bytes, self.limit_bytes)
    }
}

/// Overall health, from the worst of memory and temperature figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum HealthLevel {
    /// Everything below the moderate threshold.
    #[default]
    Healthy,
    /// Above the moderate threshold.
    Moderate,
    /// Above the warning threshold.
    Warning,
    /// Above the critical threshold: new generations are refused.
    Critical,
}

/// A source of figures, for staleness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Host memory and CPU.
    Host,
    /// cgroup files.
    Container,
    /// The server process.
    Process,
    /// NVML.
    Gpu,
}

impl Source {
    /// The name used on the wire and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Source::Host => "host",
            Source::Container => "container",
            Source::Process => "process",
            Source::Gpu => "gpu",
        }
    }
}

/// One full sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// When it was sampled.
    pub sampled_at: Option<SystemTime>,
    /// Sample number since start (1-based).
    pub sequence: u64,
    /// Host figures.
    pub host: HostStats,
    /// cgroup figures, when a cgroup is found.
    pub container: Option<ContainerStats>,
    /// The effective memory limit.
    pub effective: EffectiveMemory,
    /// The server process.
    pub process: ProcessStats,
    /// GPUs.
    pub gpu: GpuStats,
    /// Health level.
    pub health: HealthLevel,
    /// Sources whose last read failed (figures carried over from the last good read).
    pub stale: Vec<Source>,
    /// How long sampling took.
    pub sample_duration_us: u64,
}

impl Snapshot {
    /// Whether a source's figures are stale.
    pub fn is_stale(&self, source: Source) -> bool {
        self.stale.contains(&source)
    }
}

/// `part` as a percentage of `whole` (0 when `whole` is 0).
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}
