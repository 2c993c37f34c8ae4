//! Tests of the fit verdict and batch advice over scripted snapshots: every byte counted once, on
//! the device it lives on, leases and loaded models included; and, over random machines, that an
//! advised batch always validates and one more does not.

use std::time::Instant;

use proptest::prelude::*;

use super::*;
use crate::monitor::snapshot::{EffectiveMemory, GpuStats};
use crate::resources::device::RequestedDevice;
use crate::resources::requirements::{Registry, CUDA_CONTEXT_BYTES, GB, HOST_RUNTIME_BYTES};

const LARGE: &str = "facebook/musicgen-large";

fn machine(host_free: u64, gpus: &[(u64, (u32, u32))]) -> Snapshot {
    let devices = gpus
        .iter()
        .enumerate()
        .map(|(i, &(free, cc))| GpuDevice {
            index: i as u32,
            memory_total_bytes: Some(free),
            memory_free_bytes: Some(free),
            compute_capability: cc,
            ..Default::default()
        })
        .collect();
    Snapshot {
        effective: EffectiveMemory { available_bytes: host_free, ..Default::default() },
        gpu: GpuStats { available: !gpus.is_empty(), devices, ..Default::default() },
        ..Default::default()
    }
}

fn table(model: &str, dtype: DType, duration_s: f64) -> Requirements {
    Registry::default().table(model).unwrap().requirements(dtype, duration_s)
}

fn loaded(model: &str, device: Device, dtype: DType) -> CachedModel {
    let unmeasured =
        CachedModel { measured_bytes: None, ..crate::resources::fixtures::cached(model, 0, Instant::now()) };
    CachedModel { device, dtype, ..unmeasured }
}

fn input<'a>(
    model: &'a str,
    r: &'a Requirements,
    device: impl Into<RequestedDevice>,
    snapshot: &'a Snapshot,
    cached: &'a [CachedModel],
) -> FitInput<'a> {
    let all: &'static [u32] = &[0, 1, 2, 3];
    let room = Room { snapshot, reserved_host: 0, reserved_gpu: &[], margin: 0.2, placeable: all };
    FitInput {
        model,
        requirements: r,
        batch: 1,
        device: device.into(),
        room,
        cached,
        audio_prompt_s: 0.0,
        conversion_bytes: 0,
    }
}

fn check<'a>(v: &'a Verdict, resource: &str) -> &'a Check {
    v.checks.iter().find(|c| c.resource == resource).unwrap()
}

#[test]
fn musicgen_large_on_the_cpu_needs_its_cpu_figure_once() {
    let r = table(LARGE, DType::F32, 10.0);
    let snapshot = machine(100 * GB, &[]);
    let v = verdict(&input(LARGE, &r, Device::Cpu, &snapshot, &[])).unwrap();
    let host = check(&v, "host_memory");
    let cpu_figure = 12 * GB + r.per_sample_bytes;
    assert_eq!(host.required, cpu_figure as f64, "the table's host figure plus one sample, nothing twice");
    assert!(
        host.message.starts_with("host_memory: requires 16.17 GB (11.00 GB weights ("),
        "{}",
        host.message
    );
    assert_eq!(host.message.matches("weights").count(), 1, "{}", host.message);
    assert_eq!((v.device, v.checks.len(), v.fits), (Device::Cpu, 1, true));
}

#[test]
fn a_loaded_model_is_not_counted_again() {
    let r = table(LARGE, DType::F32, 10.0);
    let snapshot = machine(100 * GB, &[(80 * GB, (9, 0))]);
    let on_cpu = [loaded(LARGE, Device::Cpu, DType::F32)];
    let v = verdict(&input(LARGE, &r, Device::Cpu, &snapshot, &on_cpu)).unwrap();
    assert_eq!(check(&v, "host_memory").required, r.per_sample_bytes as f64, "only the working set");
    assert!(check(&v, "host_memory").message.contains("already in memory, not counted again"));
    let other_dtype = [loaded(LARGE, Device::Cpu, DType::F16)];
    let v = verdict(&input(LARGE, &r, Device::Cpu, &snapshot, &other_dtype)).unwrap();
    assert_eq!(check(&v, "host_memory").required, (12 * GB + r.per_sample_bytes) as f64, "another copy");
    let v = verdict(&input(LARGE, &r, Device::Cuda(0), &snapshot, &on_cpu)).unwrap();
    let gpu = (11 * GB + r.per_sample_bytes + CUDA_CONTEXT_BYTES) as f64;
    assert_eq!(check(&v, "gpu_memory:0").required, gpu, "loaded elsewhere: a new copy");
    let neighbour = [loaded("facebook/musicgen-small", Device::Cuda(0), DType::F32)];
    let v = verdict(&input(LARGE, &r, Device::Cuda(0), &snapshot, &neighbour)).unwrap();
    let without_context = (11 * GB + r.per_sample_bytes) as f64;
    assert_eq!(check(&v, "gpu_memory:0").required, without_context, "one CUDA context per device");
    assert_eq!(check(&v, "host_memory").required, HOST_RUNTIME_BYTES as f64);
}

