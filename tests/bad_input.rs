//! One table of bad input across every RPC, through the real server with tokens on. Each case asserts
//! the exact status code and that the message names the field. After the table: the server is
//! SERVING, the lease ledger is empty and no model was loaded.

mod common;

use common::{start_server, test_config, TestServer};
use futures::StreamExt;
use maestro_proto as pb;
use tonic::{Code, Request, Status};
use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};

const TOKEN: &str = "table-token";

fn auth<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    r
}

fn validate(model: &str, batch: u32, duration: f64, device: &str, dtype: &str) -> pb::ValidateRequest {
    pb::ValidateRequest {
        model: model.into(),
        batch_size: batch,
        duration_s: duration,
        device: device.into(),
        dtype: dtype.into(),
        ..Default::default()
    }
}

fn alloc(owner: &str, cpu: u64, gpu: u64, index: Option<u32>, ttl: u32) -> pb::AllocateRequest {
    pb::AllocateRequest {
        owner: owner.into(),
        cpu_memory_bytes: cpu,
        gpu_memory_bytes: gpu,
        gpu_index: index,
        ttl_seconds: ttl,
    }
}

fn gen(f: impl FnOnce(&mut pb::GenerateRequest)) -> pb::GenerateRequest {
    let mut r = pb::GenerateRequest {
        model: "maestro/musicgen-tiny".into(),
        prompt: "x".into(),
        duration_s: 1.0,
        ..Default::default()
    };
    f(&mut r);
    r
}

fn pcm_s16(data: Vec<u8>, sample_rate: u32, channels: u32) -> pb::AudioInput {
    pb::AudioInput { data, encoding: pb::AudioEncoding::PcmS16le as i32, sample_rate, channels }
}

enum Call {
    Validate(pb::ValidateRequest),
    Allocate(pb::AllocateRequest, bool),
    Release(pb::ReleaseRequest),
    History(pb::HistoryRequest),
    Alerts(pb::ListAlertsRequest),
    WatchSnapshots(pb::WatchSnapshotsRequest),
    WatchAlerts(pb::WatchAlertsRequest),
    BatchSize(pb::BatchSizeRequest),
    Generate(pb::GenerateRequest, bool),
    Load(pb::LoadModelRequest),
    Unload(pb::UnloadModelRequest),
}

async fn first_status<T>(r: Result<tonic::Response<tonic::Streaming<T>>, Status>) -> Status {
    match r {
        Err(e) => e,
        Ok(s) => s.into_inner().next().await.expect("an item").err().expect("an error, not data"),
    }
}

async fn call(s: &mut TestServer, c: Call) -> Status {
    match c {
        Call::Validate(r) => s.resources.validate_model(r).await.unwrap_err(),
        Call::Allocate(r, with_token) => {
            let req = if with_token { auth(r) } else { Request::new(r) };
            s.resources.allocate(req).await.unwrap_err()
        }
        Call::Release(r) => s.resources.release(auth(r)).await.unwrap_err(),
        Call::History(r) => s.resources.get_history(r).await.unwrap_err(),
        Call::Alerts(r) => s.resources.list_alerts(r).await.unwrap_err(),
        Call::WatchSnapshots(r) => first_status(s.resources.watch_snapshots(r).await).await,
        Call::WatchAlerts(r) => first_status(s.resources.watch_alerts(r).await).await,
        Call::BatchSize(r) => s.resources.get_optimal_batch_size(r).await.unwrap_err(),
        Call::Generate(r, with_token) => {
            let req = if with_token { auth(r) } else { Request::new(r) };
            first_status(s.generation.generate(req).await).await
        }
        Call::Load(r) => s.generation.load_model(auth(r)).await.unwrap_err(),
        Call::Unload(r) => s.generation.unload_model(auth(r)).await.unwrap_err(),
    }
}

