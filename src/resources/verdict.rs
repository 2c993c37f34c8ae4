//! The fit verdict: does a model's [`Need`] fit on a device now? [`fit`] is the one answer: free
//! memory as measured, minus what leases reserve, minus the safety margin, against the need's host
//! and GPU totals (a loaded model's weights are already out of the measured free memory, so the need
//! does not count them again). [`verdict`] resolves the device and asks [`Requirements::need`] and
//! [`fit`]; batch advice ([`optimal_batch`]) searches with [`verdict`] itself, so an advised batch
//! always validates. Pure functions of the requirements, the latest snapshot, the leases and the
//! cache.

use crate::{
    error::Error,
    monitor::snapshot::{GpuDevice, Snapshot},
};

use super::{
    cache::CachedModel,
    device::{Device, RequestedDevice},
    requirements::{describe, DType, Need, Requirements, Resident, Term},
};

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
    /// A sentence with the numbers: required (and its parts), free, reserved, margin, headroom.
    pub message: String,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Whether every check passed.
    pub fits: bool,
    /// The device the checks are for.
    pub device: Device,
    /// What the model needs there, by part.
    pub need: Need,
    /// One line per resource.
    pub checks: Vec<Check>,
    /// For `auto` that fits nowhere: the other GPUs it could have gone to, their memory and compute
    /// lines (none fits either), so a refusal names every device's numbers.
    pub elsewhere: Vec<Check>,
}

impl Verdict {
    /// A one-line summary: what failed, with required and available numbers.
    pub fn summary(&self, model: &str) -> String {
        let failed = |checks: &[Check]| -> Vec<String> {
            checks.iter().filter(|c| !c.ok).map(|c| c.message.clone()).collect()
        };
        let here = failed(&self.checks);
        if here.is_empty() {
            return format!("{model} fits on {}", self.device.name());
        }
        let mut text = format!("{model} does not fit on {}: {}", self.device.name(), here.join("; "));
        let elsewhere = failed(&self.elsewhere);
        if !elsewhere.is_empty() {
            text.push_str(&format!("; nor on any other GPU: {}", elsewhere.join("; ")));
        }
        text
    }
}

/// What the devices have room for now: the latest sample, what leases hold, the margin kept back.
#[derive(Debug, Clone, Copy)]
pub struct Room<'a> {
    /// The latest sample: host available memory and each GPU's free memory, as measured.
    pub snapshot: &'a Snapshot,
    /// Host bytes held by leases.
    pub reserved_host: u64,
    /// GPU bytes held by leases, per index.
    pub reserved_gpu: &'a [(u32, u64)],
    /// Safety margin, 0..1.
    pub margin: f64,
    /// NVML indices of the GPUs work may be placed on (`--devices`, and libtorch's reach): `auto`
    /// chooses among them, and `cuda:N` must be one.
    pub placeable: &'a [u32],
}

/// What a verdict is computed from.
#[derive(Debug, Clone, Copy)]
pub struct FitInput<'a> {
    /// The model id (to find it among the loaded models).
    pub model: &'a str,
    /// The model's requirements.
    pub requirements: &'a Requirements,
    /// Batch size.
    pub batch: u32,
    /// Requested device.
    pub device: RequestedDevice,
    /// Free memory, leases and margin.
    pub room: Room<'a>,
    /// The loaded models.
    pub cached: &'a [CachedModel],
    /// Seconds of audio prompt encoded first (0 for none).
    pub audio_prompt_s: f64,
    /// Host bytes of bringing the request's audio to the model (0 for none).
    pub conversion_bytes: u64,
}

/// What of `model` (in `dtype`) is already in memory on `device`, per the cache.
pub fn resident(model: &str, dtype: DType, device: Device, cached: &[CachedModel]) -> Resident {
    let loaded = cached.iter().any(|c| c.model == model && c.device == device && c.dtype == dtype);
    let context = matches!(device, Device::Cuda(_)) && cached.iter().any(|c| c.device == device);
    Resident { weights: loaded, runtime: loaded, cuda_context: context }
}

/// Resolves the device, works out the model's need there and whether it fits now. An `auto` that fits
/// nowhere carries the other candidate GPUs' lines in [`Verdict::elsewhere`].
pub fn verdict(input: &FitInput<'_>) -> Result<Verdict, Error> {
    let device = resolve(input)?;
    let mut v = verdict_on(input, device)?;
    if !v.fits && input.device == RequestedDevice::Auto {
        for other in candidates(input).into_iter().filter(|&d| d != device) {
            let gpu_lines =
                verdict_on(input, other)?.checks.into_iter().filter(|c| c.resource != "host_memory");
            v.elsewhere.extend(gpu_lines);
        }
    }
    Ok(v)
}

/// The need of the input's model on `device` (resolved) and whether it fits there.
fn verdict_on(input: &FitInput<'_>, device: Device) -> Result<Verdict, Error> {
    let resident = resident(input.model, input.requirements.dtype, device, input.cached);
    let mut need = input.requirements.need(device, input.batch, resident);
    need.audio_in_bytes = input.requirements.audio_in.bytes_for_seconds(input.audio_prompt_s);
    need.conversion_bytes = input.conversion_bytes;
    fit(need, &input.room)
}

