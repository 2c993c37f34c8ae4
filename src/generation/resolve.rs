//! A wire request made a run: the checkpoint's defaults filled in, the model's limits checked, an
//! audio prompt brought to the model's rate and channels with what encoding it costs, a melody made
//! the model's chroma.

use super::{Error, GenerateParams};
use crate::engine::{GenerationRequest, ModelFacts, SamplingMode, SamplingParams};

/// An audio prompt brought to the model: samples at its rate and channels, the frames they encode
/// to, and what was converted.
pub(super) struct PromptAudio {
    pub samples: Vec<f32>,
    pub frames: usize,
    pub notes: Vec<String>,
}

/// `clip` at the model's rate and channels, shorter than one window.
pub(super) fn prompt_audio(
    clip: Option<crate::audio_input::Clip>,
    facts: &ModelFacts,
) -> Result<Option<PromptAudio>, Error> {
    let Some(clip) = clip else { return Ok(None) };
    let (clip, notes) = clip.conform(facts.sample_rate, facts.channels as usize)?;
    let hop = (f64::from(facts.sample_rate) / facts.frame_rate).round() as usize;
    let frames = clip.frames().div_ceil(hop.max(1));
    let window = (facts.window_s * facts.frame_rate).round() as usize;
    if frames >= window {
        return Err(Error::invalid(
            "audio_prompt",
            format!(
                "must be shorter than the model's window ({} s), got {:.3} s",
                facts.window_s,
                clip.seconds()
            ),
        ));
    }
    Ok(Some(PromptAudio { samples: clip.samples, frames, notes }))
}

fn text_only(model: &str) -> Error {
    Error::FailedPrecondition(format!(
        "melody: model {model} is text-only (model_type musicgen); conditioning on a melody needs a \
         musicgen_melody checkpoint such as facebook/musicgen-melody"
    ))
}

/// A melody sent to a text-only checkpoint, told from its `config.json` in `dir` before anything is
/// loaded for the request.
pub(super) async fn check_melody_target(p: &GenerateParams, dir: &std::path::Path) -> Result<(), Error> {
    if p.melody.is_none() {
        return Ok(());
    }
    let path = dir.join("config.json");
    // Bounded like every config read: a hostile checkpoint cannot make this request read gigabytes.
    let read = tokio::task::spawn_blocking(move || {
        crate::checkpoint::limits::read_bounded(&path, crate::checkpoint::limits::MAX_CONFIG_BYTES, "config")
    })
    .await;
    let config = read.ok().and_then(Result::ok);
    let config: Option<serde_json::Value> = config.and_then(|c| serde_json::from_slice(&c).ok());
    let melody = config.as_ref().and_then(|c| c.get("model_type")).and_then(|t| t.as_str());
    // An unreadable config is the load's to report.
    match (config.is_some(), melody) {
        (true, Some("musicgen_melody")) | (false, _) => Ok(()),
        _ => Err(text_only(&p.model)),
    }
}

/// What a melody checkpoint can and cannot do with `p`; `melody` needs a melody checkpoint.
pub(super) fn check_melody_use(p: &GenerateParams, facts: &ModelFacts) -> Result<(), Error> {
    match &facts.chroma {
        None if p.melody.is_some() => Err(text_only(&p.model)),
        Some(_) if p.audio_prompt.is_some() => Err(Error::invalid(
            "audio_prompt",
            format!("model {} is a melody checkpoint, which does not continue clips: send melody", p.model),
        )),
        Some(_) if p.duration_s > facts.window_s => Err(Error::invalid(
            "duration_s",
            format!(
                "a melody checkpoint generates one window: at most {} s on {}, got {}",
                facts.window_s, p.model, p.duration_s
            ),
        )),
        _ => Ok(()),
    }
}

/// The melody's one-hot chroma frames for the model, with what was converted on the way (mono at the
/// extractor's rate); `None` without a melody. The STFT runs off the async threads.
pub(super) async fn melody_chroma(
    clip: Option<crate::audio_input::Clip>,
    facts: &ModelFacts,
) -> Result<Option<(Vec<Vec<f32>>, Vec<String>)>, Error> {
    let (Some(clip), Some(config)) = (clip, facts.chroma.clone()) else { return Ok(None) };
    let (clip, notes) = clip.conform(config.sampling_rate, 1)?;
    let notes = notes.into_iter().map(|n| format!("melody: {n}")).collect();
    let frames = tokio::task::spawn_blocking(move || {
        crate::chroma::ChromaExtractor::new(config).map(|e| e.one_hot(&clip.samples))
    })
    .await
    .map_err(|e| Error::Internal(format!("chroma extraction stopped: {e}")))?
    .map_err(Error::Internal)?;
    Ok(Some((frames, notes)))
}

/// Fills defaults from the checkpoint and checks the limits that depend on the model.
pub(super) fn resolve_request(p: &GenerateParams, facts: &ModelFacts) -> Result<GenerationRequest, Error> {
    let mode = if p.audiocraft_sampling { SamplingMode::Audiocraft } else { SamplingMode::Transformers };
    let default_k = match mode {
        SamplingMode::Audiocraft => SamplingMode::AUDIOCRAFT_TOP_K.min(i64::from(facts.codebook_size)),
        SamplingMode::Transformers => facts.defaults.top_k.max(0),
    };
    let k = p.top_k.unwrap_or(default_k as u32);
    if k > facts.codebook_size {
        return Err(Error::invalid(
            "top_k",
            format!("must be 0 (off) ..= {} (the codebook size), got {k}", facts.codebook_size),
        ));
    }
    let frame_ms = 1000.0 / facts.frame_rate;
    let chunk_ms = if p.chunk_ms == 0 { 1000 } else { p.chunk_ms };
    if f64::from(chunk_ms) < frame_ms.floor() {
        return Err(Error::invalid(
            "chunk_ms",
            format!("must be >= one frame ({frame_ms:.0} ms) and <= 10000, got {chunk_ms}"),
        ));
    }
    let d = &facts.defaults;
    let top_p = match p.top_p {
        Some(v) if v > 0.0 => v,
        Some(_) => 1.0,
        None => d.top_p,
    };
    // What the header reports is what runs: in audiocraft's rules an active top-p leaves no top-k.
    let k = if mode == SamplingMode::Audiocraft && top_p < 1.0 { 0 } else { k };
    Ok(GenerationRequest {
        prompt: p.prompt.clone(),
        negative_prompt: p.negative_prompt.clone(),
        frames: ((p.duration_s * facts.frame_rate).round() as usize).max(1),
        prompt_codes: Vec::new(),
        melody: Vec::new(),
        include_prompt: false,
        sampling: SamplingParams {
            greedy: p.greedy || !d.do_sample,
            temperature: p.temperature.unwrap_or(d.temperature),
            top_k: i64::from(k),
            top_p,
            mode,
        },
        guidance_scale: p.guidance_scale.unwrap_or(d.guidance_scale),
        seed: p.seed.unwrap_or_else(rand_seed),
        chunk_frames: ((f64::from(chunk_ms) / frame_ms).round() as usize).max(1),
    })
}

fn rand_seed() -> u64 {
    let id = uuid::Uuid::new_v4();
    u64::from_le_bytes(id.as_bytes()[..8].try_into().expect("8 bytes"))
}
