//! Fault injection through the real server: a worker panic, libtorch really running out of memory (an
//! allocation of 256 PiB inside a decoding step or before a load) and a corrupt checkpoint each fail
//! one request cleanly; the server stays up, leaks nothing and serves the next request. `tests/oom.rs`
//! covers out-of-memory in batches.

mod common;

use common::{eventually, model_config, start_server, TestServer, WITHIN};
use futures::StreamExt;
use maestro_proto::{self as pb, generate_response::Payload};
use tonic::Code;

const TINY: &str = "maestro/musicgen-tiny";

fn config() -> maestro::config::Config {
    let mut c = model_config();
    c.generation.fault_injection = true;
    c
}

fn request(prompt: &str) -> pb::GenerateRequest {
    pb::GenerateRequest {
        model: TINY.into(),
        prompt: prompt.into(),
        duration_s: 0.4,
        seed: Some(1),
        ..Default::default()
    }
}

/// Runs a generation to its end: the summary, or the status it failed with.
async fn run(s: &mut TestServer, req: pb::GenerateRequest) -> Result<pb::Summary, tonic::Status> {
    let mut stream = s.generation.generate(req).await?.into_inner();
    while let Some(item) = stream.next().await {
        if let Payload::Summary(summary) = item?.payload.unwrap() {
            return Ok(summary);
        }
    }
    panic!("stream ended without a summary or an error")
}

/// Waits until no lease is held; panics naming `what` at the deadline.
async fn leases_drain(s: &mut TestServer, what: &str) {
    eventually(what, WITHIN, async || {
        let report = s.resources.get_report(pb::ReportRequest {}).await.unwrap().into_inner();
        report.leases.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_worker_panic_fails_one_request_and_the_next_succeeds() {
    let mut s = start_server(config()).await;
    let err = run(&mut s, request("maestro:fault:panic")).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    leases_drain(&mut s, "the failed request releasing its lease").await;
    run(&mut s, request("a calm piano")).await.expect("the worker serves the next request");
}

#[tokio::test]
async fn out_of_memory_is_resource_exhausted_and_triggers_an_emergency_cleanup() {
    let mut s = start_server(config()).await;
    let err = run(&mut s, request("maestro:fault:oom")).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let want = format!("out of memory while generating with {TINY} on ");
    assert!(
        err.message().starts_with(&want) && err.message().contains("libtorch asked for"),
        "{}",
        err.message()
    );
    // The emergency cleanup evicts the idle model.
    eventually("the emergency cleanup evicting the idle model", WITHIN, async || {
        let models = s.generation.list_models(pb::ListModelsRequest {}).await.unwrap().into_inner().models;
        models.iter().any(|m| m.model == TINY && !m.loaded).then_some(())
    })
    .await;
    leases_drain(&mut s, "the failed request releasing its lease").await;
    run(&mut s, request("a calm piano")).await.expect("the server serves the next request");
}

#[tokio::test]
async fn a_corrupt_checkpoint_is_a_clear_error_and_nothing_is_cached() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("broken/tiny");
    std::fs::create_dir_all(&dir).unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/maestro/musicgen-tiny");
    for f in ["config.json", "generation_config.json", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let weights = std::fs::read(src.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &weights[..weights.len() / 2]).unwrap();
    let mut c = config();
    c.models.roots = vec![root.path().to_path_buf(), src.parent().unwrap().parent().unwrap().to_path_buf()];
    let mut s = start_server(c).await;

    let load =
        pb::LoadModelRequest { model: "broken/tiny".into(), device: "cpu".into(), ..Default::default() };
    let err = s.generation.load_model(load).await.unwrap_err();
    assert!(matches!(err.code(), Code::FailedPrecondition | Code::InvalidArgument), "{err:?}");
    assert!(err.message().contains("broken/tiny"), "{}", err.message());
    let models = s.generation.list_models(pb::ListModelsRequest {}).await.unwrap().into_inner().models;
    assert!(models.iter().all(|m| !(m.model == "broken/tiny" && m.loaded)), "nothing cached");
    leases_drain(&mut s, "the failed load releasing its lease").await;
    run(&mut s, request("a calm piano")).await.expect("the server serves the next request");
}

#[tokio::test]
async fn out_of_memory_during_a_load_is_resource_exhausted_and_nothing_is_cached() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("chaos/fault-oom-on-load");
    std::fs::create_dir_all(&dir).unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/maestro/musicgen-tiny");
    for f in ["config.json", "generation_config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let mut c = config();
    c.models.roots = vec![root.path().to_path_buf(), src.parent().unwrap().parent().unwrap().to_path_buf()];
    let mut s = start_server(c).await;
    let load = pb::LoadModelRequest {
        model: "chaos/fault-oom-on-load".into(),
        device: "cpu".into(),
        ..Default::default()
    };
    let err = s.generation.load_model(load).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().starts_with("out of memory while loading chaos/fault-oom-on-load on ")
            && err.message().contains("288230376151711744 bytes"),
        "{}",
        err.message()
    );
    let models = s.generation.list_models(pb::ListModelsRequest {}).await.unwrap().into_inner().models;
    assert!(models.iter().all(|m| !m.loaded), "nothing cached");
    leases_drain(&mut s, "the failed load releasing its lease").await;
    run(&mut s, request("a calm piano")).await.expect("the server serves the next request");
}
