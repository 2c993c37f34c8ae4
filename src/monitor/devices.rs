//! Which libtorch (CUDA) device index is which NVML device. CUDA numbers devices fastest first
//! unless `CUDA_DEVICE_ORDER=PCI_BUS_ID`, and `CUDA_VISIBLE_DEVICES` renumbers them, so the two
//! indices can differ even on a host that sets neither; the PCI address is the same on both sides.
//! NVML writes it with an 8-digit domain (`00000000:17:00.0`), the CUDA runtime with 4
//! (`0000:17:00.0`), so they are compared parsed. [`WithAllocator`] uses the match to put
//! libtorch's allocator figures on the NVML device they belong to.

use super::{sampler::GpuSource, snapshot::GpuStats};

/// libtorch's side of the devices: its CUDA devices' PCI addresses and its allocator's figures.
/// Implemented over the CUDA allocator shim (`cuda_alloc::Probe`); scripted in tests.
pub trait AllocatorProbe: Send {
    /// The PCI bus id of every CUDA device, by libtorch index (empty without CUDA).
    fn cuda_bus_ids(&mut self) -> Vec<String>;
    /// (allocated, reserved) bytes of libtorch's CUDA device `cuda_index`; `None` when the
    /// allocator does not answer (CUDA unused so far, no shim).
    fn allocator_bytes(&mut self, cuda_index: usize) -> Option<(u64, u64)>;
}

/// A GPU source whose devices also carry libtorch's allocator figures, matched by PCI address.
/// A device libtorch does not see, or whose allocator does not answer, keeps them absent.
pub struct WithAllocator<S> {
    inner: S,
    probe: Box<dyn AllocatorProbe>,
    /// CUDA bus ids, read once: the set of devices a process sees does not change.
    cuda: Option<Vec<String>>,
}

impl<S: GpuSource> WithAllocator<S> {
    /// `inner`'s readings plus `probe`'s allocator figures.
    pub fn new(inner: S, probe: Box<dyn AllocatorProbe>) -> Self {
        Self { inner, probe, cuda: None }
    }
}

impl<S: GpuSource> GpuSource for WithAllocator<S> {
    fn read(&mut self) -> Result<GpuStats, String> {
        let mut stats = self.inner.read()?;
        let cuda = self.cuda.get_or_insert_with(|| self.probe.cuda_bus_ids());
        let nvml: Vec<(u32, String)> =
            stats.devices.iter().map(|d| (d.index, d.pci_bus_id.clone())).collect();
        for (cuda_index, nvml_index) in cuda_to_nvml(&nvml, cuda).into_iter().enumerate() {
            let Some(device) = nvml_index.and_then(|i| stats.devices.iter_mut().find(|d| d.index == i))
            else {
                continue;
            };
            let figures = self.probe.allocator_bytes(cuda_index);
            device.torch_allocated_bytes = figures.map(|f| f.0);
            device.torch_reserved_bytes = figures.map(|f| f.1);
        }
        Ok(stats)
    }
}

/// A PCI address: domain, bus, device, function.
pub type PciAddress = (u32, u8, u8, u8);

/// Parses `domain:bus:device.function` (hex, any case, any domain width).
pub fn normalise_bus_id(id: &str) -> Option<PciAddress> {
    let mut parts = id.trim().trim_end_matches('\0').split(':');
    let (domain, bus, rest) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (device, function) = rest.split_once('.')?;
    let hex8 = |s: &str| u8::from_str_radix(s, 16).ok();
    Some((u32::from_str_radix(domain, 16).ok()?, hex8(bus)?, hex8(device)?, hex8(function)?))
}

/// For each CUDA index (position in `cuda`), the NVML index whose bus id is the same device, or
/// `None` when NVML does not list it (or either id does not parse).
pub fn cuda_to_nvml(nvml: &[(u32, String)], cuda: &[String]) -> Vec<Option<u32>> {
    let nvml: Vec<(u32, PciAddress)> =
        nvml.iter().filter_map(|(index, id)| Some((*index, normalise_bus_id(id)?))).collect();
    cuda.iter()
        .map(|id| {
            let address = normalise_bus_id(id)?;
            nvml.iter().find(|(_, a)| *a == address).map(|(index, _)| *index)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::snapshot::GpuDevice;

    struct Nvml(Vec<GpuDevice>);
    impl GpuSource for Nvml {
        fn read(&mut self) -> Result<GpuStats, String> {
            Ok(GpuStats { available: true, devices: self.0.clone(), ..GpuStats::default() })
        }
    }

    /// CUDA sees bus 0xb3 first and 0x17 second; only CUDA device 1 has allocated.
    struct Torch;
    impl AllocatorProbe for Torch {
        fn cuda_bus_ids(&mut self) -> Vec<String> {
            vec!["0000:B3:00.0".into(), "0000:17:00.0".into()]
        }
        fn allocator_bytes(&mut self, cuda_index: usize) -> Option<(u64, u64)> {
            (cuda_index == 1).then_some((5, 8))
        }
    }

    #[test]
    fn allocator_figures_land_on_the_nvml_device_with_the_same_address() {
        let gpu = |index, bus: &str| GpuDevice { index, pci_bus_id: bus.into(), ..GpuDevice::default() };
        let nvml = Nvml(vec![gpu(0, "00000000:17:00.0"), gpu(1, "00000000:B3:00.0"), gpu(2, "")]);
        let devices = WithAllocator::new(nvml, Box::new(Torch)).read().unwrap().devices;
        let figures: Vec<_> =
            devices.iter().map(|d| (d.torch_allocated_bytes, d.torch_reserved_bytes)).collect();
        // NVML 0 is CUDA 1 (allocated); NVML 1 is CUDA 0 (allocator silent); NVML 2 is unmatched.
        assert_eq!(figures, vec![(Some(5), Some(8)), (None, None), (None, None)]);
    }

    #[test]
    fn nvml_and_cuda_spellings_of_one_address_are_equal() {
        assert_eq!(normalise_bus_id("00000000:17:00.0"), Some((0, 0x17, 0, 0)));
        assert_eq!(normalise_bus_id("0000:17:00.0"), normalise_bus_id("00000000:17:00.0"));
        assert_eq!(normalise_bus_id("0001:AF:1f.7\0"), Some((1, 0xaf, 0x1f, 7)));
        for bad in ["", "17:00.0", "0000:17:00", "0000:17:00.0:1", "zz:17:00.0", "0000:117:00.0"] {
            assert_eq!(normalise_bus_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cuda_indices_follow_the_bus_not_the_position() {
        // NVML lists by bus order; CUDA put the faster card (bus 0xb3) first.
        let nvml = vec![(0, "00000000:17:00.0".to_string()), (1, "00000000:B3:00.0".to_string())];
        let cuda = vec!["0000:b3:00.0".to_string(), "0000:17:00.0".to_string()];
        assert_eq!(cuda_to_nvml(&nvml, &cuda), vec![Some(1), Some(0)]);
        // CUDA_VISIBLE_DEVICES=1: one CUDA device, NVML still lists both.
        assert_eq!(cuda_to_nvml(&nvml, &cuda[..1]), vec![Some(1)]);
        // A device NVML does not list (or an unreadable id) maps to nothing.
        assert_eq!(cuda_to_nvml(&nvml, &["0000:65:00.0".to_string(), "?".to_string()]), vec![None, None]);
    }
}
