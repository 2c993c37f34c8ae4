//! GPU sensors that stop answering, through the real server: their figures leave `GetStatus` and
//! `/metrics`, `stale_sources` names them, the health level skips them, and an alert on them
//! neither resolves nor fires until the sensor answers again.

mod common;

use std::time::Duration;

use common::{
    eventually, scrape, start_server_with, test_config, ScriptedSampler, TestServer, PAUSED_REQUEST_TIMEOUT,
    WITHIN,
};
use maestro::monitor::snapshot::GpuDevice;
use maestro_proto as pb;
use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};

/// The scripted card's UUID: its series on `/metrics` are the lines that carry it.
const UUID: &str = "GPU-scripted-sensors";

/// A card at half memory, 97 °C (critical) and 300 W, every sensor answering.
fn hot_card() -> GpuDevice {
    GpuDevice {
        index: 0,
        name: "Scripted L40S".into(),
        uuid: UUID.into(),
        memory_total_bytes: Some(48_000_000_000),
        memory_used_bytes: Some(24_000_000_000),
        memory_free_bytes: Some(24_000_000_000),
        utilization_gpu_percent: Some(70.0),
        utilization_memory_percent: Some(20.0),
        temperature_celsius: Some(97.0),
        power_watts: Some(300.0),
        power_limit_watts: Some(350.0),
        compute_capability: (8, 9),
        process_memory_used_bytes: Some(0),
        ..GpuDevice::default()
    }
}

/// A host at 20 % memory with `card`, sampled every 100 ms.
async fn start(card: GpuDevice) -> (TestServer, ScriptedSampler) {
    let sampler = ScriptedSampler::new(20.0).with_gpu(card);
    let mut config = test_config();
    config.monitor.sample_interval = Duration::from_millis(100);
    config.server.request_timeout = PAUSED_REQUEST_TIMEOUT;
    (start_server_with(config, Box::new(sampler.clone())).await, sampler)
}

async fn status(server: &mut TestServer) -> pb::Snapshot {
    server.resources.get_status(pb::StatusRequest {}).await.unwrap().into_inner()
}

/// Every temperature alert in the log, active or resolved.
async fn temperature_alerts(server: &mut TestServer) -> Vec<pb::Alert> {
    let request = pb::ListAlertsRequest { active_only: false, ..Default::default() };
    let alerts = server.resources.list_alerts(request).await.unwrap().into_inner().alerts;
    alerts.into_iter().filter(|a| a.rule == "gpu_temperature").collect()
}

/// The card's series on `/metrics`: `name value` for each line that carries its UUID.
async fn card_series(server: &TestServer) -> Vec<String> {
    let text = scrape(server.metrics_addr).await;
    let series = text.lines().filter(|l| !l.starts_with('#') && l.contains(UUID));
    series.map(|l| format!("{} {}", l.split('{').next().unwrap(), l.rsplit(' ').next().unwrap())).collect()
}

/// Waits until `samples` more snapshots than `after` were taken.
async fn samples_later(server: &mut TestServer, after: &pb::Snapshot, samples: u64) -> pb::Snapshot {
    let target = after.sequence + samples;
    eventually("more samples", WITHIN, async || Some(status(server).await).filter(|s| s.sequence >= target))
        .await
}

async fn generation_readiness(server: &mut TestServer) -> ServingStatus {
    let request = HealthCheckRequest { service: "maestro.v1.GenerationService".into() };
    let status = server.health.check(request).await.unwrap().into_inner().status;
    ServingStatus::try_from(status).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_sensor_that_stops_answering_is_absent_not_zero_and_holds_its_alert() {
    let (mut server, sampler) = start(hot_card()).await;
    // Answering and hot: a critical temperature alert, CRITICAL health, readiness lost.
    let raised = eventually("a temperature alert", WITHIN, async || {
        Some(temperature_alerts(&mut server).await).filter(|a| !a.is_empty())
    })
    .await;
    assert!(raised.len() == 1 && raised[0].active && raised[0].value == 97.0, "{raised:?}");
    assert_eq!(status(&mut server).await.health, pb::HealthLevel::Critical as i32);
    assert_eq!(generation_readiness(&mut server).await, ServingStatus::NotServing);
    let series = card_series(&server).await;
    for want in ["maestro_gpu_temperature_celsius 97", "maestro_gpu_power_watts 300"] {
        assert!(series.iter().any(|s| s == want), "{want} not in {series:?}");
    }

    sampler.set_gpu(|d| (d.temperature_celsius, d.power_watts) = (None, None));
    let silent = eventually("the silent sensors named stale", WITHIN, async || {
        let s = status(&mut server).await;
        let named = |n: &str| s.stale_sources.iter().any(|source| source == n);
        (named("gpu:0/temperature") && named("gpu:0/power")).then_some(s)
    })
    .await;
    assert_eq!(silent.stale_sources.len(), 2, "{:?}", silent.stale_sources);
    let card = &silent.gpu.as_ref().unwrap().devices[0];
    assert_eq!((card.temperature_celsius, card.power_watts), (None, None), "absent, not 0");
    assert_eq!((card.memory_used_percent, card.power_limit_watts), (Some(50.0), Some(350.0)));
    // Host 20 % and GPU memory 50 % are what was read: the silent temperature counts for nothing.
    assert_eq!(silent.health, pb::HealthLevel::Healthy as i32);

    // However long the silence, the alert is neither resolved nor raised again, and the card
    // whose critical sensor went silent does not give readiness back.
    let later = samples_later(&mut server, &silent, 10).await;
    assert_eq!(later.stale_sources, silent.stale_sources);
    let held = temperature_alerts(&mut server).await;
    assert!(held.len() == 1 && held[0].active && held[0].id == raised[0].id, "{held:?}");
    assert_eq!(generation_readiness(&mut server).await, ServingStatus::NotServing);
    let series = card_series(&server).await;
    assert!(
        series
            .iter()
            .all(|s| !s.starts_with("maestro_gpu_temperature") && !s.starts_with("maestro_gpu_power_watts")),
        "{series:?}"
    );
    assert!(series.iter().any(|s| s == "maestro_gpu_memory_used_bytes 24000000000"), "{series:?}");

    // The sensor answers again, cool: the alert resolves on that reading.
    sampler.set_gpu(|d| (d.temperature_celsius, d.power_watts) = (Some(40.0), Some(90.0)));
    let resolved = eventually("the alert resolved", WITHIN, async || {
        Some(temperature_alerts(&mut server).await).filter(|a| a.iter().all(|a| !a.active))
    })
    .await;
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert!(status(&mut server).await.stale_sources.is_empty());
    assert!(card_series(&server).await.iter().any(|s| s == "maestro_gpu_temperature_celsius 40"));
    eventually("readiness back", WITHIN, async || {
        (generation_readiness(&mut server).await == ServingStatus::Serving).then_some(())
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_sensor_silent_from_the_start_raises_nothing() {
    let (mut server, _sampler) = start(GpuDevice { temperature_celsius: None, ..hot_card() }).await;
    let first = status(&mut server).await;
    assert_eq!(first.stale_sources, ["gpu:0/temperature"]);
    let later = samples_later(&mut server, &first, 10).await;
    assert_eq!(later.health, pb::HealthLevel::Healthy as i32);
    assert!(temperature_alerts(&mut server).await.is_empty());
    assert_eq!(generation_readiness(&mut server).await, ServingStatus::Serving);
    let series = card_series(&server).await;
    assert!(series.iter().all(|s| !s.starts_with("maestro_gpu_temperature")), "{series:?}");
}
