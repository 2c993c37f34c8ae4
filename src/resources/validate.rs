//! The fit verdict: does a model, for a batch and duration, fit on a device now? A pure function of
//! the requirements, the latest snapshot, what leases reserve and the safety margin.

use crate::{error::Error, monitor::snapshot::Snapshot};

use super::requirements::Requirements;

/// Where a model should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// The GPU with most free memory that meets the compute capability, else the CPU.
    Auto,
    /// The CPU (the model's GPU figure is then needed in host memory).
    Cpu,
    /// CUDA device N.
    Cuda(u32),
}

impl Device {
    /// Parses `auto` (or empty), `cpu`, `cuda:N`; the error names `field`.
    pub fn parse(value: &str, field: &'static str) -> Result<Device, Error> {
        match value.trim() {
            "" | "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            v => v.strip_prefix("cuda:").and_then(|n| n.parse::<u32>().ok()).map(Device::Cuda).ok_or_else(
                || Error::invalid(field, format!("must be \"auto\", \"cpu\" or \"cuda:N\", got {value:?}")),
            ),
        }
    }

    /// `cpu` or `cuda:N` (`auto` before resolution).
    pub fn name(self) -> String {
        match self {
            Device::Auto => "auto".into(),
            Device::Cpu => "cpu".into(),
            Device::Cuda(i) => format!("cuda:{i}"),
        }
    }
}

/// One resource's line of a verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// `host_memory`, `gpu_memory:N`, `compute_capability:N`.
    pub resource: String,
    /// Whether it fits.
    pub ok: bool,
    /// What the model needs.
    pub required: f64,
    /// What is free now.
    pub available: f64,
    /// What leases hold of it.
    pub reserved: f64,
    /// available × (1 − margin) − reserved − required.
    pub headroom: f64,
    /// `bytes` or `capability`.
    pub unit: &'static str,
    /// A sentence with the numbers.
    pub message: String,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Whether every check passed.
    pub fits: bool,
    /// The device the checks are for.
    pub device: Device,
    /// One line per resource.
    pub checks: Vec<Check>,
}

impl Verdict {
    /// A one-line summary: what failed, with required and available numbers.
    pub fn summary(&self, model: &str) -> String {
        let failed: Vec<&str> = self.checks.iter().filter(|c| !c.ok).map(|c| c.message.as_str()).collect();
        if failed.is_empty() {
            format!("{model} fits on {}", self.device.name())
        } else {
            format!("{model} does not fit on {}: {}", self.device.name(), failed.join("; "))
        }
    }
}

/// What the verdict is computed from.
#[derive(Debug, Clone)]
pub struct FitInput<'a> {
    /// The model's requirements.
    pub requirements: &'a Requirements,
    /// Batch size.
    pub batch: u32,
    /// Requested device.
    pub device: Device,
    /// The latest sample.
    pub snapshot: &'a Snapshot,
    /// Host bytes held by leases.
    pub reserved_host: u64,
    /// GPU bytes held by leases, per index.
    pub reserved_gpu: &'a [(u32, u64)],
    /// Safety margin, 0..1.
    pub margin: f64,
}

/// Decides where the model runs and whether it fits there.
pub fn verdict(input: &FitInput<'_>) -> Result<Verdict, Error> {
    let device = resolve(input)?;
    let mut checks = Vec::new();
    let on_gpu = matches!(device, Device::Cuda(_));
    let host_needed = input.requirements.host_bytes_for(input.batch, on_gpu);
    let host_free = input.snapshot.effective.available_bytes;
    checks.push(memory_check(
        "host_memory".into(),
        host_needed,
        host_free,
        input.reserved_host,
        input.margin,
    ));
    if let Device::Cuda(index) = device {
        let gpu =
            input.snapshot.gpu.devices.iter().find(|d| d.index == index).expect("resolved device exists");
        let reserved = reserved_on(input.reserved_gpu, index);
        let needed = input.requirements.gpu_bytes_for(input.batch);
        checks.push(memory_check(
            format!("gpu_memory:{index}"),
            needed,
            // Memory that was not read: nothing counts as free.
            gpu.memory_free_bytes.unwrap_or(0),
            reserved,
            input.margin,
        ));
        let have = capability(gpu.compute_capability);
        let need = input.requirements.min_compute_capability;
        checks.push(Check {
            resource: format!("compute_capability:{index}"),
            ok: have >= need,
            required: need,
            available: have,
            reserved: 0.0,
            headroom: have - need,
            unit: "capability",
            message: format!("cuda:{index} has compute capability {have:.1}, the model needs {need:.1}"),
        });
    }
    Ok(Verdict { fits: checks.iter().all(|c| c.ok), device, checks })
}

