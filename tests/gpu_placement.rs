//! GPU placement through the real server on a host without a GPU: a scripted inventory of two cards
//! (24 GB at compute 8.0 as `cuda:0`, 80 GB at 9.0 as `cuda:1`) behind the sampler's trait, and the
//! executor seam that lets a `cuda:N` worker compute on the CPU. Everything above the seam is the
//! production code: the inventory, placement, the fit verdict, leases, the model cache, cleanup and
//! out-of-memory handling.

mod common;

use std::path::Path;

use common::{
    eventually, scripted_gpu, start_server_on_scripted_gpus, test_config, ScriptedSampler, TestServer, WITHIN,
};
use futures::StreamExt;
use maestro_proto::{self as pb, generate_response::Payload};
use tonic::Code;

const GB: u64 = 1_000_000_000;
const OOM: &str = "maestro:fault:oom";

/// The two scripted cards, each with `free0` / `free1` bytes free, on a host with 64 GB.
fn two_cards(free0: u64, free1: u64) -> ScriptedSampler {
    ScriptedSampler::with_total(64 * GB, 10.0)
        .with_gpus(vec![scripted_gpu(0, 24 * GB, free0, (8, 0)), scripted_gpu(1, 80 * GB, free1, (9, 0))])
}

/// A model root holding the tiny fixture as `a/tiny`, `b/tiny` and `c/tiny`: three models.
fn three_models() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/maestro/musicgen-tiny");
    for name in ["a", "b", "c"] {
        let dir = root.path().join(name).join("tiny");
        std::fs::create_dir_all(&dir).unwrap();
        for file in std::fs::read_dir(&fixture).unwrap() {
            let file = file.unwrap();
            std::fs::copy(file.path(), dir.join(file.file_name())).unwrap();
        }
    }
    root
}

async fn server(root: &tempfile::TempDir, sampler: ScriptedSampler, faults: bool) -> TestServer {
    let mut c = test_config();
    c.models.roots = vec![root.path().to_path_buf()];
    c.generation.fault_injection = faults;
    c.generation.torch_threads = 1;
    start_server_on_scripted_gpus(c, sampler).await
}

async fn load(s: &mut TestServer, model: &str, device: &str) -> Result<pb::ModelInfo, tonic::Status> {
    let req = pb::LoadModelRequest { model: model.into(), device: device.into(), ..Default::default() };
    s.generation.load_model(req).await.map(|r| r.into_inner())
}

fn request(model: &str, prompt: &str, duration_s: f64) -> pb::GenerateRequest {
    pb::GenerateRequest {
        model: model.into(),
        prompt: prompt.into(),
        duration_s,
        seed: Some(7),
        chunk_ms: 20,
        ..Default::default()
    }
}

/// The header's device and the summary (or the status the stream ended with).
async fn generate(
    s: &mut TestServer,
    req: pb::GenerateRequest,
) -> (String, Result<pb::Summary, tonic::Status>) {
    let mut stream = match s.generation.generate(req).await {
        Ok(r) => r.into_inner(),
        Err(status) => return (String::new(), Err(status)),
    };
    let mut device = String::new();
    while let Some(item) = stream.next().await {
        match item.map(|r| r.payload.unwrap()) {
            Ok(Payload::Header(h)) => device = h.device,
            Ok(Payload::Chunk(_)) => {}
            Ok(Payload::Summary(summary)) => return (device, Ok(summary)),
            Err(status) => return (device, Err(status)),
        }
    }
    panic!("the stream ended without a summary or a status");
}

async fn loaded_on(s: &mut TestServer) -> Vec<(String, String)> {
    let list = s.generation.list_models(pb::ListModelsRequest {}).await.unwrap().into_inner();
    list.models.into_iter().filter(|m| m.loaded).map(|m| (m.model, m.device)).collect()
}

async fn report(s: &mut TestServer) -> pb::ResourceReport {
    s.resources.get_report(pb::ReportRequest::default()).await.unwrap().into_inner()
}