/// Whether `need` fits on its device now: host memory (always), and on a GPU its memory and compute
/// capability. Each memory check compares the need's total there with free × (1 − margin) − leases.
pub fn fit(need: Need, room: &Room<'_>) -> Result<Verdict, Error> {
    let device = need.device;
    let host_free = room.snapshot.effective.available_bytes;
    let host = (need.host_terms(), need.host_bytes());
    let mut checks =
        vec![memory_check("host_memory".into(), host, host_free, room.reserved_host, room.margin)];
    if let Device::Cuda(index) = device {
        let gpu = gpu(room, index)?;
        let reserved = reserved_on(room.reserved_gpu, index);
        let resource = format!("gpu_memory:{index}");
        let needed = (need.gpu_terms(), need.gpu_bytes());
        // Memory that was not read: nothing counts as free.
        let free = gpu.memory_free_bytes.unwrap_or(0);
        checks.push(memory_check(resource, needed, free, reserved, room.margin));
        let have = capability(gpu.compute_capability);
        let required = need.min_compute_capability;
        checks.push(Check {
            resource: format!("compute_capability:{index}"),
            ok: have >= required,
            required,
            available: have,
            reserved: 0.0,
            headroom: have - required,
            unit: "capability",
            message: format!("cuda:{index} has compute capability {have:.1}, the model needs {required:.1}"),
        });
    }
    Ok(Verdict { fits: checks.iter().all(|c| c.ok), device, need, checks, elsewhere: Vec::new() })
}

/// GPU `index` as sampled; one NVML does not list, or one work is not placed on, is INVALID_ARGUMENT.
fn gpu<'a>(room: &Room<'a>, index: u32) -> Result<&'a GpuDevice, Error> {
    let gpus = &room.snapshot.gpu.devices;
    let found = gpus.iter().find(|d| d.index == index).ok_or_else(|| {
        Error::invalid(
            "device",
            format!("cuda:{index} does not exist: this machine has {} GPU(s) visible to NVML", gpus.len()),
        )
    })?;
    if !room.placeable.contains(&index) {
        let placed: Vec<String> = room.placeable.iter().map(|i| format!("cuda:{i}")).collect();
        let placed = if placed.is_empty() { "none".to_owned() } else { placed.join(", ") };
        return Err(Error::invalid(
            "device",
            format!("cuda:{index} is not a GPU this server places work on (it places on: {placed}; see --devices)"),
        ));
    }
    Ok(found)
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

