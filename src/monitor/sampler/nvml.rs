//! The GPU figures from NVML, one sensor at a time: a sensor that does not answer (a board without
//! power readings, a driver hiccup) leaves its figure `None` and the device's other figures stand.
//!
//! The reads go through [`Sensors`], which NVML's device implements and tests script.

use nvml_wrapper::{
    enum_wrappers::device::TemperatureSensor, enums::device::UsedGpuMemory, error::NvmlError, Device, Nvml,
};

use super::GpuSource;
use crate::monitor::snapshot::{GpuDevice, GpuSensor, GpuStats};

/// NVML through `nvml-wrapper`.
pub struct NvmlSource {
    nvml: Result<Nvml, String>,
}

impl NvmlSource {
    /// Initialises NVML once; without it, logs one warning and reports the reason in every snapshot.
    pub fn init() -> Self {
        let nvml = Nvml::init().map_err(|e| format!("NVML unavailable: {e}"));
        if let Err(reason) = &nvml {
            tracing::warn!(%reason, "no GPU telemetry; GPU figures will read as unavailable");
        }
        Self { nvml }
    }
}

impl GpuSource for NvmlSource {
    fn read(&mut self) -> Result<GpuStats, String> {
        let nvml = match &self.nvml {
            Ok(nvml) => nvml,
            Err(reason) => return Ok(GpuStats { unavailable_reason: reason.clone(), ..GpuStats::default() }),
        };
        let count = nvml.device_count().map_err(|e| format!("NVML device count: {e}"))?;
        let devices = (0..count)
            .map(|i| nvml.device_by_index(i).map(|d| read_device(i, &d)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("NVML device: {e}"))?;
        Ok(GpuStats {
            available: true,
            unavailable_reason: String::new(),
            driver_version: nvml.sys_driver_version().unwrap_or_default(),
            devices,
        })
    }
}

/// Memory size, in use and free, in bytes.
pub(super) type MemoryFigures = (u64, u64, u64);

/// The separate reads of one device; each can fail on its own.
pub(super) trait Sensors {
    fn name(&self) -> Result<String, NvmlError>;
    fn uuid(&self) -> Result<String, NvmlError>;
    fn pci_bus_id(&self) -> Result<String, NvmlError>;
    fn compute_capability(&self) -> Result<(u32, u32), NvmlError>;
    fn memory(&self) -> Result<MemoryFigures, NvmlError>;
    /// GPU and memory-controller utilisation, percent.
    fn utilization(&self) -> Result<(u32, u32), NvmlError>;
    fn temperature_celsius(&self) -> Result<u32, NvmlError>;
    fn power_milliwatts(&self) -> Result<u32, NvmlError>;
    fn power_limit_milliwatts(&self) -> Result<u32, NvmlError>;
    /// This process's memory on the device; `None` when the driver does not say.
    fn own_process_bytes(&self) -> Result<Option<u64>, NvmlError>;
}

impl Sensors for Device<'_> {
    fn name(&self) -> Result<String, NvmlError> {
        Device::name(self)
    }
    fn uuid(&self) -> Result<String, NvmlError> {
        Device::uuid(self)
    }
    fn pci_bus_id(&self) -> Result<String, NvmlError> {
        self.pci_info().map(|p| p.bus_id)
    }
    fn compute_capability(&self) -> Result<(u32, u32), NvmlError> {
        self.cuda_compute_capability().map(|c| (c.major as u32, c.minor as u32))
    }
    fn memory(&self) -> Result<MemoryFigures, NvmlError> {
        self.memory_info().map(|m| (m.total, m.used, m.free))
    }
    fn utilization(&self) -> Result<(u32, u32), NvmlError> {
        self.utilization_rates().map(|u| (u.gpu, u.memory))
    }
    fn temperature_celsius(&self) -> Result<u32, NvmlError> {
        self.temperature(TemperatureSensor::Gpu)
    }
    fn power_milliwatts(&self) -> Result<u32, NvmlError> {
        self.power_usage()
    }
    fn power_limit_milliwatts(&self) -> Result<u32, NvmlError> {
        self.enforced_power_limit()
    }
    fn own_process_bytes(&self) -> Result<Option<u64>, NvmlError> {
        let pid = std::process::id();
        // No entry for this process is a true 0: it has no CUDA context on this device.
        let mut total = Some(0u64);
        for p in self.running_compute_processes()?.into_iter().filter(|p| p.pid == pid) {
            total = match p.used_gpu_memory {
                UsedGpuMemory::Used(bytes) => total.map(|t| t + bytes),
                UsedGpuMemory::Unavailable => None,
            };
        }
        Ok(total)
    }
}

