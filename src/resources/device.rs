//! Devices, as asked and as placed: a client asks for a [`RequestedDevice`] (`auto`, `cpu`,
//! `cuda:N`); placement (`verdict`'s resolution) turns it into the [`Device`] a model lives on and a
//! generation runs on, which is never `auto`. Placement is the only conversion from the one to the
//! other; past the wire no device is a string.

use crate::error::Error;

/// Where a model lives and runs: the CPU or CUDA device N (by NVML index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    /// The CPU: weights, working set and runtime all in host memory.
    Cpu,
    /// CUDA device N.
    Cuda(u32),
}

impl Device {
    /// `cpu` or `cuda:N`.
    pub fn name(self) -> String {
        match self {
            Device::Cpu => "cpu".into(),
            Device::Cuda(i) => format!("cuda:{i}"),
        }
    }
}

/// Where a client asks a model to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestedDevice {
    /// The GPU with most free memory that meets the compute capability, else the CPU.
    Auto,
    /// Exactly this device.
    On(Device),
}

impl RequestedDevice {
    /// Parses `auto` (or empty), `cpu`, `cuda:N`; the error names `field`.
    pub fn parse(value: &str, field: &'static str) -> Result<Self, Error> {
        match value.trim() {
            "" | "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::On(Device::Cpu)),
            v => v
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<u32>().ok())
                .map(|n| Self::On(Device::Cuda(n)))
                .ok_or_else(|| {
                    Error::invalid(field, format!("must be \"auto\", \"cpu\" or \"cuda:N\", got {value:?}"))
                }),
        }
    }

    /// `auto`, `cpu` or `cuda:N`.
    pub fn name(self) -> String {
        match self {
            Self::Auto => "auto".into(),
            Self::On(d) => d.name(),
        }
    }
}

impl From<Device> for RequestedDevice {
    fn from(d: Device) -> Self {
        Self::On(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_name_themselves() {
        for (text, want) in [
            ("", RequestedDevice::Auto),
            ("auto", RequestedDevice::Auto),
            (" cpu ", RequestedDevice::On(Device::Cpu)),
            ("cuda:3", RequestedDevice::On(Device::Cuda(3))),
        ] {
            assert_eq!(RequestedDevice::parse(text, "device").unwrap(), want, "{text:?}");
        }
        let err = RequestedDevice::parse("gpu", "device").unwrap_err();
        assert_eq!(err.to_string(), "device: must be \"auto\", \"cpu\" or \"cuda:N\", got \"gpu\"");
        assert_eq!((RequestedDevice::Auto.name(), Device::Cuda(2).name()), ("auto".into(), "cuda:2".into()));
    }
}
