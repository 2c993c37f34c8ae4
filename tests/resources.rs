//! The resource manager through the real gRPC server: validation verdicts, leases, batch advice and
//! every INVALID_ARGUMENT case, on a scripted machine (1 GB of host memory, no GPU).

mod common;

use common::{eventually, start_server_with, test_config, ScriptedSampler, WITHIN};
use maestro::resources::requirements::{Registry, GB, HOST_RUNTIME_BYTES};
use maestro_proto as pb;
use tonic::Code;

async fn server() -> common::TestServer {
    start_server_with(test_config(), Box::new(ScriptedSampler::new(20.0))).await
}

fn validate(model: &str, batch: u32, duration: f64, device: &str) -> pb::ValidateRequest {
    pb::ValidateRequest {
        model: model.into(),
        batch_size: batch,
        duration_s: duration,
        device: device.into(),
        dtype: String::new(),
        audio_prompt_s: 0.0,
    }
}

fn assert_invalid(err: tonic::Status, field: &str) {
    assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
    assert!(err.message().contains(field), "message {:?} does not name {field}", err.message());
}

#[tokio::test]
async fn validation_gives_the_numbers_behind_the_verdict() {
    let mut s = server().await;
    let v = s
        .resources
        .validate_model(validate("facebook/musicgen-small", 1, 10.0, "auto"))
        .await
        .unwrap()
        .into_inner();
    assert!(!v.fits, "musicgen-small cannot fit in 1 GB");
    assert_eq!(v.device, "cpu", "no GPU: auto resolves to the CPU");
    let r = v.requirements.unwrap();
    assert_eq!(r.source(), pb::RequirementSource::Table);
    let host = v.checks.iter().find(|c| c.resource == "host_memory").unwrap();
    assert!(!host.ok && host.required > 1e9 && host.headroom < 0.0);
    assert_eq!(host.available, 800_000_000.0, "80 % of the scripted 1 GB is free");
    assert!((v.safety_margin - 0.2).abs() < 1e-9);
    assert!(v.message.contains("does not fit") && v.message.contains("GB"), "{}", v.message);
    let stereo = [
        "facebook/musicgen-stereo-small",
        "facebook/musicgen-stereo-medium",
        "facebook/musicgen-stereo-large",
    ];
    for model in ["facebook/musicgen-medium", "facebook/musicgen-large"].into_iter().chain(stereo) {
        let v = s.resources.validate_model(validate(model, 1, 5.0, "cpu")).await.unwrap().into_inner();
        assert_eq!(v.requirements.unwrap().source(), pb::RequirementSource::Table);
    }
}

#[tokio::test]
async fn validation_refuses_bad_fields_naming_them() {
    let mut s = server().await;
    let cases: Vec<(pb::ValidateRequest, &str, Code)> = vec![
        (validate("", 1, 10.0, "auto"), "model", Code::InvalidArgument),
        (validate("../etc/passwd", 1, 10.0, "auto"), "model", Code::InvalidArgument),
        (validate("/abs/path", 1, 10.0, "auto"), "model", Code::InvalidArgument),
        (validate("a\\b", 1, 10.0, "auto"), "model", Code::InvalidArgument),
        (validate("a\0b", 1, 10.0, "auto"), "model", Code::InvalidArgument),
        (validate("nobody/unknown-model", 1, 10.0, "auto"), "nobody/unknown-model", Code::NotFound),
        (validate("facebook/musicgen-small", 0, 10.0, "auto"), "batch_size", Code::InvalidArgument),
        (validate("facebook/musicgen-small", 65, 10.0, "auto"), "batch_size", Code::InvalidArgument),
        (validate("facebook/musicgen-small", 1, 0.0, "auto"), "duration_s", Code::InvalidArgument),
        (validate("facebook/musicgen-small", 1, -1.0, "auto"), "duration_s", Code::InvalidArgument),
        (validate("facebook/musicgen-small", 1, f64::NAN, "auto"), "duration_s", Code::InvalidArgument),
        (validate("facebook/musicgen-small", 1, f64::INFINITY, "auto"), "duration_s", Code::InvalidArgument),
        (validate("facebook/musicgen-small", 1, 121.0, "auto"), "duration_s", Code::InvalidArgument),
        (validate("facebook/musicgen-small", 1, 10.0, "gpu"), "device", Code::InvalidArgument),
        (validate("facebook/musicgen-small", 1, 10.0, "cuda:x"), "device", Code::InvalidArgument),
        (validate("facebook/musicgen-small", 1, 10.0, "cuda:0"), "device", Code::InvalidArgument),
        (
            pb::ValidateRequest {
                dtype: "f64".into(),
                ..validate("facebook/musicgen-small", 1, 10.0, "cpu")
            },
            "dtype",
            Code::InvalidArgument,
        ),
    ];
    for (req, needle, code) in cases {
        let err = s.resources.validate_model(req.clone()).await.unwrap_err();
        assert_eq!(err.code(), code, "{req:?}: {err:?}");
        assert!(err.message().contains(needle), "{req:?}: {:?} lacks {needle}", err.message());
    }
}

