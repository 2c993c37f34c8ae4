//! Property-based fuzzing of request decoding, validation and conversion for every request type:
//! arbitrary bytes decoded as each message, and arbitrary field values, must give a value or a clear
//! error — never a panic. (Coverage-guided `cargo fuzz` needs a nightly toolchain, which this project's
//! machines do not have; this runs in `make test` instead.)

use std::time::Duration;

use maestro::{
    grpc::{convert, requests},
    pb,
    resources::{model_id, requirements::DType, validate::Device},
};
use proptest::prelude::*;
use prost::Message;

fn roots() -> Vec<std::path::PathBuf> {
    vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models")]
}

fn check_all(bytes: &[u8]) {
    if let Ok(r) = pb::ValidateRequest::decode(bytes) {
        let _ = requests::fit_question(r);
    }
    if let Ok(r) = pb::BatchSizeRequest::decode(bytes) {
        let _ = requests::batch_question(&r);
    }
    if let Ok(r) = pb::AllocateRequest::decode(bytes) {
        let _ = requests::lease_request(r, Duration::from_secs(86_400));
    }
    if let Ok(r) = pb::ReleaseRequest::decode(bytes) {
        let _ = requests::lease_id(&r);
    }
    if let Ok(r) = pb::GenerateRequest::decode(bytes) {
        let _ = requests::generate_params(&r);
        let _ = requests::audio_format(r.format);
    }
    if let Ok(r) = pb::ListAlertsRequest::decode(bytes) {
        let _ = convert::min_severity(r.min_severity, "min_severity");
    }
    if let Ok(r) = pb::WatchAlertsRequest::decode(bytes) {
        let _ = convert::min_severity(r.min_severity, "min_severity");
    }
    if let Ok(r) = pb::LoadModelRequest::decode(bytes) {
        let _ = requests::model(&r.model);
        let _ = requests::dtype(&r.dtype);
        let _ = Device::parse(&r.device, "device");
        let _ = model_id::resolve(&r.model, &roots());
    }
}

/// Valid requests of every type, as seeds the mutations start from.
fn seeds() -> Vec<Vec<u8>> {
    vec![
        pb::ValidateRequest {
            model: "facebook/musicgen-small".into(),
            batch_size: 2,
            duration_s: 10.0,
            device: "auto".into(),
            dtype: "f16".into(),
        }
        .encode_to_vec(),
        pb::AllocateRequest {
            owner: "job".into(),
            cpu_memory_bytes: 1 << 30,
            gpu_memory_bytes: 0,
            gpu_index: Some(0),
            ttl_seconds: 60,
        }
        .encode_to_vec(),
        pb::GenerateRequest {
            model: "maestro/musicgen-tiny".into(),
            prompt: "piano".into(),
            duration_s: 4.0,
            temperature: Some(1.0),
            top_k: Some(250),
            top_p: Some(0.9),
            guidance_scale: Some(3.0),
            seed: Some(7),
            greedy: false,
            chunk_ms: 500,
            format: 2,
        }
        .encode_to_vec(),
        pb::LoadModelRequest {
            model: "maestro/musicgen-tiny".into(),
            device: "cpu".into(),
            dtype: "bf16".into(),
            pin: true,
        }
        .encode_to_vec(),
        pb::ListAlertsRequest { min_severity: 2, active_only: true, limit: 10 }.encode_to_vec(),
    ]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3000)
}

proptest! {
    // 3 000 cases per property in `make test`; PROPTEST_CASES sets more for a long run.
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        check_all(&bytes);
    }

    #[test]
    fn mutated_valid_requests_never_panic(
        seed in 0usize..5,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in any::<usize>(),
    ) {
        let mut bytes = seeds()[seed].clone();
        for (at, value) in flips {
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = value;
            }
        }
        let keep = if bytes.is_empty() { 0 } else { cut % (bytes.len() + 1) };
        bytes.truncate(keep);
        check_all(&bytes);
    }

    #[test]
    fn arbitrary_ids_devices_and_dtypes_never_panic(s in "\\PC{0,64}") {
        let _ = model_id::validate(&s);
        let _ = model_id::resolve(&s, &roots());
        let _ = Device::parse(&s, "device");
        let _ = DType::parse(&s);
    }

    #[test]
    fn arbitrary_numbers_in_generate_requests_never_panic(
        duration in any::<f64>(), temperature in any::<f64>(), top_p in any::<f64>(),
        guidance in any::<f64>(), top_k in any::<u32>(), chunk in any::<u32>(), format in any::<i32>(),
    ) {
        let r = pb::GenerateRequest {
            model: "maestro/musicgen-tiny".into(),
            duration_s: duration,
            temperature: Some(temperature),
            top_p: Some(top_p),
            guidance_scale: Some(guidance),
            top_k: Some(top_k),
            chunk_ms: chunk,
            format,
            ..Default::default()
        };
        if let Ok(p) = requests::generate_params(&r) {
            prop_assert!(p.duration_s.is_finite() && p.duration_s > 0.0);
            prop_assert!(p.temperature.is_none_or(|t| t > 0.0 && t <= 10.0));
            prop_assert!(p.guidance_scale.is_none_or(|g| (1.0..=20.0).contains(&g)));
        }
    }
}
