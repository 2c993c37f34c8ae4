//! Wire requests → domain requests, validating every field. Messages name the field, the limit and
//! the value given.

use std::time::Duration;

use super::pb;
use crate::audio_input::{self, AudioLimits, Clip, Encoding};
use crate::{
    error::Error,
    resources::{
        device::RequestedDevice,
        duration::{check_duration, MaxDuration},
        ledger::{LeaseKind, LeaseRequest},
        manager::{BatchQuestion, FitQuestion},
        model_id,
        requirements::DType,
        verdict::MAX_BATCH,
    },
};

/// A model id, syntax checked.
pub fn model(id: &str) -> Result<String, Error> {
    model_id::validate(id)?;
    Ok(id.to_string())
}

/// A weight dtype (`f32` when empty).
pub fn dtype(value: &str) -> Result<DType, Error> {
    Ok(DType::parse(value)?)
}

/// Longest audio prompt `ValidateModel` sizes, in seconds (the `--max-audio-input-s` ceiling).
const MAX_AUDIO_PROMPT_S: f64 = 600.0;

/// `ValidateModel`'s request.
pub fn fit_question(r: pb::ValidateRequest) -> Result<FitQuestion, Error> {
    if r.batch_size == 0 || r.batch_size > MAX_BATCH {
        return Err(Error::invalid(
            "batch_size",
            format!("must be within 1..={MAX_BATCH}, got {}", r.batch_size),
        ));
    }
    Ok(FitQuestion {
        model: model(&r.model)?,
        batch: r.batch_size,
        duration_s: check_duration(r.duration_s, MaxDuration::Unknown)?,
        device: RequestedDevice::parse(&r.device, "device")?,
        dtype: dtype(&r.dtype)?,
        audio_prompt_s: finite("audio_prompt_s", r.audio_prompt_s, 0.0, false, MAX_AUDIO_PROMPT_S, false)?,
        conversion_bytes: 0,
    })
}

/// `GetOptimalBatchSize`'s request (one sample is sized, the answer scales it).
pub fn batch_question(r: &pb::BatchSizeRequest) -> Result<BatchQuestion, Error> {
    let fit = FitQuestion {
        model: model(&r.model)?,
        batch: 1,
        duration_s: check_duration(r.duration_s, MaxDuration::Unknown)?,
        device: RequestedDevice::parse(&r.device, "device")?,
        dtype: dtype(&r.dtype)?,
        audio_prompt_s: 0.0,
        conversion_bytes: 0,
    };
    Ok(BatchQuestion { fit, memory_bytes: r.gpu_memory_bytes, max_batch: MAX_BATCH })
}

/// `Allocate`'s request.
pub fn lease_request(
    r: pb::AllocateRequest,
    (max_ttl, min_bytes): (Duration, u64),
    token: Option<String>,
) -> Result<LeaseRequest, Error> {
    let owner = r.owner.trim();
    if owner.is_empty() || owner.chars().count() > 128 || owner.chars().any(char::is_control) {
        let shown: String = r.owner.chars().take(40).collect();
        return Err(Error::invalid("owner", format!("must be 1..=128 printable characters, got {shown:?}")));
    }
    if r.cpu_memory_bytes == 0 && r.gpu_memory_bytes == 0 {
        return Err(Error::invalid(
            "cpu_memory_bytes",
            "cpu_memory_bytes or gpu_memory_bytes must be > 0, got 0 and 0",
        ));
    }
    if r.gpu_memory_bytes > 0 && r.gpu_index.is_none() {
        return Err(Error::invalid(
            "gpu_index",
            format!("is required when gpu_memory_bytes > 0 (got {})", r.gpu_memory_bytes),
        ));
    }
    let max = max_ttl.as_secs();
    if r.ttl_seconds == 0 || u64::from(r.ttl_seconds) > max {
        return Err(Error::invalid(
            "ttl_seconds",
            format!("must be within 1..={max}, got {}", r.ttl_seconds),
        ));
    }
    let bytes = r.cpu_memory_bytes.saturating_add(r.gpu_memory_bytes);
    if bytes < min_bytes {
        return Err(Error::invalid(
            "cpu_memory_bytes",
            format!(
                "cpu_memory_bytes + gpu_memory_bytes must be at least {min_bytes} (--min-lease-bytes), got {bytes}"
            ),
        ));
    }
    Ok(LeaseRequest {
        owner: owner.to_string(),
        token,
        kind: LeaseKind::Client,
        cpu_bytes: r.cpu_memory_bytes,
        gpu_bytes: r.gpu_memory_bytes,
        gpu_index: r.gpu_index,
        ttl: Some(Duration::from_secs(r.ttl_seconds.into())),
    })
}

