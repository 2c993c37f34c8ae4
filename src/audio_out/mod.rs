//! Streaming audio encoders: generated audio (f32 samples in [-1, 1], interleaved) leaves the server
//! as it is generated, in one of four containers. Every chunk an encoder returns is made of whole
//! frames or pages, so the chunks concatenate into one valid file and a client can play the stream
//! while it is still arriving. Free of libtorch and of any runtime: plain synchronous state.
//!
//! | container | MIME type | codec and crate | default bitrate |
//! |---|---|---|---|
//! | [`Container::Wav`] | `audio/wav` | 16-bit PCM, header written by hand | lossless ([`PCM_BITS`] bits) |
//! | [`Container::Flac`] | `audio/flac` | 16-bit FLAC, `flacenc` (pure Rust) | lossless |
//! | [`Container::OggOpus`] | `audio/ogg; codecs=opus` | libopus (`opus`), Ogg pages (`ogg`), 48 kHz (`rubato`) | [`OPUS_BITRATE_STEREO`] / [`OPUS_BITRATE_MONO`] bit/s |
//! | [`Container::Mp3`] | `audio/mpeg` | LAME (`mp3lame-encoder`), constant bitrate | [`MP3_BITRATE_KBPS`] kbit/s |
//!
//! Why these crates:
//! - `flacenc` encodes one fixed-size block at a time (`encode_fixed_size_frame`), so frames leave as
//!   soon as a block is full; the other pure-Rust choice was none (`claxon` only decodes).
//! - `opus` 0.3 rather than the newer 0.4: 0.4's `opusic-sys` always compiles its bundled libopus
//!   with CMake, while 0.3's `audiopus_sys` links the system's libopus (Debian's `libopus-dev`)
//!   found through pkg-config, which `scripts/provision-build.sh` installs.
//! - `ogg` is the Rust Audio project's page writer (pages, lacing, CRC); Opus framing on top of it
//!   (OpusHead, OpusTags, granule positions) is ours.
//! - `mp3lame-encoder` bundles LAME 3.100 (LGPL-3.0, see `LICENSES/LAME.txt`) and builds it with
//!   the C toolchain only; LAME returns whole MP3 frames from each call.
//!
//! What every container shares (the intake, `pcm.rs`):
//! - Samples are sanitized first: NaN becomes 0, ±infinity and anything beyond ±1 is clamped to ±1.
//!   16-bit containers then store `round(x * 32767)`.
//! - The stream holds exactly [`StreamInfo::total_frames`] frames, as announced up front: samples
//!   pushed past it are dropped, and a stream finished short of it is padded with silence. A
//!   trailing partial frame (fewer samples than channels) is completed with silence.

mod container;
mod flac;
#[cfg(test)]
mod lossy_tests;
mod mp3;
mod mp3_frames;
mod ogg_opus;
mod pcm;
mod resample;
#[cfg(test)]
mod test_support;
mod wav;

pub use container::Container;

/// Bits per sample of the PCM containers (WAV and FLAC).
pub const PCM_BITS: u16 = 16;
/// Opus's bitrate for stereo streams, in bit/s: transparent for most music at 48 kHz.
pub const OPUS_BITRATE_STEREO: u32 = 96_000;
/// Opus's bitrate for mono streams, in bit/s.
pub const OPUS_BITRATE_MONO: u32 = 64_000;
/// MP3's constant bitrate, in kbit/s, mono and stereo alike (a valid MPEG-1 rate at 32 kHz).
pub const MP3_BITRATE_KBPS: u32 = 128;

/// The audio an encoder receives: its rate, its channel count, and how many frames (samples per
/// channel) the whole stream holds, known before the first sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamInfo {
    /// Frames per second (MusicGen: 32 000).
    pub sample_rate: u32,
    /// Channels, interleaved in what `push` receives (MusicGen: 1 or 2).
    pub channels: u16,
    /// The stream's length in frames; the file is exactly this long (see the module header).
    pub total_frames: u64,
}

/// One stream's encoder: `begin`, then `push` as audio arrives, then `finish`.
pub trait AudioEncoder: Send {
    /// Bytes that start the stream (headers); may be empty.
    fn begin(&mut self) -> Result<Vec<u8>, EncodeError>;
    /// Encodes interleaved f32 samples; returns only whole frames/pages (possibly empty, holding the
    /// remainder).
    fn push(&mut self, interleaved: &[f32]) -> Result<Vec<u8>, EncodeError>;
    /// Flushes what is held and ends the stream (the last page/frame, trailers).
    fn finish(self: Box<Self>) -> Result<Vec<u8>, EncodeError>;
}

/// What failed while setting up or running an encoder.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The container cannot carry this many channels.
    #[error("{container:?} cannot carry {channels} channels (1 to {max})")]
    Channels {
        /// The container asked for.
        container: Container,
        /// The channels given.
        channels: u16,
        /// The most it carries.
        max: u16,
    },
    /// The container (or its codec) cannot carry this sample rate.
    #[error("{container:?} cannot carry a sample rate of {sample_rate} Hz")]
    SampleRate {
        /// The container asked for.
        container: Container,
        /// The rate given.
        sample_rate: u32,
    },
    /// The stream is longer than the container's size fields can say.
    #[error("{container:?} cannot hold {total_frames} frames (at most {max})")]
    TooLong {
        /// The container asked for.
        container: Container,
        /// The frames announced.
        total_frames: u64,
        /// The most it holds at this channel count.
        max: u64,
    },
    /// The FLAC encoder refused a setting or a block.
    #[error("FLAC encoding failed: {0}")]
    Flac(String),
    /// libopus refused a setting or a frame.
    #[error("Opus encoding failed: {0}")]
    Opus(#[from] opus::Error),
    /// The Ogg page writer failed.
    #[error("Ogg page writing failed: {0}")]
    Ogg(#[from] std::io::Error),
    /// Bringing the audio to Opus's 48 kHz failed.
    #[error("resampling to 48 kHz failed: {0}")]
    Resample(String),
    /// LAME refused a setting or a buffer.
    #[error("MP3 encoding failed: {0}")]
    Mp3(String),
}

/// An encoder for `container`, checked against what the container can carry.
pub fn encoder(container: Container, info: StreamInfo) -> Result<Box<dyn AudioEncoder>, EncodeError> {
    Ok(match container {
        Container::Wav => Box::new(wav::WavEncoder::new(info)?),
        Container::Flac => Box::new(flac::FlacEncoder::new(info)?),
        Container::OggOpus => Box::new(ogg_opus::OggOpusEncoder::new(info)?),
        Container::Mp3 => Box::new(mp3::Mp3Encoder::new(info)?),
    })
}

/// Refuses a channel count outside `1..=max` for `container`, and a sample rate of 0.
fn check_layout(container: Container, info: &StreamInfo, max: u16) -> Result<(), EncodeError> {
    if !(1..=max).contains(&info.channels) {
        return Err(EncodeError::Channels { container, channels: info.channels, max });
    }
    if info.sample_rate == 0 {
        return Err(EncodeError::SampleRate { container, sample_rate: 0 });
    }
    Ok(())
}