fn cases(escape: &str) -> Vec<(&'static str, Call, Code, String)> {
    use Call::*;
    use Code::{InvalidArgument as Bad, NotFound, ResourceExhausted, Unauthenticated};
    let small = "facebook/musicgen-small";
    let long = "m".repeat(300);
    vec![
        ("empty model", Validate(validate("", 1, 10.0, "auto", "")), Bad, "model".into()),
        ("dot-dot model", Validate(validate("../etc", 1, 10.0, "auto", "")), Bad, "model".into()),
        ("absolute model", Validate(validate("/etc/passwd", 1, 10.0, "auto", "")), Bad, "model".into()),
        ("backslash model", Validate(validate("a\\b", 1, 10.0, "auto", "")), Bad, "model".into()),
        ("NUL model", Validate(validate("a\0b", 1, 10.0, "auto", "")), Bad, "model".into()),
        ("overlong model", Validate(validate(&long, 1, 10.0, "auto", "")), Bad, "model".into()),
        ("symlink escape", Validate(validate(escape, 1, 10.0, "auto", "")), Bad, "model".into()),
        ("unknown model", Validate(validate("no/such", 1, 10.0, "auto", "")), NotFound, "no/such".into()),
        ("zero batch", Validate(validate(small, 0, 10.0, "auto", "")), Bad, "batch_size".into()),
        ("huge batch", Validate(validate(small, u32::MAX, 10.0, "auto", "")), Bad, "batch_size".into()),
        ("NaN duration", Validate(validate(small, 1, f64::NAN, "auto", "")), Bad, "duration_s".into()),
        (
            "infinite duration",
            Validate(validate(small, 1, f64::INFINITY, "auto", "")),
            Bad,
            "duration_s".into(),
        ),
        ("negative duration", Validate(validate(small, 1, -3.0, "auto", "")), Bad, "duration_s".into()),
        (
            "too long duration",
            Validate(validate(small, 1, 121.0, "auto", "")),
            Bad,
            "<= 120 (--max-duration-s)".into(),
        ),
        ("bad device", Validate(validate(small, 1, 10.0, "tpu", "")), Bad, "device".into()),
        (
            "NaN audio prompt",
            Validate(pb::ValidateRequest {
                audio_prompt_s: f64::NAN,
                ..validate(small, 1, 10.0, "auto", "")
            }),
            Bad,
            "audio_prompt_s: must be finite and within [0, 600], got NaN".into(),
        ),
        (
            "too long audio prompt",
            Validate(pb::ValidateRequest { audio_prompt_s: 601.0, ..validate(small, 1, 10.0, "auto", "") }),
            Bad,
            "audio_prompt_s: must be finite and within [0, 600], got 601".into(),
        ),
        ("absent GPU", Validate(validate(small, 1, 10.0, "cuda:3", "")), Bad, "device".into()),
        ("bad dtype", Validate(validate(small, 1, 10.0, "auto", "int2")), Bad, "dtype".into()),
        ("empty owner", Allocate(alloc("", 1, 0, None, 60), true), Bad, "owner".into()),
        ("overlong owner", Allocate(alloc(&"o".repeat(200), 1, 0, None, 60), true), Bad, "owner".into()),
        ("zero bytes", Allocate(alloc("o", 0, 0, None, 60), true), Bad, "cpu_memory_bytes".into()),
        ("zero TTL", Allocate(alloc("o", 1, 0, None, 0), true), Bad, "ttl_seconds".into()),
        ("huge TTL", Allocate(alloc("o", 1, 0, None, u32::MAX), true), Bad, "ttl_seconds".into()),
        ("GPU bytes without index", Allocate(alloc("o", 0, 5, None, 60), true), Bad, "gpu_index".into()),
        ("unknown GPU", Allocate(alloc("o", 0, 1_000_000, Some(9), 60), true), Bad, "gpu_index".into()),
        ("huge bytes", Allocate(alloc("o", u64::MAX, 0, None, 60), true), ResourceExhausted, "host".into()),
        ("missing token", Allocate(alloc("o", 1, 0, None, 60), false), Unauthenticated, "credentials".into()),
        (
            "unknown lease",
            Release(pb::ReleaseRequest { lease_id: "lease-0-nope".into() }),
            NotFound,
            "lease".into(),
        ),
        ("empty lease id", Release(pb::ReleaseRequest { lease_id: String::new() }), Bad, "lease_id".into()),
        ("zero window", History(pb::HistoryRequest { window_seconds: 0 }), Bad, "window_seconds".into()),
        (
            "huge window",
            History(pb::HistoryRequest { window_seconds: u32::MAX }),
            Bad,
            "window_seconds".into(),
        ),
        (
            "unknown severity",
            Alerts(pb::ListAlertsRequest { min_severity: 42, ..Default::default() }),
            Bad,
            "min_severity".into(),
        ),
        (
            "tiny interval",
            WatchSnapshots(pb::WatchSnapshotsRequest { interval_ms: 3 }),
            Bad,
            "interval_ms".into(),
        ),
        (
            "huge interval",
            WatchSnapshots(pb::WatchSnapshotsRequest { interval_ms: u32::MAX }),
            Bad,
            "interval_ms".into(),
        ),
        (
            "watch severity",
            WatchAlerts(pb::WatchAlertsRequest { min_severity: -1 }),
            Bad,
            "min_severity".into(),
        ),
        (
            "batch-size NaN",
            BatchSize(pb::BatchSizeRequest {
                model: small.into(),
                duration_s: f64::NAN,
                ..Default::default()
            }),
            Bad,
            "duration_s".into(),
        ),
        (
            "batch-size model",
            BatchSize(pb::BatchSizeRequest { model: "../x".into(), duration_s: 1.0, ..Default::default() }),
            Bad,
            "model".into(),
        ),
        ("generate no token", Generate(gen(|_| {}), false), Unauthenticated, "credentials".into()),
        ("generate empty model", Generate(gen(|r| r.model.clear()), true), Bad, "model".into()),
        ("generate long prompt", Generate(gen(|r| r.prompt = "p".repeat(2001)), true), Bad, "prompt".into()),
        (
            "generate long negative prompt",
            Generate(gen(|r| r.negative_prompt = "n".repeat(2001)), true),
            Bad,
            "negative_prompt: must be at most 2000 characters, got 2001".into(),
        ),
        (
            "generate NUL negative prompt",
            Generate(gen(|r| r.negative_prompt = "a\0b".into()), true),
            Bad,
            "negative_prompt".into(),
        ),
        (
            "generate sampling mode",
            Generate(gen(|r| r.sampling_mode = 9), true),
            Bad,
            "sampling_mode: must be SAMPLING_MODE_TRANSFORMERS (1) or SAMPLING_MODE_AUDIOCRAFT (2), got 9"
                .into(),
        ),
        (
            "generate NaN temperature",
            Generate(gen(|r| r.temperature = Some(f64::NAN)), true),
            Bad,
            "temperature".into(),
        ),
        ("generate top_p", Generate(gen(|r| r.top_p = Some(2.0)), true), Bad, "top_p".into()),
        (
            "generate guidance",
            Generate(gen(|r| r.guidance_scale = Some(-1.0)), true),
            Bad,
            "guidance_scale".into(),
        ),
        ("generate format", Generate(gen(|r| r.format = 99), true), Bad, "format".into()),
        (
            "generate audio channels",
            Generate(gen(|r| r.audio_prompt = Some(pcm_s16(vec![0; 4], 32_000, 0))), true),
            Bad,
            "audio_prompt: channels must be 1..=8, got 0".into(),
        ),
        (
            "generate audio frames",
            Generate(gen(|r| r.audio_prompt = Some(pcm_s16(vec![0; 5], 32_000, 2))), true),
            Bad,
            "audio_prompt: data must hold whole frames".into(),
        ),
        (
            "generate melody",
            Generate(gen(|r| r.melody = Some(pcm_s16(vec![0; 4], 32_000, 1))), true),
            Code::FailedPrecondition,
            "melody: model maestro/musicgen-tiny is text-only".into(),
        ),
        (
            "generate melody channels",
            Generate(gen(|r| r.melody = Some(pcm_s16(vec![0; 4], 32_000, 0))), true),
            Bad,
            "melody: channels must be 1..=8, got 0".into(),
        ),
        ("generate chunk", Generate(gen(|r| r.chunk_ms = 50_000), true), Bad, "chunk_ms".into()),
        ("generate duration", Generate(gen(|r| r.duration_s = -1.0), true), Bad, "duration_s".into()),
        (
            "load bad device",
            Load(pb::LoadModelRequest {
                model: "maestro/musicgen-tiny".into(),
                device: "gpu0".into(),
                ..Default::default()
            }),
            Bad,
            "device".into(),
        ),
        (
            "load bad dtype",
            Load(pb::LoadModelRequest {
                model: "maestro/musicgen-tiny".into(),
                dtype: "fp8".into(),
                ..Default::default()
            }),
            Bad,
            "dtype".into(),
        ),
        (
            "unload traversal",
            Unload(pb::UnloadModelRequest { model: "../../x".into(), force: false }),
            Bad,
            "model".into(),
        ),
        (
            "unload not loaded",
            Unload(pb::UnloadModelRequest { model: "maestro/musicgen-tiny".into(), force: false }),
            NotFound,
            "not loaded".into(),
        ),
    ]
}

