//! The device inventory: every GPU NVML lists, matched to the libtorch (CUDA) device that is the same
//! card by PCI address, narrowed to the GPUs `--devices` selects, plus the CPU. It is built once at
//! start from the sampler's first reading and libtorch's CUDA devices, and it decides where work can
//! go: the fit verdict resolves `auto` among [`Inventory::placeable`] GPUs, and the worker pool
//! starts one worker set per [`Inventory::worker_devices`] entry.
//!
//! Maestro names a GPU `cuda:N` by its **NVML index** N everywhere on the wire (the number
//! `nvidia-smi` shows, the one snapshots and leases use); the worker pinned to it computes on the
//! libtorch ordinal with the same PCI address, which can differ (CUDA orders devices fastest first
//! unless `CUDA_DEVICE_ORDER=PCI_BUS_ID`, and `CUDA_VISIBLE_DEVICES` renumbers them).

use crate::{
    monitor::{devices::cuda_to_nvml, snapshot::GpuStats},
    resources::device::Device,
};

/// One GPU as the inventory knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpu {
    /// NVML index: Maestro's `cuda:N`.
    pub index: u32,
    /// NVML UUID (`GPU-…`).
    pub uuid: String,
    /// Product name.
    pub name: String,
    /// Total memory, when NVML read it.
    pub memory_total_bytes: Option<u64>,
    /// CUDA compute capability.
    pub compute_capability: (u32, u32),
    /// PCI address as NVML writes it.
    pub pci_bus_id: String,
    /// The libtorch device index of the same card; `None` when libtorch cannot use it.
    pub cuda_ordinal: Option<usize>,
    /// Whether `--devices` selects it (every GPU when the option is empty).
    pub selected: bool,
}

impl Gpu {
    /// Whether Maestro places work on it: selected, and libtorch can compute on it.
    pub fn placeable(&self) -> bool {
        self.selected && self.cuda_ordinal.is_some()
    }
}

/// A device workers are pinned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerDevice {
    /// The device as the resource manager names it (`cpu`, `cuda:N` by NVML index).
    pub device: Device,
    /// The libtorch ordinal of a GPU; `None` for the CPU.
    pub cuda_ordinal: Option<usize>,
}

/// How a worker pinned to a GPU computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Executor {
    /// On that GPU, through its libtorch ordinal (production).
    #[default]
    Native,
    /// On the CPU, while its models, leases and errors stay accounted on the GPU: the seam that lets
    /// tests run placement, leases, cleanup and out-of-memory handling on a host without one.
    CpuStandIn,
}

/// What libtorch offers the workers: the CUDA devices it can compute on and how a GPU worker computes.
#[derive(Debug, Clone, Default)]
pub struct Compute {
    /// The PCI address of each CUDA device, by libtorch ordinal.
    pub cuda_bus_ids: Vec<String>,
    /// How a worker pinned to one of them computes.
    pub executor: Executor,
}

impl Compute {
    /// The tests' seam: libtorch "sees" the GPUs at `bus_ids` and GPU workers compute on the CPU.
    pub fn cpu_stand_in(bus_ids: Vec<String>) -> Self {
        Self { cuda_bus_ids: bus_ids, executor: Executor::CpuStandIn }
    }
}

/// Why the inventory cannot be built from the configuration.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InventoryError {
    /// `--devices` names something NVML does not list.
    #[error(
        "--devices names {value:?}, which is neither the index nor the UUID of a GPU NVML lists ({known})"
    )]
    Unknown {
        /// The value as given.
        value: String,
        /// What NVML lists (`0 GPU-…, 1 GPU-…`, or why none).
        known: String,
    },
    /// `--devices` selects a GPU libtorch cannot use.
    #[error("--devices selects cuda:{index} ({uuid}), but libtorch cannot use it (CUDA_VISIBLE_DEVICES, or a build without CUDA)")]
    NotUsable {
        /// NVML index.
        index: u32,
        /// Its UUID.
        uuid: String,
    },
}

/// Every device Maestro knows, GPUs by NVML index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    /// The GPUs NVML lists, in NVML order.
    pub gpus: Vec<Gpu>,
}

impl Inventory {
    /// Matches NVML's GPUs (`nvml`) to libtorch's CUDA devices (`cuda_bus_ids`, by libtorch ordinal)
    /// and applies `--devices` (`selection`: NVML indices or UUIDs; empty = all). A selected GPU libtorch
    /// cannot use is an error; an unselected or merely unmatched one is listed and not placed on.
    pub fn discover(
        nvml: &GpuStats,
        cuda_bus_ids: &[String],
        selection: &[String],
    ) -> Result<Self, InventoryError> {
        let ids: Vec<(u32, String)> = nvml.devices.iter().map(|d| (d.index, d.pci_bus_id.clone())).collect();
        let ordinals = cuda_to_nvml(&ids, cuda_bus_ids);
        let ordinal_of = |index: u32| ordinals.iter().position(|n| *n == Some(index));
        let chosen = select(nvml, selection)?;
        let gpus: Vec<Gpu> = nvml
            .devices
            .iter()
            .map(|d| Gpu {
                index: d.index,
                uuid: d.uuid.clone(),
                name: d.name.clone(),
                memory_total_bytes: d.memory_total_bytes,
                compute_capability: d.compute_capability,
                pci_bus_id: d.pci_bus_id.clone(),
                cuda_ordinal: ordinal_of(d.index),
                selected: chosen.as_ref().is_none_or(|c| c.contains(&d.index)),
            })
            .collect();
        if let Some(g) = gpus.iter().find(|g| !selection.is_empty() && g.selected && !g.placeable()) {
            return Err(InventoryError::NotUsable { index: g.index, uuid: g.uuid.clone() });
        }
        Ok(Self { gpus })
    }

