//! What the encoders' tests share: test signals, pushing a signal through an encoder in chunks of a
//! given size, the expected 16-bit samples, and decoding with ffmpeg (required, never skipped:
//! `scripts/provision-tools.sh` installs it).

use std::{io::Write, process::Command};

use super::{encoder, pcm::to_i16, Container, StreamInfo};

/// Push sizes in samples, by channel count: 1 sample, 1 frame, 7 frames, 10 000 frames.
pub(super) const PUSH_SIZES: [fn(u16) -> usize; 4] =
    [|_| 1, usize::from, |c| 7 * usize::from(c), |c| 10_000 * usize::from(c)];

/// `frames` frames of a 0.5-amplitude sine at `hz` (32 kHz), the same in every channel but the
/// second, which is inverted so channel swaps would show.
pub(super) fn sine(channels: u16, frames: usize, hz: f64) -> Vec<f32> {
    (0..frames)
        .flat_map(|i| {
            let s = 0.5 * (2.0 * std::f64::consts::PI * hz * i as f64 / 32_000.0).sin();
            (0..channels).map(move |c| if c == 1 { -s as f32 } else { s as f32 })
        })
        .collect()
}

/// The chunks an encoder returns for `input` pushed `push` samples at a time: `begin`'s, every
/// non-empty `push`'s, and `finish`'s.
pub(super) fn encode_chunks(
    container: Container,
    info: StreamInfo,
    input: &[f32],
    push: usize,
) -> Vec<Vec<u8>> {
    let mut enc = encoder(container, info).expect("an encoder");
    let mut chunks = vec![enc.begin().expect("begin")];
    for piece in input.chunks(push.max(1)) {
        chunks.push(enc.push(piece).expect("push"));
    }
    chunks.push(enc.finish().expect("finish"));
    chunks.retain(|c| !c.is_empty());
    chunks
}

/// The whole file: every chunk, concatenated.
pub(super) fn encode_in_pushes(
    container: Container,
    info: StreamInfo,
    input: &[f32],
    push: usize,
) -> Vec<u8> {
    encode_chunks(container, info, input, push).concat()
}

/// The 16-bit samples a lossless container must hold for `input`: held to the stream's length.
pub(super) fn expected_i16(input: &[f32], info: StreamInfo) -> Vec<i16> {
    let len = info.total_frames as usize * usize::from(info.channels);
    let mut out: Vec<i16> = input.iter().take(len).map(|s| to_i16(*s)).collect();
    out.resize(len, 0);
    out
}

/// ffmpeg's decoding of `bytes` (a file ending in `.ext`) as interleaved f32 samples at the file's
/// own rate and channel count. Panics when ffmpeg is missing or refuses the file.
pub(super) fn ffmpeg_decode(bytes: &[u8], ext: &str) -> Vec<f32> {
    let mut file = tempfile::Builder::new().suffix(&format!(".{ext}")).tempfile().unwrap();
    file.write_all(bytes).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(file.path())
        .args(["-f", "f32le", "-"])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run ffmpeg ({e}): it must be on PATH; scripts/provision-tools.sh installs it")
        });
    assert!(out.status.success(), "ffmpeg refused the .{ext} file: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "ffmpeg complained: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

/// The amplitude of the `hz` component of channel `channel` (Goertzel over the middle half, away
/// from the codecs' start-up and the padding at the end).
pub(super) fn tone_amplitude(samples: &[f32], channels: usize, channel: usize, rate: f64, hz: f64) -> f64 {
    let mono: Vec<f64> = samples.iter().skip(channel).step_by(channels).map(|s| f64::from(*s)).collect();
    let middle = &mono[mono.len() / 4..mono.len() * 3 / 4];
    let w = 2.0 * std::f64::consts::PI * hz / rate;
    let (mut s1, mut s2) = (0.0, 0.0);
    for x in middle {
        let s0 = x + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    2.0 * power.sqrt() / middle.len() as f64
}

/// Root mean square of every sample.
pub(super) fn rms(samples: &[f32]) -> f64 {
    (samples.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / samples.len().max(1) as f64).sqrt()
}
