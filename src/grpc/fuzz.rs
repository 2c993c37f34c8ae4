//! The fuzzing entry point: bytes decoded as every request type, then validated and converted as the
//! handlers do. Whatever the bytes, the result is a value or an error, never a panic. Shared by the
//! coverage-guided `cargo fuzz` target (`fuzz/`) and the property tests in `make test`.

use std::time::Duration;

use prost::Message;

use super::{convert, pb, requests};
use crate::resources::{device::RequestedDevice, model_id, verdict::MAX_BATCH};

/// Decodes `bytes` as each request type and runs what decodes through validation and conversion;
/// model ids resolve against `roots`.
pub fn check(bytes: &[u8], roots: &model_id::ModelRoots) {
    if let Ok(r) = pb::ValidateRequest::decode(bytes) {
        if let Ok(q) = requests::fit_question(r) {
            assert!((1..=MAX_BATCH).contains(&q.batch), "accepted batch {}", q.batch);
            assert!(q.duration_s.is_finite() && q.duration_s > 0.0, "accepted duration {}", q.duration_s);
        }
    }
    if let Ok(r) = pb::BatchSizeRequest::decode(bytes) {
        let _ = requests::batch_question(&r);
    }
    if let Ok(r) = pb::AllocateRequest::decode(bytes) {
        let _ = requests::lease_request(r, (Duration::from_secs(86_400), 1_000_000), None);
    }
    if let Ok(r) = pb::ReleaseRequest::decode(bytes) {
        if let Ok(id) = requests::lease_id(&r) {
            assert!(!id.is_empty() && id.len() <= 128 && !id.chars().any(char::is_control));
        }
    }
    if let Ok(r) = pb::GenerateRequest::decode(bytes) {
        if let Ok(p) = requests::generate_params(&r, crate::audio_input::AudioLimits::default()) {
            assert!(p.duration_s.is_finite() && p.duration_s > 0.0, "accepted duration {}", p.duration_s);
            assert!(p.temperature.is_none_or(|t| t > 0.0 && t <= 10.0), "accepted {:?}", p.temperature);
            assert!(p.top_p.is_none_or(|v| (0.0..1.0).contains(&v)), "accepted top_p {:?}", p.top_p);
            assert!(p.guidance_scale.is_none_or(|g| (1.0..=20.0).contains(&g)));
            if let Some(clip) = &p.audio_prompt {
                assert!(clip.samples.iter().all(|s| s.is_finite()) && clip.seconds() <= 30.0);
            }
            for text in [&p.prompt, &p.negative_prompt] {
                assert!(!text.contains('\0') && text.chars().count() <= requests::MAX_PROMPT_CHARS);
            }
        }
        let _ = requests::audio_format(r.format);
    }
    if let Ok(r) = pb::HistoryRequest::decode(bytes) {
        if let Ok(w) = requests::history_window(r.window_seconds, 300) {
            assert!((1..=300).contains(&w));
        }
    }
    if let Ok(r) = pb::WatchSnapshotsRequest::decode(bytes) {
        let _ = requests::snapshot_interval(r.interval_ms, Duration::from_secs(1));
    }
    if let Ok(r) = pb::UnloadModelRequest::decode(bytes) {
        let _ = requests::model(&r.model).map(|m| model_id::resolve(&m, roots));
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
        let _ = RequestedDevice::parse(&r.device, "device");
        let _ = model_id::resolve(&r.model, roots);
    }
}

/// Valid requests of every type, as seeds the mutations start from.
pub fn seeds() -> Vec<Vec<u8>> {
    vec![
        pb::ValidateRequest {
            model: "facebook/musicgen-small".into(),
            batch_size: 2,
            duration_s: 10.0,
            device: "auto".into(),
            dtype: "f16".into(),
            audio_prompt_s: 0.0,
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
            negative_prompt: "drums".into(),
            sampling_mode: 2,
            audio_prompt: Some(pb::AudioInput {
                data: [0i16, 1000, -1000, 0].iter().flat_map(|s| s.to_le_bytes()).collect(),
                encoding: pb::AudioEncoding::PcmS16le as i32,
                sample_rate: 32_000,
                channels: 1,
            }),
            melody: None,
            include_prompt: true,
        }
        .encode_to_vec(),
        pb::LoadModelRequest {
            model: "maestro/musicgen-tiny".into(),
            device: "cpu".into(),
            dtype: "bf16".into(),
            pin: true,
        }
        .encode_to_vec(),
        pb::ListAlertsRequest { min_severity: 2, active_only: true, limit: 10, severity: 3 }.encode_to_vec(),
        pb::ReleaseRequest { lease_id: "0b5c2f8e-8d7b-4d4a-9a51-3f1e2d4c5b6a".into() }.encode_to_vec(),
        pb::BatchSizeRequest {
            model: "facebook/musicgen-medium".into(),
            gpu_memory_bytes: 16 << 30,
            duration_s: 30.0,
            device: "cuda:0".into(),
            dtype: "f32".into(),
        }
        .encode_to_vec(),
        pb::HistoryRequest { window_seconds: 60 }.encode_to_vec(),
        pb::WatchSnapshotsRequest { interval_ms: 2000 }.encode_to_vec(),
        pb::UnloadModelRequest { model: "maestro/musicgen-tiny".into(), force: true }.encode_to_vec(),
    ]
}
