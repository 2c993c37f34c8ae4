//! Property-based fuzzing of request decoding, validation and conversion for every request type:
//! arbitrary bytes decoded as each message, and arbitrary field values, must give a value or a clear
//! error — never a panic, and what validation accepts is within its limits. The coverage-guided
//! `cargo fuzz` target in `fuzz/` runs the same check (`make fuzz`, nightly); this runs in `make test`.

use maestro::{
    grpc::{fuzz, requests},
    resources::{device::RequestedDevice, model_id, requirements::DType},
};
use maestro_proto as pb;
use proptest::prelude::*;

/// The repository's models, and its fixtures standing in for a hub cache (ids with `@REV` reach the
/// hub cache's resolution).
fn roots() -> model_id::ModelRoots {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    model_id::ModelRoots { dirs: vec![repo.join("models")], hub_cache: Some(repo.join("tests/fixtures")) }
}

fn check_all(bytes: &[u8]) {
    fuzz::check(bytes, &roots());
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
        seed in 0usize..fuzz::seeds().len(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in any::<usize>(),
    ) {
        let mut bytes = fuzz::seeds()[seed].clone();
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
        let _ = RequestedDevice::parse(&s, "device");
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
        if let Ok(p) = requests::generate_params(&r, maestro::audio_input::AudioLimits::default()) {
            prop_assert!(p.duration_s.is_finite() && p.duration_s > 0.0);
            prop_assert!(p.temperature.is_none_or(|t| t > 0.0 && t <= 10.0));
            prop_assert!(p.guidance_scale.is_none_or(|g| (1.0..=20.0).contains(&g)));
        }
    }
}