fn allocate(owner: &str, cpu: u64, ttl: u32) -> pb::AllocateRequest {
    pb::AllocateRequest {
        owner: owner.into(),
        cpu_memory_bytes: cpu,
        gpu_memory_bytes: 0,
        gpu_index: None,
        ttl_seconds: ttl,
    }
}

#[tokio::test]
async fn leases_reserve_refuse_and_release_once() {
    let mut s = server().await;
    // 800 MB free: two 300 MB leases fit, a third does not.
    let a = s.resources.allocate(allocate("job-a", 300_000_000, 60)).await.unwrap().into_inner();
    let b = s.resources.allocate(allocate("job-b", 300_000_000, 60)).await.unwrap().into_inner();
    assert_ne!(a.lease_id, b.lease_id);
    assert_eq!((a.owner.as_str(), a.kind.as_str(), a.cpu_memory_bytes), ("job-a", "client", 300_000_000));
    assert!(a.expires_at.unwrap().seconds > a.created_at.unwrap().seconds);
    let err = s.resources.allocate(allocate("job-c", 300_000_000, 60)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("300000000") || err.message().contains("0.30"), "{}", err.message());

    let released =
        s.resources.release(pb::ReleaseRequest { lease_id: a.lease_id.clone() }).await.unwrap().into_inner();
    assert_eq!(released.lease.unwrap().lease_id, a.lease_id);
    let again = s.resources.release(pb::ReleaseRequest { lease_id: a.lease_id.clone() }).await.unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    let unknown =
        s.resources.release(pb::ReleaseRequest { lease_id: "lease-nope".into() }).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    // The freed bytes can be reserved again.
    s.resources.allocate(allocate("job-c", 300_000_000, 60)).await.unwrap();
}

// Verdicts read the state the manager publishes; every acknowledged change must be in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verdict_sees_every_acknowledged_lease() {
    let mut s = server().await;
    let reserved =
        |v: pb::ValidationResult| v.checks.iter().find(|c| c.resource == "host_memory").unwrap().reserved;
    let question = || validate("facebook/musicgen-small", 1, 10.0, "cpu");
    for round in 0..20u64 {
        let bytes = 100_000_000 + round;
        let lease = s.resources.allocate(allocate("job", bytes, 60)).await.unwrap().into_inner();
        let v = s.resources.validate_model(question()).await.unwrap().into_inner();
        assert_eq!(reserved(v), bytes as f64, "round {round}: the lease just granted is reserved");
        s.resources.release(pb::ReleaseRequest { lease_id: lease.lease_id }).await.unwrap();
        let v = s.resources.validate_model(question()).await.unwrap().into_inner();
        assert_eq!(reserved(v), 0.0, "round {round}: the lease just released is gone");
    }
}

#[tokio::test]
async fn allocate_and_release_refuse_bad_fields() {
    let mut s = server().await;
    let cases: Vec<(pb::AllocateRequest, &str)> = vec![
        (allocate("", 1000, 60), "owner"),
        (allocate("   ", 1000, 60), "owner"),
        (allocate(&"x".repeat(129), 1000, 60), "owner"),
        (allocate("a\nb", 1000, 60), "owner"),
        (allocate("job", 0, 60), "cpu_memory_bytes"),
        (allocate("job", 1000, 0), "ttl_seconds"),
        (allocate("job", 1000, u32::MAX), "ttl_seconds"),
        (pb::AllocateRequest { gpu_memory_bytes: 1000, ..allocate("job", 0, 60) }, "gpu_index"),
        (
            pb::AllocateRequest { gpu_memory_bytes: 1_000_000, gpu_index: Some(7), ..allocate("job", 0, 60) },
            "7",
        ),
        (allocate("job", 999_999, 60), "at least 1000000 (--min-lease-bytes), got 999999"),
    ];
    for (req, field) in cases {
        let err = s.resources.allocate(req.clone()).await.unwrap_err();
        assert_invalid(err, field);
    }
    let huge = s.resources.allocate(allocate("job", u64::MAX, 60)).await.unwrap_err();
    assert_eq!(huge.code(), Code::ResourceExhausted);
    for id in ["", "a\0b"] {
        let err = s.resources.release(pb::ReleaseRequest { lease_id: id.into() }).await.unwrap_err();
        assert_invalid(err, "lease_id");
    }
}

