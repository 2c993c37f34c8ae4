//! Audio a request sends (a clip to continue, a melody): decoded from raw little-endian PCM or a WAV
//! file (`hound`), checked against the configured limits, then brought to the model's rate with a
//! real resampler (`rubato`'s FFT resampler) and to its channel count (averaged down, or the one
//! channel copied). Free of libtorch: the wire door checks what it can before anything is queued.

pub mod fuzz;

use rubato::{audioadapter_buffers::owned::InterleavedOwned, Fft, FixedSync, Resampler};

use crate::error::Error;

/// How a clip's bytes are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// 16-bit signed little-endian, channel-interleaved.
    PcmS16le,
    /// 32-bit float little-endian, channel-interleaved.
    PcmF32le,
    /// A WAV file (its header gives rate and channels).
    Wav,
}

/// What a request's audio may be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioLimits {
    /// Longest clip, in seconds (default 30).
    pub max_seconds: f64,
    /// Most bytes of audio in one request (default 8 MiB).
    pub max_bytes: usize,
}

impl Default for AudioLimits {
    fn default() -> Self {
        Self { max_seconds: 30.0, max_bytes: 8 << 20 }
    }
}

/// Lowest sample rate accepted: the lowest real audio rate (telephony). It also bounds the
/// resampler's memory, which grows with the ratio of the model's rate to the clip's: a 1 Hz clip
/// took over a gigabyte and minutes to bring to 32 kHz (found by the `audio_input` fuzz target).
pub const MIN_SAMPLE_RATE: u32 = 8_000;
/// Highest sample rate accepted.
pub const MAX_SAMPLE_RATE: u32 = 384_000;
/// Largest sample magnitude accepted (full scale is ±1): what a 24-bit integer sample reaches when a
/// client sends it as a float unscaled, and far below the `f32` range, where the resampler's sums
/// overflow to infinity and it panics (found by the `audio_input` fuzz target, with samples near
/// 2.5e38).
pub const MAX_MAGNITUDE: f32 = 16_777_216.0;
/// Most channels accepted.
pub const MAX_CHANNELS: u32 = 8;

/// Decoded audio: f32 samples, channel-interleaved.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    /// `frames × channels` samples.
    pub samples: Vec<f32>,
    /// Channels interleaved in `samples`.
    pub channels: usize,
    /// Samples per second and channel.
    pub sample_rate: u32,
}

impl Clip {
    /// Samples per channel.
    pub fn frames(&self) -> usize {
        self.samples.len() / self.channels.max(1)
    }

    /// Seconds of audio.
    pub fn seconds(&self) -> f64 {
        self.frames() as f64 / f64::from(self.sample_rate.max(1))
    }
}

/// Decodes `data` as `encoding` (`sample_rate` and `channels` describe raw PCM; for WAV they may be 0
/// or must match the header) and checks it against `limits`. Errors name `field`.
pub fn decode(
    field: &'static str,
    data: &[u8],
    encoding: Encoding,
    (sample_rate, channels): (u32, u32),
    limits: AudioLimits,
) -> Result<Clip, Error> {
    let bad = |message: String| Error::invalid(field, message);
    if data.is_empty() {
        return Err(bad("data must not be empty".into()));
    }
    if data.len() > limits.max_bytes {
        return Err(bad(format!("must be at most {} bytes, got {}", limits.max_bytes, data.len())));
    }
    let clip = match encoding {
        Encoding::Wav => wav(data, (sample_rate, channels)).map_err(bad)?,
        Encoding::PcmS16le | Encoding::PcmF32le => {
            check_format(sample_rate, channels).map_err(bad)?;
            let width = if encoding == Encoding::PcmS16le { 2 } else { 4 };
            let frame = width * channels as usize;
            if data.len() % frame != 0 {
                return Err(bad(format!(
                    "data must hold whole frames of {channels} channels × {width} bytes ({frame} bytes), got {} bytes",
                    data.len()
                )));
            }
            let samples = if width == 2 {
                data.chunks_exact(2).map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0).collect()
            } else {
                data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
            };
            Clip { samples, channels: channels as usize, sample_rate }
        }
    };
    if let Some(at) = clip.samples.iter().position(|s| !s.is_finite() || s.abs() > MAX_MAGNITUDE) {
        return Err(bad(format!(
            "samples must be finite and within [-{MAX_MAGNITUDE}, {MAX_MAGNITUDE}] (full scale is ±1), got {} at sample {at}",
            clip.samples[at]
        )));
    }
    if clip.frames() == 0 {
        return Err(bad("must hold at least one sample".into()));
    }
    if clip.seconds() > limits.max_seconds {
        return Err(bad(format!(
            "must be at most {} s of audio, got {:.3} s",
            limits.max_seconds,
            clip.seconds()
        )));
    }
    Ok(clip)
}