#[test]
fn leases_count_on_their_own_device_only() {
    let r = table("facebook/musicgen-small", DType::F32, 10.0);
    let snapshot = machine(10 * GB, &[(8 * GB, (8, 0)), (8 * GB, (8, 0))]);
    let reserved = [(1, 5 * GB)];
    let mut fit_input = input("facebook/musicgen-small", &r, RequestedDevice::Auto, &snapshot, &[]);
    fit_input.room.reserved_gpu = &reserved;
    let v = verdict(&fit_input).unwrap();
    assert_eq!(v.device, Device::Cuda(0), "auto avoids the leased card");
    assert_eq!(check(&v, "gpu_memory:0").reserved, 0.0);
    let v = verdict(&FitInput { device: Device::Cuda(1).into(), ..fit_input }).unwrap();
    let gpu = check(&v, "gpu_memory:1");
    assert_eq!(gpu.reserved, (5 * GB) as f64);
    assert!(!v.fits && gpu.message.contains("5.00 GB reserved by leases"), "{}", gpu.message);
    assert!(v.summary("m").contains("gpu_memory:1: requires 3.08 GB"), "{}", v.summary("m"));
}

#[test]
fn batch_advice_counts_leases_and_the_host_runtime() {
    let r = table(LARGE, DType::F32, 10.0);
    let snapshot = machine(50 * GB, &[]);
    let mut fit_input = input(LARGE, &r, Device::Cpu, &snapshot, &[]);
    fit_input.room.reserved_host = 4 * GB;
    let (advice, v) = optimal_batch(&fit_input, 0, MAX_BATCH).unwrap();
    // 50 × 0.8 − 4 leased − 12 (weights and runtime) = 24 GB usable; 4.17 GB per sample.
    assert_eq!((advice.usable_bytes, advice.batch), (24 * GB, 5));
    assert_eq!((v.fits, v.need.batch), (true, 5));
    assert!(
        advice.reason.contains("4.00 GB reserved by leases − 12.00 GB whatever the batch"),
        "{}",
        advice.reason
    );
    let (planned, _) = optimal_batch(&fit_input, 100 * GB, MAX_BATCH).unwrap();
    assert_eq!((planned.memory_bytes, planned.usable_bytes), (100 * GB, 68 * GB), "a plan has no leases");
    let tight = machine(15 * GB, &[]);
    let (none, v) = optimal_batch(&input(LARGE, &r, Device::Cpu, &tight, &[]), 0, MAX_BATCH).unwrap();
    assert_eq!((none.batch, v.need.batch, v.fits), (0, 1, false));
    assert!(
        none.reason.contains("one sample does not fit: the model does not fit on cpu"),
        "{}",
        none.reason
    );
}

#[test]
fn a_gpu_that_lacks_host_memory_for_the_runtime_advises_nothing() {
    let r = table(LARGE, DType::F16, 10.0);
    let snapshot = machine(GB / 2, &[(80 * GB, (9, 0))]);
    let (advice, v) =
        optimal_batch(&input(LARGE, &r, RequestedDevice::Auto, &snapshot, &[]), 0, MAX_BATCH).unwrap();
    assert_eq!((advice.batch, v.device), (0, Device::Cuda(0)));
    assert!(advice.reason.contains("host_memory: requires 1.00 GB"), "{}", advice.reason);
}

#[test]
fn auto_takes_the_card_with_most_room_and_a_refusal_names_every_card() {
    let r = table(LARGE, DType::F32, 10.0);
    let snapshot = machine(100 * GB, &[(24 * GB, (8, 0)), (80 * GB, (9, 0))]);
    let v = verdict(&input(LARGE, &r, RequestedDevice::Auto, &snapshot, &[])).unwrap();
    assert_eq!((v.device, v.fits), (Device::Cuda(1), true));
    let tight = machine(100 * GB, &[(GB, (8, 0)), (2 * GB, (9, 0))]);
    let v = verdict(&input(LARGE, &r, RequestedDevice::Auto, &tight, &[])).unwrap();
    assert_eq!((v.device, v.fits), (Device::Cuda(1), false));
    let summary = v.summary(LARGE);
    assert!(
        summary.contains("gpu_memory:1: requires") && summary.contains("gpu_memory:0: requires"),
        "{summary}"
    );
}

#[test]
fn a_gpu_not_placed_on_is_a_bad_device_and_auto_skips_it() {
    let r = table(LARGE, DType::F32, 10.0);
    let snapshot = machine(100 * GB, &[(24 * GB, (8, 0)), (80 * GB, (9, 0))]);
    let mut only_first = input(LARGE, &r, RequestedDevice::Auto, &snapshot, &[]);
    only_first.room.placeable = &[0];
    assert_eq!(verdict(&only_first).unwrap().device, Device::Cuda(0));
    let err = verdict(&FitInput { device: Device::Cuda(1).into(), ..only_first }).unwrap_err();
    assert!(
        err.to_string().contains("cuda:1 is not a GPU this server places work on (it places on: cuda:0"),
        "{err}"
    );
    only_first.room.placeable = &[];
    assert_eq!(verdict(&only_first).unwrap().device, Device::Cpu);
}