async fn headroom(s: &mut TestServer, model: &str, device: &str) -> f64 {
    let req = pb::ValidateRequest {
        model: model.into(),
        batch_size: 1,
        duration_s: 1.0,
        device: device.into(),
        ..Default::default()
    };
    let v = s.resources.validate_model(req).await.unwrap().into_inner();
    let resource = format!("gpu_memory:{}", device.trim_start_matches("cuda:"));
    v.checks.iter().find(|c| c.resource == resource).unwrap_or_else(|| panic!("{resource} in {v:?}")).headroom
}

#[tokio::test]
async fn auto_places_on_the_larger_card_and_each_model_runs_on_its_own_card() {
    let root = three_models();
    let mut s = server(&root, two_cards(20 * GB, 70 * GB), false).await;

    assert_eq!(load(&mut s, "a/tiny", "auto").await.unwrap().device, "cuda:1");
    assert_eq!(load(&mut s, "b/tiny", "cuda:0").await.unwrap().device, "cuda:0");
    assert_eq!(load(&mut s, "c/tiny", "cpu").await.unwrap().device, "cpu");
    let mut on = loaded_on(&mut s).await;
    on.sort();
    let want = [("a/tiny", "cuda:1"), ("b/tiny", "cuda:0"), ("c/tiny", "cpu")];
    assert_eq!(on, want.map(|(m, d)| (m.to_string(), d.to_string())));

    for (model, device) in want {
        let (header, summary) = generate(&mut s, request(model, "a calm piano", 0.2)).await;
        let summary = summary.unwrap_or_else(|e| panic!("{model}: {e:?}"));
        assert_eq!((header.as_str(), summary.device.as_str()), (device, device), "{model}");
        // The seam computes on the CPU: libtorch's CUDA allocator has nothing to say.
        assert_eq!(summary.peak_gpu_memory_delta_bytes, None, "{model}");
    }

    // One copy per server: moving a model is an unload and a load.
    let err = load(&mut s, "a/tiny", "cuda:0").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("a/tiny is loaded on cuda:1") && err.message().contains("cuda:0"),
        "{err:?}"
    );
    assert_eq!(load(&mut s, "a/tiny", "auto").await.unwrap().device, "cuda:1", "auto takes it where it is");
    let unload = pb::UnloadModelRequest { model: "a/tiny".into(), force: false };
    s.generation.unload_model(unload).await.unwrap();
    assert_eq!(load(&mut s, "a/tiny", "cuda:0").await.unwrap().device, "cuda:0");
}

#[tokio::test]
async fn a_model_that_fits_on_neither_card_is_refused_before_loading_with_both_cards_numbers() {
    let root = three_models();
    // 50 MB free on each card: not even a CUDA context fits.
    let mut s = server(&root, two_cards(GB / 20, GB / 20), false).await;
    for err in [
        load(&mut s, "a/tiny", "auto").await.unwrap_err(),
        generate(&mut s, request("a/tiny", "a calm piano", 0.2)).await.1.unwrap_err(),
    ] {
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
        let m = err.message();
        assert!(m.contains("a/tiny does not fit on cuda:1: gpu_memory:1: requires"), "{m}");
        assert!(m.contains("nor on any other GPU: gpu_memory:0: requires"), "{m}");
        assert!(m.contains("0.05 GB free"), "{m}");
    }
    let validate = pb::ValidateRequest {
        model: "a/tiny".into(),
        batch_size: 1,
        duration_s: 1.0,
        device: "auto".into(),
        ..Default::default()
    };
    let v = s.resources.validate_model(validate).await.unwrap().into_inner();
    let lines: Vec<&str> = v.checks.iter().map(|c| c.resource.as_str()).collect();
    assert!(lines.contains(&"gpu_memory:0") && lines.contains(&"gpu_memory:1"), "{lines:?}");
    assert!(loaded_on(&mut s).await.is_empty(), "nothing was loaded");
    assert!(report(&mut s).await.leases.is_empty(), "a refusal leaks no lease");
}