fn check_format(sample_rate: u32, channels: u32) -> Result<(), String> {
    if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&sample_rate) {
        return Err(format!(
            "sample_rate must be {MIN_SAMPLE_RATE}..={MAX_SAMPLE_RATE} Hz, got {sample_rate}"
        ));
    }
    if channels == 0 || channels > MAX_CHANNELS {
        return Err(format!("channels must be 1..={MAX_CHANNELS}, got {channels}"));
    }
    Ok(())
}

fn wav(data: &[u8], (sample_rate, channels): (u32, u32)) -> Result<Clip, String> {
    let mut reader = hound::WavReader::new(data).map_err(|e| format!("not a readable WAV file: {e}"))?;
    let spec = reader.spec();
    check_format(spec.sample_rate, u32::from(spec.channels))?;
    if sample_rate != 0 && sample_rate != spec.sample_rate {
        return Err(format!("sample_rate says {sample_rate} Hz, the WAV header {} Hz", spec.sample_rate));
    }
    if channels != 0 && channels != u32::from(spec.channels) {
        return Err(format!("channels says {channels}, the WAV header {}", spec.channels));
    }
    let samples: Result<Vec<f32>, hound::Error> = match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().collect(),
        hound::SampleFormat::Int => {
            let scale = 2f32.powi(i32::from(spec.bits_per_sample) - 1);
            reader.samples::<i32>().map(|s| s.map(|v| v as f32 / scale)).collect()
        }
    };
    let samples = samples.map_err(|e| format!("WAV data cannot be read: {e}"))?;
    Ok(Clip { samples, channels: usize::from(spec.channels), sample_rate: spec.sample_rate })
}

impl Clip {
    /// This clip at `sample_rate` with `channels` channels, and what was done to get there (for the
    /// stream's header): resampled, averaged down to mono, or mono copied to every channel (other
    /// counts keep the first channels, or repeat the last).
    pub fn conform(self, sample_rate: u32, channels: usize) -> Result<(Clip, Vec<String>), Error> {
        let mut notes = Vec::new();
        let mut clip = self;
        if clip.channels != channels {
            notes.push(format!("{} channels made {channels}", clip.channels));
            clip = clip.with_channels(channels);
        }
        if clip.sample_rate != sample_rate {
            notes.push(format!("resampled from {} Hz to {sample_rate} Hz", clip.sample_rate));
            clip = clip.resampled(sample_rate)?;
        }
        Ok((clip, notes))
    }

    fn with_channels(self, channels: usize) -> Clip {
        let (from, frames) = (self.channels, self.frames());
        let mut samples = Vec::with_capacity(frames * channels);
        for frame in self.samples.chunks_exact(from) {
            if channels == 1 {
                samples.push(frame.iter().sum::<f32>() / from as f32);
            } else {
                samples.extend((0..channels).map(|c| frame[c.min(from - 1)]));
            }
        }
        Clip { samples, channels, ..self }
    }

    fn resampled(self, sample_rate: u32) -> Result<Clip, Error> {
        let fail = |e: &dyn std::fmt::Display| Error::Internal(format!("resampling failed: {e}"));
        let (frames, channels) = (self.frames(), self.channels);
        let mut resampler =
            Fft::<f32>::new(self.sample_rate as usize, sample_rate as usize, 1024, channels, FixedSync::Both)
                .map_err(|e| fail(&e))?;
        let input = InterleavedOwned::new_from(self.samples, channels, frames).map_err(|e| fail(&e))?;
        let out = resampler.process_all(&input, frames, None).map_err(|e| fail(&e))?;
        Ok(Clip { samples: out.take_data(), channels, sample_rate })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f64, seconds: f64) -> Vec<f32> {
        let n = (f64::from(rate) * seconds) as usize;
        (0..n)
            .map(|i| (0.5 * (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin()) as f32)
            .collect()
    }

    /// The strongest frequency of `samples` by a plain DFT scan over whole hertz near `around`.
    fn peak_hz(samples: &[f32], rate: u32, around: f64) -> f64 {
        let power = |hz: f64| {
            let (mut re, mut im) = (0.0, 0.0);
            for (i, s) in samples.iter().enumerate() {
                let phase = 2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate);
                re += f64::from(*s) * phase.cos();
                im += f64::from(*s) * phase.sin();
            }
            re * re + im * im
        };
        let candidates = (-20..=20).map(|d| around + f64::from(d));
        candidates.max_by(|a, b| power(*a).total_cmp(&power(*b))).unwrap()
    }