#[test]
fn int8_weights_are_placed_on_the_cpu_and_refused_on_a_gpu() {
    let snapshot = machine(100 * GB, &[(80 * GB, (9, 0))]);
    for dtype in [DType::Int8, DType::Int4] {
        let r = table(LARGE, dtype, 10.0);
        assert_eq!(
            verdict(&input(LARGE, &r, RequestedDevice::Auto, &snapshot, &[])).unwrap().device,
            Device::Cpu
        );
        let err = verdict(&input(LARGE, &r, Device::Cuda(0), &snapshot, &[])).unwrap_err();
        assert!(err.to_string().contains(&format!("cuda:0 cannot run {dtype} weights")), "{err}");
    }
    let f16 = table(LARGE, DType::F16, 10.0);
    assert_eq!(
        verdict(&input(LARGE, &f16, RequestedDevice::Auto, &snapshot, &[])).unwrap().device,
        Device::Cuda(0)
    );
}

#[test]
fn an_absent_gpu_is_a_bad_device() {
    let r = table(LARGE, DType::F32, 10.0);
    let snapshot = machine(GB, &[]);
    let err = verdict(&input(LARGE, &r, Device::Cuda(2), &snapshot, &[])).unwrap_err();
    assert!(err.to_string().contains("cuda:2 does not exist"), "{err}");
}

fn dtypes() -> impl Strategy<Value = DType> {
    prop_oneof![Just(DType::F32), Just(DType::F16), Just(DType::Bf16)]
}

fn gpus() -> impl Strategy<Value = Vec<(u64, (u32, u32))>> {
    let cc = prop_oneof![Just((6, 1)), Just((7, 5)), Just((8, 0)), Just((9, 0))];
    proptest::collection::vec((0..100 * GB, cc), 0..3)
}

proptest! {
    #[test]
    fn an_advised_batch_validates_and_one_more_does_not(
        host_free in 0..300 * GB,
        gpus in gpus(),
        host_lease in 0..40 * GB,
        gpu_leases in proptest::collection::vec(0..30 * GB, 3),
        duration_s in 0.5f64..30.0,
        dtype in dtypes(),
        model in prop_oneof![Just("facebook/musicgen-small"), Just("facebook/musicgen-medium"), Just(LARGE)],
        device in 0usize..5,
        loaded_on in 0usize..4,
        margin in 0.0f64..0.5,
        placed in 0u32..8,
    ) {
        let r = table(model, dtype, duration_s);
        let snapshot = machine(host_free, &gpus);
        let reserved: Vec<(u32, u64)> = (0..gpus.len() as u32).zip(gpu_leases).collect();
        let device = match device {
            0 => RequestedDevice::Auto,
            1 => RequestedDevice::On(Device::Cpu),
            n if n - 2 < gpus.len() => RequestedDevice::On(Device::Cuda((n - 2) as u32)),
            _ => RequestedDevice::Auto,
        };
        let cached: Vec<CachedModel> = match loaded_on {
            0 => vec![loaded(model, Device::Cpu, dtype)],
            1 if !gpus.is_empty() => vec![loaded(model, Device::Cuda(0), dtype)],
            2 if !gpus.is_empty() => vec![loaded("other/model", Device::Cuda(0), DType::F32)],
            _ => Vec::new(),
        };
        let placeable: Vec<u32> = (0..gpus.len() as u32).filter(|i| placed & (1 << i) != 0).collect();
        let room = Room { snapshot: &snapshot, reserved_host: host_lease, reserved_gpu: &reserved, margin, placeable: &placeable };
        let fit_input = FitInput { model, requirements: &r, batch: 1, device, room, cached: &cached, audio_prompt_s: 0.0, conversion_bytes: 0 };
        let result = optimal_batch(&fit_input, 0, MAX_BATCH);
        if let RequestedDevice::On(Device::Cuda(i)) = device {
            if !placeable.contains(&i) {
                // A GPU work is not placed on is no answer but a bad device.
                prop_assert!(result.is_err(), "cuda:{} is not placeable: {:?}", i, result);
                return Ok(());
            }
        }
        let (advice, v) = result.unwrap();
        if let Device::Cuda(i) = v.device {
            prop_assert!(placeable.contains(&i), "placed on cuda:{} outside {:?}", i, placeable);
        }
        let at = |batch| verdict(&FitInput { batch, ..fit_input }).unwrap();
        prop_assert_eq!(at(advice.batch.max(1)).device, v.device);
        if advice.batch > 0 {
            prop_assert!(at(advice.batch).fits, "advised {} does not validate: {:?}", advice.batch, advice);
        }
        if advice.batch < MAX_BATCH {
            prop_assert!(!at(advice.batch + 1).fits, "{} more fits too: {:?}", advice.batch + 1, advice);
        }
    }
}
