//! Unit tests of what each cleanup action reports freeing, and of the measured footprint.

use std::time::Instant;

use super::*;
use crate::{
    monitor::snapshot::{GpuDevice, GpuStats, ProcessStats},
    resources::{
        fixtures::cached,
        ledger::{Capacity, LeaseKind, LeaseRequest, Ledger},
    },
};

fn lease(cpu_bytes: u64, gpu_bytes: u64) -> Lease {
    let request = LeaseRequest {
        owner: "tester".into(),
        token: None,
        kind: LeaseKind::Client,
        cpu_bytes,
        gpu_bytes,
        gpu_index: Some(0),
        ttl: None,
    };
    let capacity = Capacity { host_available_bytes: u64::MAX, gpu_available_bytes: vec![(0, u64::MAX)] };
    Ledger::new().reserve(request, &capacity, Instant::now()).unwrap()
}

fn entry(device: Device, estimated: u64, measured: Option<u64>) -> CachedModel {
    let plain = cached("m", estimated, Instant::now());
    CachedModel { device, measured_bytes: measured, ..plain }
}

#[test]
fn a_released_lease_frees_the_bytes_it_held() {
    let l = lease(3_000, 5_000);
    let done = released(&l, false);
    assert_eq!((done.kind, done.target.as_str()), (ActionKind::ReleaseExpiredLease, l.id.as_str()));
    assert_eq!((done.host_freed, done.gpu_freed, done.estimated), (3_000, 5_000, 8_000));
    let listed = released(&l, true);
    assert_eq!(
        (listed.host_freed, listed.gpu_freed, listed.estimated),
        (0, 0, 8_000),
        "a dry run frees nothing"
    );
}

#[test]
fn an_eviction_frees_what_the_removed_entry_accounted_on_its_device() {
    let candidate = entry(Device::Cpu, 900, Some(1_000));
    let on_host = evicted(&candidate, Some(Ok(entry(Device::Cpu, 900, Some(1_234)))));
    assert_eq!((on_host.host_freed, on_host.gpu_freed, on_host.estimated), (1_234, 0, 900));
    let unmeasured = evicted(&candidate, Some(Ok(entry(Device::Cuda(1), 900, None))));
    assert_eq!((unmeasured.host_freed, unmeasured.gpu_freed), (0, 900), "the estimate, on the GPU");
}

#[test]
fn a_refused_or_dry_eviction_frees_nothing() {
    let candidate = entry(Device::Cpu, 900, Some(1_000));
    let refused = evicted(
        &candidate,
        Some(Err(Error::Cache(crate::resources::cache::CacheError::InUse {
            model: "m".into(),
            in_flight: 1,
        }))),
    );
    assert_eq!((refused.host_freed, refused.gpu_freed), (0, 0));
    assert!(refused.detail.starts_with("not evicted: ") && refused.detail.contains("in use"), "{refused:?}");
    let dry = evicted(&candidate, None);
    assert_eq!((dry.host_freed, dry.gpu_freed, dry.estimated), (0, 0, 900));
}

fn reading(rss: Result<u64, &str>, gpu_used: Result<&[u64], &str>) -> Reading {
    let devices = |used: &[u64]| {
        let devices = used.iter().map(|&u| GpuDevice { memory_used_bytes: Some(u), ..Default::default() });
        GpuStats { devices: devices.collect(), ..Default::default() }
    };
    Reading {
        host: Err("unused".into()),
        container: Ok(None),
        process: rss.map(|rss_bytes| ProcessStats { rss_bytes, ..Default::default() }).map_err(Into::into),
        gpu: gpu_used.map(devices).map_err(Into::into),
    }
}

#[test]
fn the_footprint_drop_is_measured_where_both_readings_have_it() {
    let before = Footprint::of(&reading(Ok(10_000), Ok(&[700, 300])));
    let after = Footprint::of(&reading(Ok(7_500), Ok(&[600, 500])));
    assert_eq!(before.freed_until(&after), (2_500, -100), "growth is negative");
    let unread = Footprint::of(&reading(Err("no /proc"), Err("NVML gone")));
    assert_eq!(before.freed_until(&unread), (0, 0), "a figure not read measures nothing");
    assert_eq!(unread.freed_until(&after), (0, 0));
}