/// A memory line: `required` bytes (the sum of `terms` not already in memory) against `free`.
fn memory_check(
    resource: String,
    (terms, required): (Vec<Term>, u64),
    free: u64,
    reserved: u64,
    margin: f64,
) -> Check {
    let headroom = usable(free, reserved, margin) - required as f64;
    let gb = |b: f64| b / 1e9;
    Check {
        ok: headroom >= 0.0,
        message: format!(
            "{resource}: requires {:.2} GB ({}), {:.2} GB free, {:.2} GB reserved by leases, {:.0} % safety margin, headroom {:.2} GB",
            gb(required as f64),
            describe(&terms),
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

/// `auto` → among the placeable GPUs meeting the compute capability, the one with most memory left
/// once the model's need there is met (usable memory less what it still needs: the same need on every
/// card, but for a CUDA context one of them may already have), else the CPU. The ranking does not
/// depend on the batch, so a batch search stays on one device. `cuda:N` must exist and be placeable.
fn resolve(input: &FitInput<'_>) -> Result<Device, Error> {
    match input.device {
        RequestedDevice::On(Device::Cpu) => Ok(Device::Cpu),
        RequestedDevice::On(Device::Cuda(i)) if input.requirements.dtype.is_quantised() => {
            let dtype = input.requirements.dtype;
            Err(Error::invalid(
                "device",
                format!("cuda:{i} cannot run {dtype} weights: they run on the CPU only (use f16 on a GPU)"),
            ))
        }
        RequestedDevice::On(Device::Cuda(i)) => gpu(&input.room, i).map(|_| Device::Cuda(i)),
        RequestedDevice::Auto => {
            let room = &input.room;
            let left = |device: Device| -> f64 {
                let Device::Cuda(i) = device else { return f64::MIN };
                let free = gpu(room, i).ok().and_then(|d| d.memory_free_bytes).unwrap_or(0);
                let resident = resident(input.model, input.requirements.dtype, device, input.cached);
                let need = input.requirements.need(device, 1, resident).gpu_bytes();
                usable(free, reserved_on(room.reserved_gpu, i), room.margin) - need as f64
            };
            Ok(candidates(input)
                .into_iter()
                .max_by(|a, b| left(*a).total_cmp(&left(*b)))
                .unwrap_or(Device::Cpu))
        }
    }
}

/// The GPUs `auto` chooses among: placeable, sampled, meeting the model's compute capability; none
/// for int8 or int4 weights, whose kernels are the CPU's.
fn candidates(input: &FitInput<'_>) -> Vec<Device> {
    if input.requirements.dtype.is_quantised() {
        return Vec::new();
    }
    let required = input.requirements.min_compute_capability;
    input
        .room
        .snapshot
        .gpu
        .devices
        .iter()
        .filter(|d| input.room.placeable.contains(&d.index))
        .filter(|d| capability(d.compute_capability) >= required)
        .map(|d| Device::Cuda(d.index))
        .collect()
}

/// Largest batch any request may ask for, and the cap of batch advice.
pub const MAX_BATCH: u32 = 64;

/// Batch advice: the largest batch whose verdict fits.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchAdvice {
    /// The batch (0 when not even one sample fits).
    pub batch: u32,
    /// The memory planned for: the device's free memory now, or the amount asked about.
    pub memory_bytes: u64,
    /// memory × (1 − margin) − leases − what the need holds whatever the batch (weights, runtime,
    /// CUDA context, unless already in memory).
    pub usable_bytes: u64,
    /// Why this number.
    pub reason: String,
}

/// The largest batch up to `max_batch` whose [`verdict`] fits, with that verdict (for batch 1 when
/// none fits). With `plan_bytes` > 0 the chosen device is planned as having that much free, with
/// nothing reserved or loaded on it; otherwise it is the device as it is now, leases and all.
pub fn optimal_batch(
    input: &FitInput<'_>,
    plan_bytes: u64,
    max_batch: u32,
) -> Result<(BatchAdvice, Verdict), Error> {
    let device = resolve(input)?;
    let mut plan = Plan {
        snapshot: input.room.snapshot.clone(),
        reserved_host: input.room.reserved_host,
        reserved_gpu: input.room.reserved_gpu.to_vec(),
        cached: input.cached,
    };
    if plan_bytes > 0 {
        plan.assume_free(device, plan_bytes);
    }
    let room = Room {
        snapshot: &plan.snapshot,
        reserved_host: plan.reserved_host,
        reserved_gpu: &plan.reserved_gpu,
        margin: input.room.margin,
        placeable: input.room.placeable,
    };
    let at = |batch| verdict(&FitInput { batch, device: device.into(), room, cached: plan.cached, ..*input });
    let mut best = None;
    for batch in 1..=max_batch {
        let v = at(batch)?;
        if !v.fits {
            break;
        }
        best = Some((batch, v));
    }
    let (batch, verdict) = match best {
        Some(found) => found,
        None => (0, at(1)?),
    };
    Ok((advise(&verdict, &room, batch, max_batch, input.requirements), verdict))
}

/// The state a batch search runs against: the latest sample, or a device planned to be free.
struct Plan<'a> {
    snapshot: Snapshot,
    reserved_host: u64,
    reserved_gpu: Vec<(u32, u64)>,
    cached: &'a [CachedModel],
}

impl Plan<'_> {
    /// `device` with `bytes` free, nothing reserved and nothing loaded on it.
    fn assume_free(&mut self, device: Device, bytes: u64) {
        match device {
            Device::Cuda(i) => {
                for d in self.snapshot.gpu.devices.iter_mut().filter(|d| d.index == i) {
                    d.memory_free_bytes = Some(bytes);
                }
                self.reserved_gpu.retain(|(index, _)| *index != i);
            }
            _ => {
                self.snapshot.effective.available_bytes = bytes;
                self.reserved_host = 0;
            }
        }
        self.cached = &[];
    }
}

/// The arithmetic behind an advised batch, on the memory the batch grows in.
fn advise(v: &Verdict, room: &Room<'_>, batch: u32, max_batch: u32, r: &Requirements) -> BatchAdvice {
    let fixed = Need { batch: 0, working_set_bytes: 0, ..v.need.clone() };
    let (memory, reserved, fixed_bytes) = match v.device {
        Device::Cuda(i) => {
            let free = room
                .snapshot
                .gpu
                .devices
                .iter()
                .find(|d| d.index == i)
                .and_then(|d| d.memory_free_bytes)
                .unwrap_or(0);
            (free, reserved_on(room.reserved_gpu, i), fixed.gpu_bytes())
        }
        _ => (room.snapshot.effective.available_bytes, room.reserved_host, fixed.host_bytes()),
    };
    let usable = (usable(memory, reserved, room.margin) - fixed_bytes as f64).max(0.0) as u64;
    let gb = |b: u64| b as f64 / 1e9;
    let mut reason = format!(
        "{:.2} GB free × (1 − {:.0} % margin) − {:.2} GB reserved by leases − {:.2} GB whatever the batch = {:.2} GB usable; {:.3} GB per sample (CFG included) → {} (cap {})",
        gb(memory),
        room.margin * 100.0,
        gb(reserved),
        gb(fixed_bytes),
        gb(usable),
        gb(r.per_sample_bytes),
        batch,
        max_batch
    );
    if batch == 0 {
        reason.push_str(&format!("; one sample does not fit: {}", v.summary("the model")));
    }
    BatchAdvice { batch, memory_bytes: memory, usable_bytes: usable, reason }
}

#[cfg(test)]
#[path = "tests/verdict.rs"]
mod tests;