#[tokio::test]
async fn every_bad_input_gets_a_clear_error_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{TOKEN}\n")).unwrap();
    // A model root with a symlink that leaves it.
    let root = dir.path().join("models");
    std::fs::create_dir_all(&root).unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("config.json"), "{}").unwrap();
    std::fs::write(outside.join("model.safetensors"), "").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();

    let mut config = test_config();
    config.server.auth_token_file = Some(tokens);
    config.models.roots = vec![root, std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models")];
    let mut s = start_server(config).await;

    let table = cases("escape");
    assert!(table.len() >= 40, "{} cases", table.len());
    for (name, c, code, needle) in table {
        let status = call(&mut s, c).await;
        assert_eq!(status.code(), code, "{name}: {status:?}");
        assert!(
            status.message().contains(&needle),
            "{name}: {:?} does not name {needle:?}",
            status.message()
        );
    }

    let health = s.health.check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);
    let report = s.resources.get_report(pb::ReportRequest {}).await.unwrap().into_inner();
    assert!(report.leases.is_empty(), "no lease leaked: {:?}", report.leases);
    assert!(report.cached_models.is_empty(), "no model was loaded");
}

#[tokio::test]
async fn resource_requests_have_the_unary_limit_and_generate_the_audio_limit() {
    let mut config = common::test_config();
    config.server.max_unary_message_bytes = 64 * 1024;
    let mut s = common::start_server(config).await;
    let big = "x".repeat(100 * 1024);
    let allocate =
        pb::AllocateRequest { owner: big.clone(), cpu_memory_bytes: 1, ttl_seconds: 1, ..Default::default() };
    let err = s.resources.allocate(allocate).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    assert!(err.message().contains(&(64 * 1024).to_string()), "{}", err.message());
    // The same size reaches GenerationService's own checks (the prompt's length), not the decoder's.
    let generate = pb::GenerateRequest {
        model: "maestro/musicgen-tiny".into(),
        prompt: big,
        duration_s: 1.0,
        ..Default::default()
    };
    let Err(err) = s.generation.generate(generate).await else { panic!("a prompt that long is refused") };
    assert_ne!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    // GenerationService's other methods carry no audio: they have the unary limit too.
    let load = pb::LoadModelRequest { model: "x".repeat(100 * 1024), ..Default::default() };
    let err = s.generation.load_model(load).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    let unload = pb::UnloadModelRequest { model: "x".repeat(100 * 1024), ..Default::default() };
    let err = s.generation.unload_model(unload).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
}

