//! `generate`: streams a generation into a file as it arrives, with a progress bar of decoder frames
//! and the real-time factor so far. The output's extension picks the file: a WAV written here from
//! raw PCM, or FLAC, Ogg Opus or MP3 encoded by the server. Ctrl-C drops the stream, which cancels
//! the request on the server, and leaves what had arrived (a valid WAV; an encoded file without its
//! end).

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use maestro_proto::{self as pb, generate_response::Payload};
use tonic::Streaming;

use super::Output;
use crate::{
    args::{GenerateArgs, SamplingModeArg},
    client::Clients,
    exit,
    file_format::FileFormat,
    sink::Sink,
    units, Failure,
};

/// A WAV file as an audio input (the server reads rate and channels from its header).
fn wav_input(path: &std::path::Path) -> Result<pb::AudioInput, Failure> {
    let data = std::fs::read(path)
        .map_err(|e| Failure::new(exit::USAGE, format!("cannot read {}: {e}", path.display())))?;
    Ok(pb::AudioInput { data, encoding: pb::AudioEncoding::Wav as i32, sample_rate: 0, channels: 0 })
}

/// The format to ask for: the output's extension picks the file, `--format` the samples of a WAV.
/// Its usage errors are checked before connecting.
pub fn output_format(a: &GenerateArgs) -> Result<pb::AudioFormat, Failure> {
    FileFormat::from_path(&a.output)?.wire_format(a.format)
}

/// The request for these arguments (reading the WAV files they name).
pub fn request(a: &GenerateArgs) -> Result<pb::GenerateRequest, Failure> {
    let format = output_format(a)?;
    Ok(pb::GenerateRequest {
        model: a.model.clone(),
        prompt: a.prompt.clone(),
        duration_s: a.duration,
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        guidance_scale: a.guidance,
        seed: a.seed,
        greedy: a.greedy,
        chunk_ms: a.chunk_ms,
        format: format as i32,
        negative_prompt: a.negative_prompt.clone(),
        sampling_mode: match a.sampling_mode {
            SamplingModeArg::Transformers => pb::SamplingMode::Transformers,
            SamplingModeArg::Audiocraft => pb::SamplingMode::Audiocraft,
        } as i32,
        audio_prompt: a.continue_from.as_deref().map(wav_input).transpose()?,
        melody: a.melody.as_deref().map(wav_input).transpose()?,
        include_prompt: a.include_prompt,
    })
}

/// What ended the stream.
enum End {
    Summary(pb::Summary),
    Interrupted,
    Closed,
    Failed(tonic::Status),
}

/// `generate`.
pub async fn run(c: &mut Clients, out: Output, a: GenerateArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let asked = output_format(&a)?;
    let mut stream = c.generation.generate(request(&a)?).await?.into_inner();
    let header = match next(&mut stream).await {
        Ok(Some(Payload::Header(h))) => h,
        Ok(Some(_)) => return Err(Failure::new(exit::GENERAL, "the server sent audio before its header")),
        Ok(None) => {
            return Err(Failure::new(exit::GENERAL, "the server closed the stream before its header"))
        }
        Err(end) => return Err(failure_before_audio(end)),
    };
    let mut sink = Sink::create(&a.output, &header, asked)?;
    let bar = progress_bar(&header);
    let end = receive(&mut stream, &mut sink, &bar, started).await;
    drop(stream);
    bar.finish_and_clear();
    let described = sink.describe();
    let written = sink.samples();
    sink.finish()?;
    match end {
        End::Summary(summary) => {
            report(out, &summary, &described, started.elapsed())?;
            check_length(&summary, written)
        }
        End::Interrupted => {
            Err(Failure::new(exit::INTERRUPTED, format!("interrupted: request cancelled, kept {described}")))
        }
        End::Closed => {
            Err(Failure::new(exit::GENERAL, format!("the stream ended without a summary; kept {described}")))
        }
        End::Failed(status) => {
            let f = Failure::from(status);
            Err(Failure::new(f.code, format!("{}; kept {described}", f.message)))
        }
    }
}

fn failure_before_audio(end: End) -> Failure {
    match end {
        End::Failed(status) => status.into(),
        _ => Failure::new(exit::INTERRUPTED, "interrupted before any audio: request cancelled"),
    }
}

/// The next payload, or why there is none (Ctrl-C, a failed stream).
async fn next(stream: &mut Streaming<pb::GenerateResponse>) -> Result<Option<Payload>, End> {
    tokio::select! {
        message = stream.message() => match message {
            Ok(Some(m)) => Ok(m.payload),
            Ok(None) => Ok(None),
            Err(status) => Err(End::Failed(status)),
        },
        _ = tokio::signal::ctrl_c() => Err(End::Interrupted),
    }
}

/// Writes chunks until the summary, the end of the stream, an error or Ctrl-C.
async fn receive(
    stream: &mut Streaming<pb::GenerateResponse>,
    sink: &mut Sink,
    bar: &ProgressBar,
    started: Instant,
) -> End {
    loop {
        match next(stream).await {
            Ok(Some(Payload::Chunk(chunk))) => {
                if let Err(status) = sink.accept(&chunk) {
                    return End::Failed(status);
                }
                bar.set_length(u64::from(chunk.frames_total));
                bar.set_position(u64::from(chunk.frames_done));
                bar.set_message(progress_message(sink.seconds(), started.elapsed()));
            }
            Ok(Some(Payload::Summary(summary))) => return End::Summary(summary),
            Ok(Some(Payload::Header(_))) => {
                return End::Failed(tonic::Status::data_loss("a second header arrived"))
            }
            Ok(None) => return End::Closed,
            Err(end) => return end,
        }
    }
}

/// `4.0 s of audio, RTF 0.62` (generation time over audio time; below 1 is faster than real time).
pub fn progress_message(audio_s: f64, elapsed: Duration) -> String {
    if audio_s <= 0.0 {
        return "waiting for audio".into();
    }
    format!("{audio_s:.1} s of audio, RTF {:.2}", elapsed.as_secs_f64() / audio_s)
}

fn progress_bar(h: &pb::Header) -> ProgressBar {
    let bar = ProgressBar::new(0);
    let style =
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:32} {pos}/{len} frames  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    let queued =
        if h.queue_position > 0 { format!(", queued behind {}", h.queue_position) } else { String::new() };
    bar.set_message(format!("{} on {}{queued}", h.model, h.device));
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn report(out: Output, s: &pb::Summary, described: &str, wall: Duration) -> Result<(), Failure> {
    out.show(s, "Summary", |s| {
        format!(
            "wrote {described}\ngenerated {} frames in {} on {} (RTF {:.2}, {:.1} steps/s), first audio after {}, wall {}\n",
            s.frames,
            units::millis(s.total_ms),
            s.device,
            s.real_time_factor,
            s.steps_per_second,
            units::millis(s.time_to_first_chunk_ms),
            units::millis(wall.as_millis() as f64)
        )
    })
}

/// The summary's sample count must match what was written; a mismatch means lost audio.
fn check_length(s: &pb::Summary, written: u64) -> Result<(), Failure> {
    if s.samples != 0 && s.samples != written {
        let msg = format!("the summary reports {} samples but {written} arrived", s.samples);
        return Err(Failure::new(exit::GENERAL, msg));
    }
    Ok(())
}
