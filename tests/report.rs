//! What `GetReport` and `WatchReport` add for dashboards, through the real server: the generation
//! queue (running, waiting, waited time), recent generations with their outcome and speed, evictions
//! with their reasons, and the thresholds in force.
#![cfg(feature = "torch")]

mod common;

use common::{model_config, start_server, TestServer};
use futures::StreamExt;
use maestro_proto::{self as pb, generate_response::Payload};
use tonic::Code;

const TINY: &str = "maestro/musicgen-tiny";

fn request(duration_s: f64, chunk_ms: u32) -> pb::GenerateRequest {
    pb::GenerateRequest {
        model: TINY.into(),
        prompt: "a calm piano".into(),
        duration_s,
        seed: Some(1),
        chunk_ms,
        ..Default::default()
    }
}

async fn report(s: &mut TestServer) -> pb::ResourceReport {
    s.resources.get_report(pb::ReportRequest {}).await.unwrap().into_inner()
}

#[tokio::test]
async fn the_queue_and_recent_generations_show_what_runs_waits_and_ended() {
    let mut s = start_server(model_config()).await;
    // The blocker never reads its one-frame chunks, so the worker stays inside it.
    let mut blocked = s.generation.generate(request(20.0, 20)).await.unwrap().into_inner();
    assert!(blocked.next().await.unwrap().is_ok(), "header");
    assert!(matches!(blocked.next().await.unwrap().unwrap().payload, Some(Payload::Chunk(_))));
    let mut waiting = s.generation.generate(request(0.2, 0)).await.unwrap().into_inner();
    let Some(Ok(pb::GenerateResponse { payload: Some(Payload::Header(header)) })) = waiting.next().await
    else {
        panic!("a header first")
    };
    assert_eq!(header.queue_position, 1);
    let queue = report(&mut s).await.queue;
    assert_eq!(queue.len(), 2, "{queue:?}");
    assert!(queue[0].running && queue[0].position == 0 && queue[0].model == TINY);
    assert!(!queue[1].running && queue[1].position == 1, "{:?}", queue[1]);
    assert_eq!((queue[1].request_id.as_str(), queue[1].duration_s), (header.request_id.as_str(), 0.2));
    assert!(queue[0].waited_ms >= 0.0 && queue[1].waited_ms > 0.0);
    drop(blocked);
    while let Some(item) = waiting.next().await {
        item.unwrap();
    }
    let r = common::eventually("both ended", common::WITHIN, async || {
        let r = report(&mut s).await;
        (r.queue.is_empty() && r.recent_generations.len() == 2).then_some(r)
    })
    .await;
    let (done, cancelled) = (&r.recent_generations[0], &r.recent_generations[1]);
    assert_eq!((done.outcome.as_str(), done.request_id.as_str()), ("completed", header.request_id.as_str()));
    assert!(
        done.real_time_factor > 0.0 && done.time_to_first_audio_ms.unwrap() > 0.0 && done.ended_at.is_some()
    );
    assert_eq!((cancelled.outcome.as_str(), cancelled.device.as_str()), ("cancelled", "cpu"));
    // A failure says why.
    let bad = pb::GenerateRequest { top_k: Some(1_000_000), ..request(0.2, 0) };
    assert!(s.generation.generate(bad).await.is_err());
    assert_eq!(
        report(&mut s).await.recent_generations.len(),
        2,
        "refused before admission: not a generation"
    );
}

#[tokio::test]
async fn evictions_keep_their_reason_and_thresholds_are_reported() {
    let mut s = start_server(model_config()).await;
    let load = pb::LoadModelRequest { model: TINY.into(), device: "cpu".into(), ..Default::default() };
    s.generation.load_model(load).await.unwrap();
    let cleanup = pb::CleanupRequest { force: true, dry_run: false };
    s.resources.cleanup(cleanup).await.unwrap();
    let r = report(&mut s).await;
    assert_eq!(r.evictions.len(), 1, "{:?}", r.evictions);
    let e = &r.evictions[0];
    assert_eq!(
        (e.model.as_str(), e.device.as_str(), e.reason.as_str()),
        (TINY, "cpu", "Cleanup requested (force)")
    );
    assert!(e.bytes > 0 && e.at.is_some());
    let find = |metric: &str, kind: &str| {
        r.thresholds.iter().find(|t| t.metric == metric && t.kind == kind).map(|t| (t.value, t.unit.clone()))
    };
    assert_eq!(find("host_memory_percent", "alert_warning"), Some((80.0, "%".into())));
    assert_eq!(find("gpu_temperature_celsius", "alert_critical"), Some((95.0, "celsius".into())));
    assert_eq!(find("memory_percent", "health_moderate"), Some((70.0, "%".into())));
}

#[tokio::test]
async fn watch_report_streams_reports_and_refuses_bad_intervals() {
    let mut s = start_server(model_config()).await;
    let req = pb::WatchReportRequest { interval_ms: 100 };
    let mut stream = s.resources.watch_report(req).await.unwrap().into_inner();
    let first = stream.next().await.unwrap().unwrap();
    let second = stream.next().await.unwrap().unwrap();
    assert!(first.snapshot.is_some() && !second.thresholds.is_empty());
    for bad in [50, 60_001] {
        let err = s.resources.watch_report(pb::WatchReportRequest { interval_ms: bad }).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains("interval_ms") && err.message().contains(&format!("got {bad}")),
            "{err:?}"
        );
    }
}