/// `GetHistory`'s window in seconds, at most `limit` (the history's length).
pub fn history_window(window: u32, limit: u64) -> Result<u32, Error> {
    if window == 0 || u64::from(window) > limit {
        return Err(Error::invalid("window_seconds", format!("must be within 1..={limit}, got {window}")));
    }
    Ok(window)
}

/// `WatchSnapshots`' interval: `None` streams every sample, `Some` thins the stream out. 0 means the
/// sample interval; anything else must be within the sample interval and one minute.
pub fn snapshot_interval(interval_ms: u32, sample: Duration) -> Result<Option<Duration>, Error> {
    let sample_ms = sample.as_millis() as u64;
    match u64::from(interval_ms) {
        0 => Ok(None),
        ms if ms < sample_ms || ms > 60_000 => Err(Error::invalid(
            "interval_ms",
            format!("must be 0 (the sample interval) or within {sample_ms}..=60000 ms, got {ms}"),
        )),
        ms if ms == sample_ms => Ok(None),
        ms => Ok(Some(Duration::from_millis(ms))),
    }
}

/// `WatchReport`'s interval: 0 = one second, otherwise 100..=60000 ms.
pub fn report_interval(interval_ms: u32) -> Result<Duration, Error> {
    match interval_ms {
        0 => Ok(Duration::from_secs(1)),
        100..=60_000 => Ok(Duration::from_millis(interval_ms.into())),
        ms => {
            Err(Error::invalid("interval_ms", format!("must be 0 (1000) or within 100..=60000 ms, got {ms}")))
        }
    }
}

/// `Release`'s lease id.
pub fn lease_id(r: &pb::ReleaseRequest) -> Result<String, Error> {
    let id = &r.lease_id;
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control()) {
        let shown: String = id.chars().take(40).collect();
        return Err(Error::invalid(
            "lease_id",
            format!("must be 1..=128 printable characters, got {shown:?}"),
        ));
    }
    Ok(id.clone())
}

/// Longest prompt, in characters.
pub const MAX_PROMPT_CHARS: usize = 2000;

fn finite(field: &'static str, v: f64, lo: f64, lo_open: bool, hi: f64, hi_open: bool) -> Result<f64, Error> {
    let above = if lo_open { v > lo } else { v >= lo };
    let below = if hi_open { v < hi } else { v <= hi };
    if !v.is_finite() || !above || !below {
        let (l, h) = (if lo_open { "(" } else { "[" }, if hi_open { ")" } else { "]" });
        return Err(Error::invalid(field, format!("must be finite and within {l}{lo}, {hi}{h}, got {v}")));
    }
    Ok(v)
}

/// The audio format of a request (unspecified = 16-bit PCM).
pub fn audio_format(value: i32) -> Result<pb::AudioFormat, Error> {
    match pb::AudioFormat::try_from(value) {
        Ok(pb::AudioFormat::Unspecified) => Ok(pb::AudioFormat::PcmS16le),
        Ok(f) => Ok(f),
        Err(_) => Err(Error::invalid(
            "format",
            format!("must be one of AUDIO_FORMAT_PCM_S16LE (1) .. AUDIO_FORMAT_MP3 (6), got {value}"),
        )),
    }
}