fn reserved_on(reserved: &[(u32, u64)], index: u32) -> u64 {
    reserved.iter().filter(|(i, _)| *i == index).map(|(_, b)| *b).sum()
}

fn capability((major, minor): (u32, u32)) -> f64 {
    f64::from(major) + f64::from(minor) / 10.0
}

/// Usable bytes of a resource: free × (1 − margin) − reserved.
pub fn usable(free: u64, reserved: u64, margin: f64) -> f64 {
    free as f64 * (1.0 - margin) - reserved as f64
}

fn memory_check(resource: String, required: u64, free: u64, reserved: u64, margin: f64) -> Check {
    let headroom = usable(free, reserved, margin) - required as f64;
    let gb = |b: f64| b / 1e9;
    Check {
        ok: headroom >= 0.0,
        message: format!(
            "{resource}: requires {:.2} GB, {:.2} GB free, {:.2} GB reserved by leases, {:.0} % safety margin, headroom {:.2} GB",
            gb(required as f64),
            gb(free as f64),
            gb(reserved as f64),
            margin * 100.0,
            gb(headroom)
        ),
        resource,
        required: required as f64,
        available: free as f64,
        reserved: reserved as f64,
        headroom,
        unit: "bytes",
    }
}

/// `auto` → the GPU with most usable memory meeting the compute capability, else the CPU;
/// `cuda:N` must exist.
fn resolve(input: &FitInput<'_>) -> Result<Device, Error> {
    let gpus = &input.snapshot.gpu.devices;
    match input.device {
        Device::Cpu => Ok(Device::Cpu),
        Device::Cuda(i) if gpus.iter().any(|d| d.index == i) => Ok(Device::Cuda(i)),
        Device::Cuda(i) => Err(Error::invalid(
            "device",
            format!("cuda:{i} does not exist: this machine has {} GPU(s) visible to NVML", gpus.len()),
        )),
        Device::Auto => Ok(gpus
            .iter()
            .filter(|d| capability(d.compute_capability) >= input.requirements.min_compute_capability)
            .max_by(|a, b| {
                let free = |d: &crate::monitor::snapshot::GpuDevice| {
                    usable(
                        d.memory_free_bytes.unwrap_or(0),
                        reserved_on(input.reserved_gpu, d.index),
                        input.margin,
                    )
                };
                free(a).total_cmp(&free(b))
            })
            .map_or(Device::Cpu, |d| Device::Cuda(d.index))),
    }
}

/// Largest batch any request may ask for, and the cap of batch advice.
pub const MAX_BATCH: u32 = 64;

/// Batch advice: the largest batch whose working set fits in memory × (1 − margin) − weights.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchAdvice {
    /// The batch (0 when not even one sample fits).
    pub batch: u32,
    /// The memory planned for.
    pub memory_bytes: u64,
    /// memory × (1 − margin) − weights (− CUDA context on a GPU).
    pub usable_bytes: u64,
    /// Why this number.
    pub reason: String,
}

/// Computes [`BatchAdvice`] for `memory_bytes` on a GPU (`on_gpu`) or the CPU, capped at `max_batch`.
pub fn optimal_batch(
    r: &Requirements,
    memory_bytes: u64,
    margin: f64,
    on_gpu: bool,
    max_batch: u32,
) -> BatchAdvice {
    let fixed = r.weights_bytes + if on_gpu { r.cuda_context_bytes } else { 0 };
    let usable = (memory_bytes as f64 * (1.0 - margin) - fixed as f64).max(0.0) as u64;
    let fits = usable.checked_div(r.per_sample_bytes).unwrap_or(u64::from(max_batch));
    let batch = fits.min(u64::from(max_batch)) as u32;
    let gb = |b: u64| b as f64 / 1e9;
    let reason = format!(
        "{:.2} GB × (1 − {:.0} % margin) − {:.2} GB fixed = {:.2} GB usable; {:.3} GB per sample (CFG included) → {} (cap {})",
        gb(memory_bytes),
        margin * 100.0,
        gb(fixed),
        gb(usable),
        gb(r.per_sample_bytes),
        fits,
        max_batch
    );
    BatchAdvice { batch, memory_bytes, usable_bytes: usable, reason }
}