/// Reads every figure of device `index`; a sensor that fails leaves its figure `None` (the
/// snapshot then names it among its stale sources). libtorch's allocator figures stay `None` here:
/// [`crate::monitor::devices::WithAllocator`] fills them where the allocator is read.
pub(super) fn read_device(index: u32, d: &impl Sensors) -> GpuDevice {
    let memory = answered(index, GpuSensor::Memory, d.memory());
    let utilization = answered(index, GpuSensor::Utilization, d.utilization());
    let watts = |mw: u32| f64::from(mw) / 1000.0;
    GpuDevice {
        index,
        name: d.name().unwrap_or_default(),
        uuid: d.uuid().unwrap_or_default(),
        pci_bus_id: d.pci_bus_id().unwrap_or_default(),
        memory_total_bytes: memory.map(|m| m.0),
        memory_used_bytes: memory.map(|m| m.1),
        memory_free_bytes: memory.map(|m| m.2),
        utilization_gpu_percent: utilization.map(|u| f64::from(u.0)),
        utilization_memory_percent: utilization.map(|u| f64::from(u.1)),
        temperature_celsius: answered(index, GpuSensor::Temperature, d.temperature_celsius().map(f64::from)),
        power_watts: answered(index, GpuSensor::Power, d.power_milliwatts().map(watts)),
        power_limit_watts: answered(index, GpuSensor::PowerLimit, d.power_limit_milliwatts().map(watts)),
        compute_capability: d.compute_capability().unwrap_or((0, 0)),
        process_memory_used_bytes: answered(index, GpuSensor::ProcessMemory, d.own_process_bytes()).flatten(),
        torch_allocated_bytes: None,
        torch_reserved_bytes: None,
    }
}

/// The figure of a read that answered; a failed read is logged and gives `None`.
fn answered<T>(index: u32, sensor: GpuSensor, read: Result<T, NvmlError>) -> Option<T> {
    let log = |e: NvmlError| tracing::debug!(gpu = index, sensor = sensor.name(), error = %e, "not read");
    read.map_err(log).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::snapshot::Snapshot;

    /// A card that answers every read, except those listed in `failing`.
    struct Scripted {
        failing: Vec<GpuSensor>,
    }

    impl Scripted {
        fn answer<T>(&self, sensor: GpuSensor, value: T) -> Result<T, NvmlError> {
            if self.failing.contains(&sensor) {
                Err(NvmlError::Unknown)
            } else {
                Ok(value)
            }
        }
    }

    impl Sensors for Scripted {
        fn name(&self) -> Result<String, NvmlError> {
            Ok("Scripted A100".into())
        }
        fn uuid(&self) -> Result<String, NvmlError> {
            Ok("GPU-scripted".into())
        }
        fn pci_bus_id(&self) -> Result<String, NvmlError> {
            Ok("00000000:17:00.0".into())
        }
        fn compute_capability(&self) -> Result<(u32, u32), NvmlError> {
            Ok((8, 0))
        }
        fn memory(&self) -> Result<MemoryFigures, NvmlError> {
            self.answer(GpuSensor::Memory, (100, 40, 60))
        }
        fn utilization(&self) -> Result<(u32, u32), NvmlError> {
            self.answer(GpuSensor::Utilization, (30, 10))
        }
        fn temperature_celsius(&self) -> Result<u32, NvmlError> {
            self.answer(GpuSensor::Temperature, 70)
        }
        fn power_milliwatts(&self) -> Result<u32, NvmlError> {
            self.answer(GpuSensor::Power, 250_000)
        }
        fn power_limit_milliwatts(&self) -> Result<u32, NvmlError> {
            self.answer(GpuSensor::PowerLimit, 400_000)
        }
        fn own_process_bytes(&self) -> Result<Option<u64>, NvmlError> {
            self.answer(GpuSensor::ProcessMemory, Some(7))
        }
    }

    /// A snapshot whose host and process figures all read, holding `device`.
    fn snapshot_of(device: GpuDevice) -> Snapshot {
        let mut s = Snapshot::default();
        (s.host.load_average, s.process.threads) = (Some([1.0; 3]), Some(1));
        s.gpu.devices.push(device);
        s
    }

    #[test]
    fn a_failing_temperature_read_is_absent_and_named_stale() {
        let d = read_device(1, &Scripted { failing: vec![GpuSensor::Temperature] });
        assert_eq!(d.temperature_celsius, None);
        // The other sensors still read.
        assert_eq!((d.memory_used_bytes, d.memory_used_percent()), (Some(40), Some(40.0)));
        assert_eq!((d.power_watts, d.power_limit_watts), (Some(250.0), Some(400.0)));
        assert_eq!(d.utilization_gpu_percent, Some(30.0));
        assert_eq!(snapshot_of(d).stale_sources(), vec!["gpu:1/temperature".to_string()]);
    }

    #[test]
    fn every_sensor_that_fails_is_named_and_none_reads_as_zero() {
        let d = read_device(0, &Scripted { failing: GpuSensor::ALL.to_vec() });
        assert_eq!(
            (d.memory_total_bytes, d.memory_free_bytes, d.utilization_memory_percent, d.power_watts),
            (None, None, None, None)
        );
        assert_eq!(d.process_memory_used_bytes, None);
        let names = snapshot_of(d).stale_sources();
        let want = ["memory", "utilization", "temperature", "power", "power_limit", "process_memory"];
        assert_eq!(names, want.map(|s| format!("gpu:0/{s}")));
    }

    #[test]
    fn a_card_that_answers_everything_has_no_stale_sensor_and_no_allocator_figures() {
        let d = read_device(0, &Scripted { failing: vec![] });
        assert_eq!((d.temperature_celsius, d.process_memory_used_bytes), (Some(70.0), Some(7)));
        // Without an allocator reader the allocator figures are absent, and that is not a failed sensor.
        assert_eq!((d.torch_allocated_bytes, d.torch_reserved_bytes), (None, None));
        assert!(snapshot_of(d).stale_sources().is_empty());
    }
}
