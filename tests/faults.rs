//! Fault injection through the real server: a worker panic, libtorch really running out of memory (an
//! allocation of 256 PiB inside a decoding step or before a load) and a corrupt checkpoint each fail
//! one request cleanly; the server stays up, leaks nothing and serves the next request. A load its
//! client abandons (held by the load-delay fault) ends recorded and is loaded once however many
//! requests race it; an unload refused by a full worker queue (held by the stall fault) leaves the
//! model listed and usable. `tests/oom.rs` covers out-of-memory in batches.

mod common;

use std::{path::Path, time::Duration};

use common::{eventually, model_config, scrape, start_server, TestServer, WITHIN};
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

/// Without `--fault-injection` a prompt that names a fault is a prompt like any other.
#[tokio::test]
async fn fault_prompts_are_plain_prompts_when_fault_injection_is_off() {
    let mut s = start_server(model_config()).await;
    for prompt in ["maestro:fault:panic", "maestro:fault:oom", "maestro:fault:stall"] {
        run(&mut s, request(prompt)).await.unwrap_or_else(|e| panic!("{prompt}: {e:?}"));
    }
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
    copy_tiny(root.path(), "chaos/fault-oom-on-load");
    let mut c = config();
    c.models.roots.insert(0, root.path().to_path_buf());
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

/// The tiny model copied under `root` as `id`.
fn copy_tiny(root: &Path, id: &str) {
    let dir = root.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(TINY);
    for f in ["config.json", "generation_config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
}

/// What `maestro_model_loads_total` counts for `model`.
async fn loads_of(s: &TestServer, model: &str) -> f64 {
    let label = format!("model=\"{model}\"");
    let text = scrape(s.metrics_addr).await;
    text.lines()
        .filter(|l| l.starts_with("maestro_model_loads_total") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn load_request(model: &str) -> pb::LoadModelRequest {
    pb::LoadModelRequest { model: model.into(), device: "cpu".into(), ..Default::default() }
}

/// A server whose loads are held 1.5 s after the weights are resident, serving the tiny model as
/// `model` too (metrics are process-wide: each test counts the loads of its own id).
async fn slow_loading_server(root: &Path, model: &str) -> TestServer {
    copy_tiny(root, model);
    let mut c = config();
    c.models.roots.insert(0, root.to_path_buf());
    c.generation.fault_load_delay = Duration::from_millis(1500);
    start_server(c).await
}

/// Starts a `LoadModel` of `model` and gives up on it (the call is dropped, its stream reset) while
/// the load is held.
async fn abandon_a_load(s: &TestServer, model: &str) {
    let mut client = s.generation.clone();
    let call = client.load_model(load_request(model));
    assert!(tokio::time::timeout(Duration::from_millis(300), call).await.is_err(), "the load was held");
}

#[tokio::test]
async fn a_load_whose_client_gives_up_ends_recorded_with_its_bytes() {
    const MODEL: &str = "abandoned/recorded";
    let root = tempfile::tempdir().unwrap();
    let mut s = slow_loading_server(root.path(), MODEL).await;
    abandon_a_load(&s, MODEL).await;
    let entry = eventually("the abandoned load recorded", WITHIN, async || {
        let report = s.resources.get_report(pb::ReportRequest {}).await.unwrap().into_inner();
        report.cached_models.into_iter().find(|m| m.model == MODEL)
    })
    .await;
    assert!(entry.estimated_bytes > 0 && !entry.unloading, "{entry:?}");
    let models = s.generation.list_models(pb::ListModelsRequest {}).await.unwrap().into_inner().models;
    assert!(models.iter().any(|m| m.model == MODEL && m.loaded), "{models:?}");
    assert_eq!(loads_of(&s, MODEL).await, 1.0);
    let generate = pb::GenerateRequest { model: MODEL.into(), ..request("a calm piano") };
    run(&mut s, generate).await.expect("the recorded model serves");
    leases_drain(&mut s, "the load lease once a sample shows the weights").await;
}

#[tokio::test]
async fn requests_racing_an_abandoned_load_load_the_model_once() {
    const MODEL: &str = "abandoned/raced";
    let root = tempfile::tempdir().unwrap();
    let s = slow_loading_server(root.path(), MODEL).await;
    abandon_a_load(&s, MODEL).await;
    let (mut a, mut b) = (s.generation.clone(), s.generation.clone());
    let (a, b) = tokio::join!(a.load_model(load_request(MODEL)), b.load_model(load_request(MODEL)));
    assert!(a.unwrap().into_inner().loaded && b.unwrap().into_inner().loaded);
    assert_eq!(loads_of(&s, MODEL).await, 1.0, "three requests, one load");
}

/// One worker with a queue of one generation plus the control jobs' room: a stalled generation holds
/// the worker, the unloads of `CONTROL_JOBS + 1` (9) other models fill its queue, and one more is
/// refused.
#[tokio::test]
async fn an_unload_refused_by_a_full_worker_queue_leaves_the_model_listed_and_usable() {
    const QUEUED: usize = 9;
    let root = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..=QUEUED).map(|i| format!("queue/m{i}")).collect();
    ids.iter().for_each(|id| copy_tiny(root.path(), id));
    let mut c = config();
    c.models.roots.insert(0, root.path().to_path_buf());
    c.generation.queue_capacity = 1;
    let mut s = start_server(c).await;
    for id in &ids {
        s.generation.load_model(load_request(id)).await.unwrap();
    }
    let mut stall = s.generation.generate(request("maestro:fault:stall")).await.unwrap().into_inner();
    eventually("the worker held by the stall", WITHIN, async || {
        let r = s.resources.get_report(pb::ReportRequest {}).await.unwrap().into_inner();
        r.queue.iter().any(|q| q.running).then_some(())
    })
    .await;
    let unloads: Vec<_> = ids[..QUEUED]
        .iter()
        .map(|id| {
            let mut client = s.generation.clone();
            let request = pb::UnloadModelRequest { model: id.clone(), force: false };
            tokio::spawn(async move { client.unload_model(request).await })
        })
        .collect();
    eventually("the queue filled with unloads", WITHIN, async || {
        let r = s.resources.get_report(pb::ReportRequest {}).await.unwrap().into_inner();
        (r.cached_models.iter().filter(|m| m.unloading).count() == QUEUED).then_some(())
    })
    .await;
    let last = ids[QUEUED].clone();
    let refused = s.generation.unload_model(pb::UnloadModelRequest { model: last.clone(), force: false });
    let err = refused.await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("jobs queued, its limit (--queue-capacity 1 + 8)"), "{}", err.message());
    let report = s.resources.get_report(pb::ReportRequest {}).await.unwrap().into_inner();
    let entry = report.cached_models.iter().find(|m| m.model == last).expect("still listed");
    assert!(!entry.unloading, "{entry:?}");
    assert!(stall.message().await.unwrap().is_some(), "the stalled generation's header");
    drop(stall);
    for unload in unloads {
        assert!(unload.await.unwrap().unwrap().into_inner().unloaded);
    }
    run(&mut s, pb::GenerateRequest { model: last.clone(), ..request("a calm piano") })
        .await
        .expect("the model whose unload was refused still serves");
    s.generation.unload_model(pb::UnloadModelRequest { model: last, force: false }).await.unwrap();
}

/// `LoadModel` has its own deadline (`--load-timeout-s`): a load held past it ends DEADLINE_EXCEEDED
/// naming the flag, and the load goes on to be recorded and served.
#[tokio::test]
async fn a_load_past_its_deadline_is_cut_and_goes_on() {
    const MODEL: &str = "deadline/cut";
    let root = tempfile::tempdir().unwrap();
    copy_tiny(root.path(), MODEL);
    let mut c = config();
    c.models.roots.insert(0, root.path().to_path_buf());
    c.generation.fault_load_delay = Duration::from_millis(3000);
    c.server.load_timeout = Duration::from_secs(1);
    let mut s = start_server(c).await;
    let err = s.generation.load_model(load_request(MODEL)).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        err.message().contains("--load-timeout-s") && err.message().contains("the load goes on"),
        "{err:?}"
    );
    eventually("the cut load recorded", WITHIN, async || {
        let models = s.generation.list_models(pb::ListModelsRequest {}).await.unwrap().into_inner().models;
        models.iter().any(|m| m.model == MODEL && m.loaded).then_some(())
    })
    .await;
    assert_eq!(loads_of(&s, MODEL).await, 1.0);
}

/// A worker that holds work without progress past `--worker-stuck-after-s` (the stall fault holds it
/// in its first step) fails liveness, and liveness comes back once it moves again.
#[tokio::test]
async fn a_stuck_worker_fails_liveness_until_it_moves() {
    use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};
    let mut c = config();
    c.generation.worker_stuck_after = Duration::from_secs(1);
    let mut s = start_server(c).await;
    let mut health = s.health.clone();
    let mut liveness = async move || {
        let answer = health.check(HealthCheckRequest { service: String::new() }).await.unwrap();
        answer.into_inner().status()
    };
    assert_eq!(liveness().await, ServingStatus::Serving);
    let mut stall = s.generation.generate(request("maestro:fault:stall")).await.unwrap().into_inner();
    assert!(stall.message().await.unwrap().is_some(), "the stalled generation's header");
    eventually("liveness failing on the stuck worker", WITHIN, async || {
        (liveness().await == ServingStatus::NotServing).then_some(())
    })
    .await;
    drop(stall);
    eventually("liveness back once the worker moves", WITHIN, async || {
        (liveness().await == ServingStatus::Serving).then_some(())
    })
    .await;
    run(&mut s, request("a calm piano")).await.expect("the worker serves again");
}