#[tokio::test]
async fn a_lease_on_one_card_leaves_the_other_alone_and_work_is_leased_where_it_runs() {
    let root = three_models();
    let mut s = server(&root, two_cards(20 * GB, 70 * GB), false).await;
    let (before0, before1) =
        (headroom(&mut s, "a/tiny", "cuda:0").await, headroom(&mut s, "a/tiny", "cuda:1").await);
    let lease = pb::AllocateRequest {
        owner: "other-job".into(),
        gpu_memory_bytes: 10 * GB,
        gpu_index: Some(1),
        ttl_seconds: 60,
        ..Default::default()
    };
    s.resources.allocate(lease).await.unwrap();
    assert_eq!(headroom(&mut s, "a/tiny", "cuda:0").await, before0, "cuda:0 lost headroom to a cuda:1 lease");
    let after1 = headroom(&mut s, "a/tiny", "cuda:1").await;
    assert!((before1 - after1 - (10 * GB) as f64).abs() < 1.0, "cuda:1: {before1} → {after1}");
    let held = |r: &pb::ResourceReport, device: &str| {
        r.reservations.iter().find(|d| d.device == device).map(|d| (d.reserved_bytes, d.leases))
    };
    let r = report(&mut s).await;
    assert_eq!(
        (held(&r, "cpu"), held(&r, "cuda:0"), held(&r, "cuda:1")),
        (Some((0, 0)), Some((0, 0)), Some((10 * GB, 1)))
    );

    // A load reserves its weights and the first CUDA context on its card until a sample shows them.
    assert_eq!(load(&mut s, "a/tiny", "cuda:0").await.unwrap().device, "cuda:0");
    eventually("the load's lease is released once sampled", WITHIN, async || {
        report(&mut s).await.leases.iter().all(|l| l.kind != "model_load").then_some(())
    })
    .await;

    // A running generation holds its working set on the card it runs on, not in host memory.
    let mut long = s.generation.generate(request("a/tiny", "a calm piano", 20.0)).await.unwrap().into_inner();
    assert!(matches!(long.next().await.unwrap().unwrap().payload, Some(Payload::Header(_))));
    let r = report(&mut s).await;
    let generation = r.leases.iter().find(|l| l.kind == "generation").expect("the generation's lease");
    assert_eq!(generation.gpu_index, Some(0), "{generation:?}");
    assert!(generation.gpu_memory_bytes > 0 && generation.cpu_memory_bytes == 0, "{generation:?}");
    assert_eq!(held(&r, "cuda:0").map(|h| h.1), Some(1), "{:?}", r.reservations);
    drop(long);
    eventually("the generation's lease is released with its stream", WITHIN, async || {
        report(&mut s).await.leases.iter().all(|l| l.kind != "generation").then_some(())
    })
    .await;
}

#[tokio::test]
async fn out_of_memory_on_one_card_evicts_idle_models_there_only() {
    let root = three_models();
    let mut s = server(&root, two_cards(20 * GB, 70 * GB), true).await;
    assert_eq!(load(&mut s, "a/tiny", "cuda:0").await.unwrap().device, "cuda:0");
    assert_eq!(load(&mut s, "b/tiny", "cuda:1").await.unwrap().device, "cuda:1");
    assert_eq!(load(&mut s, "c/tiny", "cuda:1").await.unwrap().device, "cuda:1");

    let (device, end) = generate(&mut s, request("c/tiny", OOM, 0.4)).await;
    let err = end.unwrap_err();
    assert_eq!((device.as_str(), err.code()), ("cuda:1", Code::ResourceExhausted), "{err:?}");
    assert!(err.message().starts_with("out of memory while generating with c/tiny on cuda:1: "), "{err:?}");

    eventually("the idle model on cuda:1 is evicted", WITHIN, async || {
        let on = loaded_on(&mut s).await;
        (!on.iter().any(|(m, _)| m == "b/tiny")).then_some(())
    })
    .await;
    let on = loaded_on(&mut s).await;
    assert!(on.contains(&("a/tiny".to_string(), "cuda:0".to_string())), "cuda:0 was cleaned: {on:?}");
    // The worker on cuda:0 serves on.
    let (device, end) = generate(&mut s, request("a/tiny", "a calm piano", 0.2)).await;
    assert_eq!(device, "cuda:0");
    end.unwrap();
}