    fn rms_db(samples: &[f32]) -> f64 {
        let mean = samples.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / samples.len() as f64;
        10.0 * mean.log10()
    }

    #[test]
    fn resampling_keeps_frequency_and_level() {
        let input = sine(44_100, 440.0, 1.0);
        let clip = Clip { samples: input.clone(), channels: 1, sample_rate: 44_100 };
        let (out, notes) = clip.conform(32_000, 1).unwrap();
        assert_eq!(notes, ["resampled from 44100 Hz to 32000 Hz"]);
        assert!((out.frames() as i64 - 32_000).abs() <= 2, "{} frames", out.frames());
        assert_eq!(peak_hz(&out.samples, 32_000, 440.0), 440.0);
        // Away from the edges, the level is the input's within 0.1 dB.
        let (a, b) = (rms_db(&input[4410..39690]), rms_db(&out.samples[3200..28800]));
        assert!((a - b).abs() <= 0.1, "{a:.3} dB in, {b:.3} dB out");
    }

    #[test]
    fn channels_are_averaged_down_or_copied() {
        let stereo = Clip { samples: vec![0.2, 0.4, -1.0, 1.0], channels: 2, sample_rate: 8000 };
        let (mono, notes) = stereo.conform(8000, 1).unwrap();
        assert_eq!((mono.samples.as_slice(), notes.len()), (&[0.3f32, 0.0][..], 1));
        let (back, _) = mono.conform(8000, 2).unwrap();
        assert_eq!(back.samples, [0.3, 0.3, 0.0, 0.0]);
    }

    #[test]
    fn bad_audio_names_field_limit_and_value() {
        let limits = AudioLimits { max_seconds: 1.0, max_bytes: 64_000 };
        let message = |data: &[u8], enc, fmt| match decode("audio_prompt", data, enc, fmt, limits) {
            Err(Error::InvalidArgument { field: "audio_prompt", message }) => message,
            other => panic!("{other:?}"),
        };
        assert!(message(&[0; 3], Encoding::PcmS16le, (8000, 1)).contains("whole frames"));
        assert!(message(&[0; 4], Encoding::PcmS16le, (0, 1))
            .contains("sample_rate must be 8000..=384000 Hz, got 0"));
        // A fuzzing find: at 1 Hz, the resampler to 32 kHz took minutes and over a gigabyte.
        assert!(message(&[0; 2], Encoding::PcmS16le, (1, 1)).contains("8000..=384000 Hz, got 1"));
        assert!(message(&[0; 4], Encoding::PcmS16le, (8000, 0)).contains("channels must be 1..=8, got 0"));
        let nan: Vec<u8> = [0.0f32, f32::NAN].iter().flat_map(|f| f.to_le_bytes()).collect();
        assert!(message(&nan, Encoding::PcmF32le, (8000, 1))
            .contains("finite and within [-16777216, 16777216] (full scale is ±1), got NaN at sample 1"));
        // A fuzzing find: finite samples near the f32 limit overflowed the resampler into a panic.
        let huge: Vec<u8> = [0.5f32, 2.5e38].iter().flat_map(|f| f.to_le_bytes()).collect();
        assert!(message(&huge, Encoding::PcmF32le, (8000, 1))
            .contains("got 250000000000000000000000000000000000000 at sample 1"));
        assert!(message(&[0; 32_000], Encoding::PcmS16le, (8000, 1))
            .contains("at most 1 s of audio, got 2.000 s"));
        assert!(
            message(&[0; 64_002], Encoding::PcmS16le, (8000, 1)).contains("at most 64000 bytes, got 64002")
        );
        assert!(message(b"RIFFnope", Encoding::Wav, (0, 0)).contains("not a readable WAV file"));
    }

    #[test]
    fn wav_files_decode_with_their_header() {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut bytes = std::io::Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut bytes, spec).unwrap();
        for s in [16_384i16, -16_384, 0, 8192] {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        let data = bytes.into_inner();
        let clip = decode("audio_prompt", &data, Encoding::Wav, (0, 0), AudioLimits::default()).unwrap();
        assert_eq!((clip.channels, clip.sample_rate, clip.samples), (2, 16_000, vec![0.5, -0.5, 0.0, 0.25]));
        let err = decode("melody", &data, Encoding::Wav, (44_100, 0), AudioLimits::default()).unwrap_err();
        assert!(
            err.to_string().contains("melody: sample_rate says 44100 Hz, the WAV header 16000 Hz"),
            "{err}"
        );
    }
}