    /// NVML indices of the GPUs Maestro places work on.
    pub fn placeable(&self) -> Vec<u32> {
        self.gpus.iter().filter(|g| g.placeable()).map(|g| g.index).collect()
    }

    /// The devices worker sets are pinned to: each placeable GPU, then the CPU (a model `LoadModel`
    /// puts on `cpu`, or `auto` places there when no GPU meets its compute capability).
    pub fn worker_devices(&self) -> Vec<WorkerDevice> {
        let gpus = self
            .gpus
            .iter()
            .filter(|g| g.placeable())
            .map(|g| WorkerDevice { device: Device::Cuda(g.index), cuda_ordinal: g.cuda_ordinal });
        gpus.chain(std::iter::once(WorkerDevice { device: Device::Cpu, cuda_ordinal: None })).collect()
    }

    /// One line per GPU for the start-up log.
    pub fn describe(&self) -> Vec<String> {
        self.gpus
            .iter()
            .map(|g| {
                let role = match (g.selected, g.cuda_ordinal) {
                    (true, Some(n)) => format!("placed on (libtorch cuda:{n})"),
                    (false, _) => "not selected by --devices (sampled only)".into(),
                    (true, None) => "not usable by libtorch (sampled only)".into(),
                };
                format!("cuda:{} {} {} {}: {role}", g.index, g.uuid, g.name, g.pci_bus_id)
            })
            .collect()
    }
}

/// The NVML indices `selection` names; `None` when it is empty (every GPU).
fn select(nvml: &GpuStats, selection: &[String]) -> Result<Option<Vec<u32>>, InventoryError> {
    if selection.is_empty() {
        return Ok(None);
    }
    let known = || {
        if nvml.devices.is_empty() {
            format!("none: {}", if nvml.available { "NVML lists no GPU" } else { &nvml.unavailable_reason })
        } else {
            nvml.devices.iter().map(|d| format!("{} {}", d.index, d.uuid)).collect::<Vec<_>>().join(", ")
        }
    };
    selection
        .iter()
        .map(|value| {
            let v = value.trim();
            nvml.devices
                .iter()
                .find(|d| d.uuid == v || v.parse::<u32>().is_ok_and(|i| i == d.index))
                .map(|d| d.index)
                .ok_or_else(|| InventoryError::Unknown { value: value.clone(), known: known() })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::snapshot::GpuDevice;

    fn nvml() -> GpuStats {
        let card = |index: u32, bus: &str| GpuDevice {
            index,
            uuid: format!("GPU-{index}"),
            pci_bus_id: bus.into(),
            compute_capability: (8, 0),
            ..GpuDevice::default()
        };
        GpuStats {
            available: true,
            devices: vec![card(0, "00000000:17:00.0"), card(1, "00000000:65:00.0")],
            ..GpuStats::default()
        }
    }

    #[test]
    fn libtorch_ordinals_follow_the_pci_address_not_the_order() {
        // CUDA lists the second NVML card first (fastest first).
        let inv = Inventory::discover(&nvml(), &["0000:65:00.0".into(), "0000:17:00.0".into()], &[]).unwrap();
        let ordinals: Vec<_> = inv.gpus.iter().map(|g| g.cuda_ordinal).collect();
        assert_eq!(ordinals, [Some(1), Some(0)]);
        let devices = inv.worker_devices();
        assert_eq!(
            devices,
            [
                WorkerDevice { device: Device::Cuda(0), cuda_ordinal: Some(1) },
                WorkerDevice { device: Device::Cuda(1), cuda_ordinal: Some(0) },
                WorkerDevice { device: Device::Cpu, cuda_ordinal: None },
            ]
        );
    }

    #[test]
    fn devices_selects_by_index_or_uuid_and_the_rest_stay_listed() {
        let bus = ["0000:17:00.0".to_string(), "0000:65:00.0".to_string()];
        let inv = Inventory::discover(&nvml(), &bus, &["GPU-1".into()]).unwrap();
        assert_eq!((inv.gpus.len(), inv.placeable()), (2, vec![1]));
        let inv = Inventory::discover(&nvml(), &bus, &["0".into()]).unwrap();
        assert_eq!(inv.placeable(), [0]);
        let err = Inventory::discover(&nvml(), &bus, &["7".into()]).unwrap_err();
        assert_eq!(err.to_string(), "--devices names \"7\", which is neither the index nor the UUID of a GPU NVML lists (0 GPU-0, 1 GPU-1)");
    }

    #[test]
    fn a_gpu_libtorch_cannot_use_is_sampled_only_and_refused_when_selected() {
        let bus = ["0000:17:00.0".to_string()];
        let inv = Inventory::discover(&nvml(), &bus, &[]).unwrap();
        assert_eq!(inv.placeable(), [0]);
        assert!(inv.describe()[1].contains("not usable by libtorch"), "{:?}", inv.describe());
        let err = Inventory::discover(&nvml(), &bus, &["1".into()]).unwrap_err();
        assert_eq!(err, InventoryError::NotUsable { index: 1, uuid: "GPU-1".into() });
    }

    #[test]
    fn without_nvml_only_the_cpu_takes_work() {
        let none = GpuStats { unavailable_reason: "no driver".into(), ..GpuStats::default() };
        let inv = Inventory::discover(&none, &[], &[]).unwrap();
        assert_eq!(inv.worker_devices(), [WorkerDevice { device: Device::Cpu, cuda_ordinal: None }]);
        let err = Inventory::discover(&none, &[], &["0".into()]).unwrap_err();
        assert!(err.to_string().ends_with("(none: no driver)"), "{err}");
    }
}