#[tokio::test]
async fn leases_expire_on_their_own() {
    let mut s = server().await;
    s.resources.allocate(allocate("short", 700_000_000, 1)).await.unwrap();
    // The first lease holds most of the memory until it expires (ttl 1 s, checked every second).
    let granted = eventually("the expired lease freeing its memory", WITHIN, async || {
        match s.resources.allocate(allocate("next", 700_000_000, 60)).await {
            Ok(lease) => Some(lease.into_inner()),
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                None
            }
        }
    })
    .await;
    assert_eq!(granted.owner, "next");
}

#[tokio::test]
async fn batch_advice_shows_its_arithmetic() {
    let mut s = server().await;
    let req = pb::BatchSizeRequest {
        model: "facebook/musicgen-small".into(),
        gpu_memory_bytes: 40_000_000_000,
        duration_s: 10.0,
        device: "cpu".into(),
        dtype: String::new(),
    };
    let a = s.resources.get_optimal_batch_size(req.clone()).await.unwrap().into_inner();
    assert_eq!(a.memory_bytes, 40_000_000_000);
    // The CPU holds the weights and the host runtime whatever the batch.
    assert_eq!(a.usable_bytes, (40e9 * 0.8) as u64 - a.weights_bytes - HOST_RUNTIME_BYTES);
    assert!(a.per_sample_bytes > 0 && a.cfg_factor == 2);
    let expected = (a.usable_bytes / a.per_sample_bytes).min(64) as u32;
    assert_eq!(a.batch_size, expected);
    assert!(a.batch_size >= 1 && !a.reason.is_empty());
    // With only what is free now (800 MB), not even one sample fits.
    let now = s
        .resources
        .get_optimal_batch_size(pb::BatchSizeRequest { gpu_memory_bytes: 0, ..req.clone() })
        .await
        .unwrap();
    assert_eq!(now.into_inner().batch_size, 0);
    let err = s
        .resources
        .get_optimal_batch_size(pb::BatchSizeRequest { duration_s: f64::NAN, ..req })
        .await
        .unwrap_err();
    assert_invalid(err, "duration_s");
}

/// A roomy machine: 64 GB, 20 % used, no GPU.
async fn roomy() -> common::TestServer {
    start_server_with(test_config(), Box::new(ScriptedSampler::with_total(64 * GB, 20.0))).await
}

#[tokio::test]
async fn musicgen_large_on_the_cpu_counts_its_weights_once() {
    let mut s = roomy().await;
    let large = "facebook/musicgen-large";
    let v = s.resources.validate_model(validate(large, 1, 10.0, "cpu")).await.unwrap().into_inner();
    let host = v.checks.iter().find(|c| c.resource == "host_memory").unwrap();
    let entry = Registry::default().table(large).cloned().unwrap();
    let per_sample = v.requirements.unwrap().per_sample_bytes;
    assert_eq!(per_sample, entry.requirements(Default::default(), 10.0).per_sample_bytes);
    // The table's host figure (weights and runtime) plus one sample's working set: 16.17 GB, not 27.50.
    assert_eq!(host.required, (12 * GB + per_sample) as f64);
    assert!(host.message.contains("requires 16.17 GB"), "{}", host.message);
    assert!(v.fits, "{}", v.message);
}

#[tokio::test]
async fn advised_batches_validate_with_leases_held() {
    let mut s = roomy().await;
    let lease = s.resources.allocate(allocate("job", 10 * GB, 60)).await.unwrap().into_inner();
    for (model, dtype) in [("facebook/musicgen-large", ""), ("facebook/musicgen-small", "f16")] {
        let req = pb::BatchSizeRequest {
            model: model.into(),
            gpu_memory_bytes: 0,
            duration_s: 10.0,
            device: "cpu".into(),
            dtype: dtype.into(),
        };
        let a = s.resources.get_optimal_batch_size(req).await.unwrap().into_inner();
        assert!(a.batch_size >= 1 && a.batch_size < 64, "{model}: {a:?}");
        let ask = |batch| pb::ValidateRequest { dtype: dtype.into(), ..validate(model, batch, 10.0, "cpu") };
        let fits = s.resources.validate_model(ask(a.batch_size)).await.unwrap().into_inner();
        assert!(fits.fits, "{model}: advised {} does not validate: {}", a.batch_size, fits.message);
        let more = s.resources.validate_model(ask(a.batch_size + 1)).await.unwrap().into_inner();
        assert!(!more.fits, "{model}: {} fits too: {}", a.batch_size + 1, a.reason);
        let reserved = more.checks.iter().find(|c| c.resource == "host_memory").unwrap().reserved;
        assert_eq!(reserved, (10 * GB) as f64, "the lease counts");
    }
    s.resources.release(pb::ReleaseRequest { lease_id: lease.lease_id }).await.unwrap();
}
