//! The drain a rolling update relies on, and readiness that means "can take work", through real
//! servers: a shutdown request (what SIGTERM sends) turns every service but liveness NOT_SERVING while
//! the server still serves for the grace, then it stops accepting, ends watch streams with OK, lets
//! running generations finish within the deadline (and cancels those past it with UNAVAILABLE), and
//! returns Ok; a second request skips the waiting. The plaintext health port answers the same table.

mod common;

use std::time::Duration;

use common::{eventually, model_config, start_server, ScriptedSampler, TestServer, WITHIN};
use futures::StreamExt;
use maestro_proto::{self as pb, generate_response::Payload};
use tonic::{transport::Channel, Code};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

const TINY: &str = "maestro/musicgen-tiny";
const GENERATION: &str = "maestro.v1.GenerationService";

fn config(grace_ms: u64, deadline_ms: u64) -> maestro::config::Config {
    let mut c = model_config();
    c.server.drain_grace = Duration::from_millis(grace_ms);
    c.server.drain_deadline = Duration::from_millis(deadline_ms);
    c.generation.torch_threads = 1;
    c
}

fn request(duration_s: f64) -> pb::GenerateRequest {
    pb::GenerateRequest {
        model: TINY.into(),
        prompt: "a calm piano".into(),
        duration_s,
        seed: Some(1),
        chunk_ms: 20,
        ..Default::default()
    }
}

async fn status(health: &mut HealthClient<Channel>, service: &str) -> ServingStatus {
    let req = HealthCheckRequest { service: service.into() };
    health.check(req).await.unwrap().into_inner().status()
}

/// A generation whose header and first chunk have arrived: it is running.
async fn running(s: &mut TestServer, duration_s: f64) -> tonic::Streaming<pb::GenerateResponse> {
    let mut stream = s.generation.generate(request(duration_s)).await.unwrap().into_inner();
    assert!(matches!(stream.next().await.unwrap().unwrap().payload, Some(Payload::Header(_))));
    assert!(matches!(stream.next().await.unwrap().unwrap().payload, Some(Payload::Chunk(_))));
    stream
}

/// How the stream ended: its summary, or its status.
async fn end(mut stream: tonic::Streaming<pb::GenerateResponse>) -> Result<pb::Summary, tonic::Status> {
    while let Some(item) = stream.next().await {
        if let Some(Payload::Summary(s)) = item?.payload {
            return Ok(s);
        }
    }
    panic!("the stream ended without a summary or a status")
}

#[tokio::test]
async fn a_drain_lets_running_generations_finish_and_ends_watches_with_ok() {
    // Long enough a grace to look at the server while it is draining and still serving.
    let mut s = start_server(config(3000, 60_000)).await;
    let mut ready =
        s.health.watch(HealthCheckRequest { service: GENERATION.into() }).await.unwrap().into_inner();
    let mut alive = s.health.watch(HealthCheckRequest { service: "".into() }).await.unwrap().into_inner();
    assert_eq!(ready.next().await.unwrap().unwrap().status(), ServingStatus::Serving);
    assert_eq!(alive.next().await.unwrap().unwrap().status(), ServingStatus::Serving);
    let mut snapshots =
        s.resources.watch_snapshots(pb::WatchSnapshotsRequest::default()).await.unwrap().into_inner();
    assert!(snapshots.next().await.unwrap().is_ok());
    let generation = running(&mut s, 3.0).await;

    s.request_shutdown();
    assert_eq!(ready.next().await.unwrap().unwrap().status(), ServingStatus::NotServing);
    // Still serving during the grace: a new call is answered, on a new connection too.
    let resources = s.resources.get_status(pb::StatusRequest::default()).await;
    assert!(resources.is_ok(), "{resources:?}");
    let mut fresh = HealthClient::new(
        Channel::from_shared(format!("http://{}", s.addr)).unwrap().connect().await.unwrap(),
    );
    assert_eq!(status(&mut fresh, "").await, ServingStatus::Serving, "liveness stays SERVING while draining");
    assert_eq!(status(&mut fresh, GENERATION).await, ServingStatus::NotServing);
    assert_eq!(status(&mut fresh, "maestro.v1.ResourceService").await, ServingStatus::NotServing);

    // Stopping accepting ends every watch with OK, liveness included (it never said NOT_SERVING).
    assert!(ready.next().await.is_none(), "the readiness watch ends with OK");
    assert!(alive.next().await.is_none(), "the liveness watch ends with OK, still SERVING");
    while let Some(item) = snapshots.next().await {
        item.expect("the snapshot watch ends with OK");
    }
    let summary = end(generation).await.expect("the running generation finishes");
    assert!(summary.frames > 0);
    s.stopped().await.expect("the server returns Ok");
}

