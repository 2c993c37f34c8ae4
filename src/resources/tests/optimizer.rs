//! Unit tests of the suggestion rules: each figure in a text follows the thresholds it is given, no
//! CUDA-cache advice without the allocator's figures, and the f16 saving is the memory model's.

use super::*;
use crate::{
    monitor::snapshot::{EffectiveMemory, GpuDevice, GpuStats, HostStats},
    resources::fixtures::cached,
};

const DEFAULT: Thresholds =
    Thresholds { pressure_percent: 80.0, hot_gpu_celsius: 85.0, evict_idle_after: Duration::from_secs(600) };

fn model(name: &str, bytes: u64, in_flight: u32, last_used: Instant) -> CachedModel {
    CachedModel { in_flight, ..cached(name, bytes, last_used) }
}

fn host_at(used_percent: u64) -> Snapshot {
    Snapshot {
        effective: EffectiveMemory { limit_bytes: 100, used_bytes: used_percent, ..Default::default() },
        ..Default::default()
    }
}

fn with_gpu(gpu: GpuDevice) -> Snapshot {
    Snapshot { gpu: GpuStats { devices: vec![gpu], ..Default::default() }, ..host_at(30) }
}

fn kinds<'a>(got: &'a [Suggestion], kind: &str) -> Vec<&'a Suggestion> {
    got.iter().filter(|g| g.kind == kind).collect()
}

fn no_decoders() -> BTreeMap<String, u64> {
    BTreeMap::new()
}

#[test]
fn pressure_suggests_evicting_idle_models_with_what_cleanup_frees() {
    let now = Instant::now();
    let cached = vec![model("idle", 2_400_000_000, 0, now), model("busy", 1_000_000_000, 1, now)];
    let got = suggest(&host_at(87), &cached, &no_decoders(), &DEFAULT, now + Duration::from_secs(5));
    let evict = kinds(&got, "evict_idle_model");
    assert_eq!(evict.len(), 1, "{got:?}");
    let m = &evict[0].message;
    assert!(m.contains("host memory at 87 % (pressure from 80 %)") && m.contains("2.40 GB"), "{m}");
    assert!(m.contains("Cleanup with force"), "used 5 s ago: a plain Cleanup spares it: {m}");
    assert_eq!((evict[0].severity, evict[0].bytes_saved), (Severity::Warning, 2_400_000_000));
    assert_eq!(got[0].kind, "evict_idle_model", "most pressing first");
}

#[test]
fn the_idle_time_before_eviction_advice_is_the_configured_one() {
    let now = Instant::now();
    let cached = [model("old", 1_000_000_000, 0, now)];
    let later = now + Duration::from_secs(300);
    assert!(kinds(&suggest(&host_at(30), &cached, &no_decoders(), &DEFAULT, later), "evict_idle_model")
        .is_empty());
    let sooner = Thresholds { evict_idle_after: Duration::from_secs(200), ..DEFAULT };
    let got = suggest(&host_at(30), &cached, &no_decoders(), &sooner, later);
    let evict = kinds(&got, "evict_idle_model");
    assert_eq!((evict.len(), evict[0].severity), (1, Severity::Info), "{got:?}");
    let m = &evict[0].message;
    assert!(m.contains("unused for 200 s or more") && m.contains("idle 300 s"), "{m}");
    assert!(m.contains("; Cleanup evicts it"), "idle over a minute: a plain Cleanup takes it: {m}");
}

#[test]
fn the_pressure_level_is_the_configured_one_and_on_the_models_device() {
    let now = Instant::now();
    let on_gpu = CachedModel { device: Device::Cuda(1), ..model("g", 5_000_000_000, 0, now) };
    let gpu = GpuDevice {
        index: 1,
        memory_total_bytes: Some(100),
        memory_used_bytes: Some(75),
        ..Default::default()
    };
    let s = Snapshot { effective: host_at(20).effective, ..with_gpu(gpu) };
    let cached = [on_gpu, model("h", 10, 0, now)];
    assert!(kinds(&suggest(&s, &cached, &no_decoders(), &DEFAULT, now), "evict_idle_model").is_empty());
    let low = Thresholds { pressure_percent: 70.0, ..DEFAULT };
    let got = suggest(&s, &cached, &no_decoders(), &low, now);
    let evict = kinds(&got, "evict_idle_model");
    assert_eq!(evict.len(), 1, "only the model on the pressed GPU: {got:?}");
    assert!(evict[0].message.contains("gpu:1 memory at 75 % (pressure from 70 %)"), "{}", evict[0].message);
}

#[test]
fn a_calm_machine_gets_no_eviction_advice() {
    let now = Instant::now();
    let got = suggest(&host_at(30), &[model("fresh", 10, 0, now)], &no_decoders(), &DEFAULT, now);
    assert!(got.iter().all(|g| g.kind != "evict_idle_model" && g.kind != "reduce_batch"), "{got:?}");
}

