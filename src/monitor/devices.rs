//! Which libtorch (CUDA) device index is which NVML device. CUDA numbers devices fastest first
//! unless `CUDA_DEVICE_ORDER=PCI_BUS_ID`, and `CUDA_VISIBLE_DEVICES` renumbers them, so the two
//! indices can differ even on a host that sets neither; the PCI address is the same on both sides.
//! NVML writes it with an 8-digit domain (`00000000:17:00.0`), the CUDA runtime with 4
//! (`0000:17:00.0`), so they are compared parsed.

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