#[tokio::test]
async fn at_the_deadline_a_running_generation_ends_with_unavailable_saying_so() {
    let mut s = start_server(config(0, 300)).await;
    let generation = running(&mut s, 30.0).await;
    s.request_shutdown();
    let err = end(generation).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("drain deadline (--drain-deadline-s) passed"), "{err:?}");
    s.stopped().await.unwrap();
}

#[tokio::test]
async fn a_second_request_skips_the_waiting() {
    // An hour of grace and of deadline: only skipping them lets the server return.
    let mut s = start_server(config(3_600_000, 3_600_000)).await;
    let generation = running(&mut s, 30.0).await;
    s.request_shutdown();
    s.request_shutdown();
    let err = end(generation).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    tokio::time::timeout(WITHIN, s.stopped()).await.expect("returned without waiting").unwrap();
}

#[tokio::test]
async fn readiness_is_not_serving_while_the_queue_is_full() {
    let mut c = config(0, 5_000);
    c.generation.queue_capacity = 1;
    let mut s = start_server(c).await;
    assert_eq!(status(&mut s.health, GENERATION).await, ServingStatus::Serving);
    let generation = running(&mut s, 30.0).await;
    eventually("NOT_SERVING with the queue full", WITHIN, async || {
        (status(&mut s.health, GENERATION).await == ServingStatus::NotServing).then_some(())
    })
    .await;
    assert_eq!(status(&mut s.health, "").await, ServingStatus::Serving);
    drop(generation);
    eventually("SERVING once the queue has room", WITHIN, async || {
        (status(&mut s.health, GENERATION).await == ServingStatus::Serving).then_some(())
    })
    .await;
}

#[tokio::test]
async fn readiness_waits_for_the_warm_model_and_the_health_port_answers_alone_in_plaintext() {
    let mut c = config(0, 5_000);
    c.generation.warm_model = Some(TINY.into());
    c.server.health_listen = Some("127.0.0.1:0".parse().unwrap());
    let mut s = start_server(c).await;
    let port =
        Channel::from_shared(format!("http://{}", s.health_addr.unwrap())).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(port.clone());
    eventually("SERVING once the warm model is loaded", WITHIN, async || {
        (status(&mut health, GENERATION).await == ServingStatus::Serving).then_some(())
    })
    .await;
    let list = s.generation.list_models(pb::ListModelsRequest {}).await.unwrap().into_inner();
    let warm = list.models.iter().find(|m| m.model == TINY).unwrap();
    assert!(warm.loaded && warm.pinned, "{warm:?}");
    // The health service alone: this port is meant to refuse every other service, so UNIMPLEMENTED
    // is the behaviour under test (the same call succeeds on the main port).
    assert!(s.resources.get_status(pb::StatusRequest::default()).await.is_ok());
    let mut resources = maestro_proto::resource_service_client::ResourceServiceClient::new(port);
    let err = resources.get_status(pb::StatusRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");

    let mut c = config(0, 5_000);
    c.generation.warm_model = Some("maestro/no-such-model".into());
    let mut s = start_server(c).await;
    // The load fails at once (no such folder); were the failure taken for "warm", this would see it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status(&mut s.health, GENERATION).await, ServingStatus::NotServing);
    assert_eq!(status(&mut s.health, "").await, ServingStatus::Serving);
}

#[tokio::test]
async fn liveness_fails_while_the_sampler_is_stuck_and_recovers() {
    let mut c = config(0, 5_000);
    c.monitor.sample_interval = Duration::from_millis(100);
    let sampler = ScriptedSampler::new(20.0);
    let mut s = common::start_server_with(c, Box::new(sampler.clone())).await;
    assert_eq!(status(&mut s.health, "").await, ServingStatus::Serving);
    sampler.stall();
    eventually("liveness NOT_SERVING with the sampler stuck", WITHIN, async || {
        (status(&mut s.health, "").await == ServingStatus::NotServing).then_some(())
    })
    .await;
    sampler.resume();
    eventually("liveness SERVING again", WITHIN, async || {
        (status(&mut s.health, "").await == ServingStatus::Serving).then_some(())
    })
    .await;
}