#[tokio::test]
async fn devices_restricts_placement_without_hiding_the_other_card() {
    let root = three_models();
    let mut c = test_config();
    c.models.roots = vec![root.path().to_path_buf()];
    c.generation.torch_threads = 1;
    let sampler = two_cards(20 * GB, 70 * GB);
    c.generation.devices = vec![scripted_gpu(0, 0, 0, (8, 0)).uuid];
    let mut s = start_server_on_scripted_gpus(c, sampler).await;

    let status = s.resources.get_status(pb::StatusRequest::default()).await.unwrap().into_inner();
    assert_eq!(status.gpu.unwrap().devices.len(), 2, "the sampler still reports both cards");
    assert_eq!(
        load(&mut s, "a/tiny", "auto").await.unwrap().device,
        "cuda:0",
        "auto stays on the selected card"
    );
    let err = load(&mut s, "b/tiny", "cuda:1").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("cuda:1 is not a GPU this server places work on (it places on: cuda:0"),
        "{err:?}"
    );
}

/// A small deterministic generator, so a failing case can be replayed from its seed.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Through the real server, over random inventories and leases: the batch `GetOptimalBatchSize`
/// advises validates on the device it advises for, and one more does not.
#[tokio::test]
async fn an_advised_batch_validates_over_random_inventories_and_leases() {
    const LARGE: &str = "facebook/musicgen-large";
    let root = three_models();
    let mut rng = XorShift(0x5eed_1234_abcd_0042);
    for case in 0..8 {
        let cards = 1 + rng.below(3) as u32;
        let gpus = (0..cards)
            .map(|i| {
                let total = (16 + rng.below(80)) * GB;
                let cc = [(7, 5), (8, 0), (9, 0)][rng.below(3) as usize];
                scripted_gpu(i, total, rng.below(total), cc)
            })
            .collect();
        let sampler = ScriptedSampler::with_total(64 * GB, rng.below(90) as f64).with_gpus(gpus);
        let mut s = server(&root, sampler, false).await;
        let leased = rng.below(u64::from(cards)) as u32;
        let lease = pb::AllocateRequest {
            owner: "property".into(),
            gpu_memory_bytes: rng.below(8 * GB),
            gpu_index: Some(leased),
            ttl_seconds: 60,
            ..Default::default()
        };
        let leased_ok = s.resources.allocate(lease).await.is_ok();
        let dtype = ["f32", "f16", "bf16"][rng.below(3) as usize];
        let duration_s = 1.0 + rng.below(29) as f64;
        let ask = pb::BatchSizeRequest {
            model: LARGE.into(),
            duration_s,
            device: "auto".into(),
            dtype: dtype.into(),
            ..Default::default()
        };
        let advice = s.resources.get_optimal_batch_size(ask).await.unwrap().into_inner();
        let validate = |batch_size: u32| pb::ValidateRequest {
            model: LARGE.into(),
            batch_size,
            duration_s,
            device: advice.device.clone(),
            dtype: dtype.into(),
            ..Default::default()
        };
        let what = format!("case {case} (lease on {leased}: {leased_ok}): {advice:?}");
        if advice.batch_size > 0 {
            let v = s.resources.validate_model(validate(advice.batch_size)).await.unwrap().into_inner();
            assert!(v.fits, "the advised batch does not validate, {what}: {}", v.message);
        }
        if advice.batch_size < 64 {
            let v = s.resources.validate_model(validate(advice.batch_size + 1)).await.unwrap().into_inner();
            assert!(!v.fits, "one more fits too, {what}");
        }
        s.shutdown().await.unwrap();
    }
}

/// int8 weights run on the CPU kernels only: `auto` places them on the CPU of a GPU host, and a GPU
/// asked for by name is refused before anything loads, naming the device and the dtype.
#[tokio::test]
async fn int8_goes_to_the_cpu_on_a_gpu_host() {
    let root = three_models();
    let mut s = server(&root, two_cards(20 * GB, 70 * GB), false).await;
    let int8 = |model: &str, device: &str| pb::LoadModelRequest {
        model: model.into(),
        device: device.into(),
        dtype: "int8".into(),
        ..Default::default()
    };
    let loaded = s.generation.load_model(int8("a/tiny", "auto")).await.unwrap().into_inner();
    assert_eq!((loaded.device.as_str(), loaded.dtype.as_str()), ("cpu", "int8"));
    let err = s.generation.load_model(int8("b/tiny", "cuda:1")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("cuda:1 cannot run int8 weights"), "{err:?}");
    assert_eq!(loaded_on(&mut s).await, vec![("a/tiny".to_string(), "cpu".to_string())]);
}