/// The process's peak resident set (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// An audio prompt at 1 Hz once made the resampler's FFT follow the rate ratio (+1.37 GB for one
/// request). It is refused at the door now, naming the field, the range and the value, and the
/// server's peak memory (this process's: the server runs in it) stays where it was.
#[tokio::test]
async fn an_unreal_sample_rate_is_refused_before_it_costs_memory() {
    let mut s = common::start_server(common::test_config()).await;
    for (field, rate) in [("audio_prompt", 1), ("melody", 7_999), ("audio_prompt", 384_001)] {
        // Reset the peak to the current RSS, then ask.
        std::fs::write("/proc/self/clear_refs", "5").expect("peak RSS can be reset");
        let before = peak_rss();
        let clip = Some(pcm_s16(vec![0; 6], rate, 1));
        let request = gen(|r| {
            if field == "melody" {
                r.melody = clip;
            } else {
                r.audio_prompt = clip;
            }
        });
        let err = first_status(s.generation.generate(request).await).await;
        let grown = peak_rss().saturating_sub(before);
        eprintln!("{field} at {rate} Hz: {:?}, peak RSS grew {} KiB", err.code(), grown / 1024);
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        let message = err.message();
        assert!(
            message.contains(field)
                && message.contains("8000..=384000")
                && message.contains(&rate.to_string()),
            "{message}"
        );
        assert!(grown < 64 << 20, "{field} at {rate} Hz grew the peak RSS by {grown} bytes");
    }
}
