//! The fuzzing entry point of audio input: bytes decoded as a request's clip (raw PCM of either
//! width or a WAV file, with the rate and channel count the request claims), then brought to a
//! model's rate and channels as a generation does. Whatever the bytes, the result is a clip or an
//! error naming the field, never a panic; what decoding accepts is within its limits. Shared by the
//! `cargo fuzz` target (`fuzz/`) and the property tests in `make test`.

use super::{decode, AudioLimits, Encoding, MAX_MAGNITUDE};

/// Bytes of an input's header, before the audio: encoding, claimed rate (u32, little-endian),
/// claimed channels, the model's rate and the model's channels, one byte each but the rate.
pub const HEADER_BYTES: usize = 8;

/// Most audio bytes one input decodes: a fuzzing run must not spend its memory on one input (the
/// server's own limit is [`AudioLimits::max_bytes`], enforced the same way).
pub const MAX_BYTES: usize = 256 << 10;

/// Rates a model may run at, as the model-rate byte picks them.
pub const MODEL_RATES: [u32; 5] = [16_000, 24_000, 32_000, 44_100, 48_000];

/// The encodings, as the first header byte picks them.
pub const ENCODINGS: [Encoding; 3] = [Encoding::PcmS16le, Encoding::PcmF32le, Encoding::Wav];

/// Decodes the audio after the header (see [`HEADER_BYTES`]) and conforms what decodes.
pub fn check(bytes: &[u8]) {
    let Some((head, data)) = bytes.split_first_chunk::<HEADER_BYTES>() else { return };
    let encoding = ENCODINGS[usize::from(head[0]) % ENCODINGS.len()];
    let claimed = (u32::from_le_bytes([head[1], head[2], head[3], head[4]]), u32::from(head[5]));
    let model_rate = MODEL_RATES[usize::from(head[6]) % MODEL_RATES.len()];
    let model_channels = 1 + usize::from(head[7] % 2);
    let limits = AudioLimits { max_bytes: MAX_BYTES, ..AudioLimits::default() };
    let Ok(clip) = decode("audio_prompt", data, encoding, claimed, limits) else { return };
    assert!(clip.samples.iter().all(|s| s.abs() <= MAX_MAGNITUDE), "decoded a sample past the limit");
    assert!(clip.frames() > 0 && clip.seconds() <= limits.max_seconds, "decoded {} s", clip.seconds());
    assert_eq!(clip.samples.len() % clip.channels, 0, "decoded a partial frame");
    if let Ok((out, _)) = clip.conform(model_rate, model_channels) {
        assert_eq!((out.sample_rate, out.channels), (model_rate, model_channels));
        assert_eq!(out.samples.len() % model_channels, 0, "conformed a partial frame");
    }
}

/// An input: the header for `encoding`, its claimed `(rate, channels)` and a model at
/// `MODEL_RATES[model]` with `model_channels`, then `audio`.
pub fn input(encoding: u8, claimed: (u32, u8), model: u8, model_channels: u8, audio: &[u8]) -> Vec<u8> {
    let mut bytes = vec![encoding];
    bytes.extend(claimed.0.to_le_bytes());
    bytes.extend([claimed.1, model, model_channels.saturating_sub(1)]);
    bytes.extend_from_slice(audio);
    bytes
}