/// `Generate`'s request, with every model-independent limit checked (the model's own, such as
/// `chunk_ms` against one frame, are `generation::ValidGenerate`'s).
pub fn generate_params(
    r: &pb::GenerateRequest,
    audio: AudioLimits,
) -> Result<crate::generation::GenerateParams, Error> {
    check_text("prompt", &r.prompt)?;
    check_text("negative_prompt", &r.negative_prompt)?;
    let inputs = audio_inputs(r, audio)?;
    Ok(crate::generation::GenerateParams {
        model: model(&r.model)?,
        prompt: r.prompt.clone(),
        negative_prompt: r.negative_prompt.clone(),
        duration_s: check_duration(r.duration_s, MaxDuration::Unknown)?,
        temperature: r.temperature.map(|t| finite("temperature", t, 0.0, true, 10.0, false)).transpose()?,
        top_k: r.top_k,
        top_p: r.top_p.map(|p| finite("top_p", p, 0.0, false, 1.0, true)).transpose()?,
        guidance_scale: r
            .guidance_scale
            .map(|g| finite("guidance_scale", g, 1.0, false, 20.0, false))
            .transpose()?,
        seed: r.seed,
        greedy: r.greedy,
        chunk_ms: r.chunk_ms,
        audiocraft_sampling: sampling_mode(r.sampling_mode)? == pb::SamplingMode::Audiocraft,
        audio_prompt: inputs.0,
        include_prompt: r.include_prompt,
        melody: inputs.1,
    })
}

/// The request's clip to continue and melody, each checked (together within the byte limit).
fn audio_inputs(r: &pb::GenerateRequest, limits: AudioLimits) -> Result<(Option<Clip>, Option<Clip>), Error> {
    let size = |a: &Option<pb::AudioInput>| a.as_ref().map_or(0, |a| a.data.len());
    let total = size(&r.audio_prompt) + size(&r.melody);
    if r.audio_prompt.is_some() && r.melody.is_some() && total > limits.max_bytes {
        return Err(Error::invalid(
            "melody",
            format!(
                "audio_prompt and melody together must be at most {} bytes, got {total}",
                limits.max_bytes
            ),
        ));
    }
    let clip = |field, a: &pb::AudioInput| -> Result<Clip, Error> {
        let encoding = match pb::AudioEncoding::try_from(a.encoding) {
            Ok(pb::AudioEncoding::PcmS16le) => Encoding::PcmS16le,
            Ok(pb::AudioEncoding::PcmF32le) => Encoding::PcmF32le,
            Ok(pb::AudioEncoding::Wav) => Encoding::Wav,
            _ => {
                return Err(Error::invalid(
                    field,
                    format!(
                        "encoding must be AUDIO_ENCODING_PCM_S16LE (1), _PCM_F32LE (2) or _WAV (3), got {}",
                        a.encoding
                    ),
                ))
            }
        };
        audio_input::decode(field, &a.data, encoding, (a.sample_rate, a.channels), limits)
    };
    let prompt = r.audio_prompt.as_ref().map(|a| clip("audio_prompt", a)).transpose()?;
    let melody = r.melody.as_ref().map(|a| clip("melody", a)).transpose()?;
    if r.include_prompt && prompt.is_none() {
        return Err(Error::invalid("include_prompt", "needs an audio_prompt"));
    }
    Ok((prompt, melody))
}

/// A prompt-like text: at most [`MAX_PROMPT_CHARS`] characters, no NUL.
fn check_text(field: &'static str, text: &str) -> Result<(), Error> {
    let chars = text.chars().count();
    if chars > MAX_PROMPT_CHARS {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_PROMPT_CHARS} characters, got {chars}"),
        ));
    }
    if text.contains('\0') {
        return Err(Error::invalid(field, "must not contain NUL characters"));
    }
    Ok(())
}

/// The sampling mode of a request (unspecified = transformers).
fn sampling_mode(value: i32) -> Result<pb::SamplingMode, Error> {
    match pb::SamplingMode::try_from(value) {
        Ok(pb::SamplingMode::Unspecified) => Ok(pb::SamplingMode::Transformers),
        Ok(m) => Ok(m),
        Err(_) => Err(Error::invalid(
            "sampling_mode",
            format!("must be SAMPLING_MODE_TRANSFORMERS (1) or SAMPLING_MODE_AUDIOCRAFT (2), got {value}"),
        )),
    }
}