#[test]
fn the_f16_saving_is_the_one_the_memory_model_works_out() {
    let now = Instant::now();
    let cached = [model("m", 9_000_000_000, 0, now), model("unsized", 9_000_000_000, 0, now)];
    let decoders = BTreeMap::from([("m".to_string(), 1_200_000_000)]);
    let got = suggest(&host_at(30), &cached, &decoders, &DEFAULT, now);
    let half = kinds(&got, "use_half_precision");
    assert_eq!(half.len(), 1, "no decoder size, no promise: {got:?}");
    assert_eq!((half[0].resource.as_str(), half[0].bytes_saved), ("m", 1_200_000_000));
    assert!(half[0].message.contains("saving 1.20 GB (T5 and EnCodec stay f32)"), "{}", half[0].message);
    let f16 = [CachedModel { dtype: DType::F16, ..cached[0].clone() }];
    assert!(kinds(&suggest(&host_at(30), &f16, &decoders, &DEFAULT, now), "use_half_precision").is_empty());
}

#[test]
fn no_cuda_cache_advice_without_the_allocators_figures() {
    let full = GpuDevice {
        index: 0,
        memory_total_bytes: Some(100),
        memory_used_bytes: Some(95),
        torch_reserved_bytes: Some(3_000_000_000),
        ..Default::default()
    };
    let got = suggest(&with_gpu(full.clone()), &[], &no_decoders(), &DEFAULT, Instant::now());
    assert!(kinds(&got, "empty_cuda_cache").is_empty(), "the snapshot has no allocator reading: {got:?}");
    let read = GpuDevice {
        torch_allocated_bytes: Some(1_000_000_000),
        torch_reserved_bytes: Some(3_500_000_000),
        ..full.clone()
    };
    let got = suggest(&with_gpu(read), &[], &no_decoders(), &DEFAULT, Instant::now());
    let advice = kinds(&got, "empty_cuda_cache");
    assert_eq!(advice.len(), 1, "the allocator's figures are in the snapshot: {got:?}");
    assert_eq!(advice[0].bytes_saved, 2_500_000_000, "reserved minus allocated");
    let stats = AllocatorStats { allocated_bytes: 1_000_000_000, reserved_bytes: 3_500_000_000 };
    let advice = empty_cuda_cache(&full, Some(stats), &DEFAULT).expect("with the allocator's figures");
    assert_eq!(advice.bytes_saved, 2_500_000_000, "reserved minus allocated");
    assert!(advice.message.contains("returning 2.50 GB"), "{}", advice.message);
    let all_live = AllocatorStats { allocated_bytes: 3_500_000_000, ..stats };
    assert_eq!(empty_cuda_cache(&full, Some(all_live), &DEFAULT), None, "nothing cached, nothing to say");
}

#[test]
fn the_cooling_temperature_is_the_configured_one() {
    let warm = GpuDevice { index: 2, temperature_celsius: Some(80.0), ..Default::default() };
    let none = suggest(&with_gpu(warm.clone()), &[], &no_decoders(), &DEFAULT, Instant::now());
    assert!(kinds(&none, "check_cooling").is_empty(), "{none:?}");
    let strict = Thresholds { hot_gpu_celsius: 75.0, ..DEFAULT };
    let got = suggest(&with_gpu(warm), &[], &no_decoders(), &strict, Instant::now());
    let cool = kinds(&got, "check_cooling");
    assert_eq!((cool.len(), cool[0].resource.as_str()), (1, "gpu:2"), "{got:?}");
    assert!(cool[0].message.contains("gpu:2 at 80 °C (warning from 75 °C)"), "{}", cool[0].message);
}

#[test]
fn swap_in_use_is_reported_with_its_size() {
    let s =
        Snapshot { host: HostStats { swap_used_bytes: 500_000_000, ..Default::default() }, ..host_at(30) };
    let got = suggest(&s, &[], &no_decoders(), &DEFAULT, Instant::now());
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].kind, got[0].resource.as_str()), ("swap_in_use", "host"));
    assert!(got[0].message.contains("0.50 GB"), "{}", got[0].message);
}

#[test]
fn pressure_with_nothing_idle_suggests_a_smaller_batch_at_the_configured_level() {
    let now = Instant::now();
    let busy = [CachedModel { dtype: DType::F16, ..model("busy", 10, 1, now) }];
    assert!(suggest(&host_at(75), &busy, &no_decoders(), &DEFAULT, now).is_empty());
    let low = Thresholds { pressure_percent: 70.0, ..DEFAULT };
    let got = suggest(&host_at(75), &busy, &no_decoders(), &low, now);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].kind, got[0].severity), ("reduce_batch", Severity::Warning));
    assert!(got[0].message.contains("host memory at 75 % (pressure from 70 %)"), "{}", got[0].message);
}
