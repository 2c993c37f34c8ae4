//! The domain snapshot: one sample of host, container, process and GPU resources, plus what the
//! monitor derives from it (effective memory, health level, stale sources).
//!
//! A figure whose sensor could not be read is `None`, never 0: health, alerts, suggestions and
//! `/metrics` skip it, and [`Snapshot::stale_sources`] names its sensor.

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
    /// Load averages over 1, 5 and 15 minutes; `None` when they cannot be read.
    pub load_average: Option<[f64; 3]>,
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
    /// OS threads; `None` when `/proc/self/status` cannot be read.
    pub threads: Option<u32>,
}

/// One GPU as NVML reports it; each `None` is a sensor that did not answer (see [`GpuSensor`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuDevice {
    /// NVML index.
    pub index: u32,
    /// Product name.
    pub name: String,
    /// Stable id.
    pub uuid: String,
    /// Memory size (the three memory figures are read together and absent together).
    pub memory_total_bytes: Option<u64>,
    /// Memory in use (all processes).
    pub memory_used_bytes: Option<u64>,
    /// Memory free.
    pub memory_free_bytes: Option<u64>,
    /// GPU utilisation, 0-100.
    pub utilization_gpu_percent: Option<f64>,
    /// Memory-controller utilisation, 0-100.
    pub utilization_memory_percent: Option<f64>,
    /// Core temperature in °C.
    pub temperature_celsius: Option<f64>,
    /// Power draw in W.
    pub power_watts: Option<f64>,
    /// Enforced power limit in W.
    pub power_limit_watts: Option<f64>,
    /// CUDA compute capability (major, minor).
    pub compute_capability: (u32, u32),
    /// This process's memory on the device as the driver reports it.
    pub process_memory_used_bytes: Option<u64>,
    /// libtorch caching allocator: bytes handed to tensors (`None` without an allocator reader,
    /// which is not a failed sensor).
    pub torch_allocated_bytes: Option<u64>,
    /// PCI address as NVML writes it (empty when not read): how libtorch's index is matched to this one.
    pub pci_bus_id: String,
    /// libtorch caching allocator: bytes held from the driver (as `torch_allocated_bytes`).
    pub torch_reserved_bytes: Option<u64>,
}

impl GpuDevice {
    /// Memory in use as a percentage of the card's memory, when the memory was read.
    pub fn memory_used_percent(&self) -> Option<f64> {
        Some(percent(self.memory_used_bytes?, self.memory_total_bytes?))
    }

    /// The sensors whose figures are absent from this reading.
    pub fn absent_sensors(&self) -> Vec<GpuSensor> {
        use GpuSensor::*;
        let present = |sensor| match sensor {
            Memory => self.memory_used_percent().is_some() && self.memory_free_bytes.is_some(),
            Utilization => {
                self.utilization_gpu_percent.is_some() && self.utilization_memory_percent.is_some()
            }
            Temperature => self.temperature_celsius.is_some(),
            Power => self.power_watts.is_some(),
            PowerLimit => self.power_limit_watts.is_some(),
            ProcessMemory => self.process_memory_used_bytes.is_some(),
        };
        GpuSensor::ALL.into_iter().filter(|s| !present(*s)).collect()
    }
}

/// A GPU figure NVML reads on its own, which can fail while the device's other figures read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GpuSensor {
    /// Total, used and free memory (one NVML call).
    Memory,
    /// GPU and memory-controller utilisation (one NVML call).
    Utilization,
    /// Core temperature.
    Temperature,
    /// Power draw.
    Power,
    /// Enforced power limit.
    PowerLimit,
    /// This process's memory on the device.
    ProcessMemory,
}

impl GpuSensor {
    /// Every sensor, in the order they are reported.
    pub const ALL: [GpuSensor; 6] = [
        GpuSensor::Memory,
        GpuSensor::Utilization,
        GpuSensor::Temperature,
        GpuSensor::Power,
        GpuSensor::PowerLimit,
        GpuSensor::ProcessMemory,
    ];

    /// The name in `stale_sources` after the device (`gpu:0/temperature`).
    pub fn name(self) -> &'static str {
        match self {
            GpuSensor::Memory => "memory",
            GpuSensor::Utilization => "utilization",
            GpuSensor::Temperature => "temperature",
            GpuSensor::Power => "power",
            GpuSensor::PowerLimit => "power_limit",
            GpuSensor::ProcessMemory => "process_memory",
        }
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

    /// What could not be read, by its wire name: the stale sources (`host`, `gpu`, ...), then each
    /// absent sensor (`host/load_average`, `process/threads`, `gpu:0/temperature`, ...).
    pub fn stale_sources(&self) -> Vec<String> {
        let mut names: Vec<String> = self.stale.iter().map(|s| s.name().to_string()).collect();
        if self.host.load_average.is_none() {
            names.push(format!("{}/load_average", Source::Host.name()));
        }
        if self.process.threads.is_none() {
            names.push(format!("{}/threads", Source::Process.name()));
        }
        for d in &self.gpu.devices {
            names.extend(d.absent_sensors().into_iter().map(|s| format!("gpu:{}/{}", d.index, s.name())));
        }
        names
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_sources_name_whole_sources_then_absent_sensors() {
        let mut s = Snapshot { stale: vec![Source::Gpu], ..Snapshot::default() };
        s.host.load_average = None;
        s.process.threads = Some(8);
        s.gpu.devices.push(GpuDevice { index: 2, power_watts: None, ..every_sensor_read() });
        assert_eq!(s.stale_sources(), ["gpu", "host/load_average", "gpu:2/power"]);
        s.host.load_average = Some([0.1; 3]);
        s.stale.clear();
        s.gpu.devices[0] = every_sensor_read();
        assert!(s.stale_sources().is_empty(), "{:?}", s.stale_sources());
    }

    fn every_sensor_read() -> GpuDevice {
        GpuDevice {
            memory_total_bytes: Some(10),
            memory_used_bytes: Some(4),
            memory_free_bytes: Some(6),
            utilization_gpu_percent: Some(1.0),
            utilization_memory_percent: Some(1.0),
            temperature_celsius: Some(30.0),
            power_watts: Some(50.0),
            power_limit_watts: Some(300.0),
            process_memory_used_bytes: Some(0),
            ..GpuDevice::default()
        }
    }
}
