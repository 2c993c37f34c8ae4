//! Which kind of file `generate` writes, read from the output path's extension (`-o music.flac`),
//! and the wire format that asks the server for it. A `.wav` (or a name without an extension) is
//! written here from raw PCM, as before; the other kinds arrive already encoded by the server.

use std::path::Path;

use maestro_proto as pb;

use crate::{args::FormatArg, exit, Failure};

/// The extensions `-o` accepts, as the usage error lists them.
pub const EXTENSIONS: &str = ".wav, .flac, .ogg, .opus, .mp3";

/// A kind of audio file `generate` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// RIFF WAVE from raw PCM, written here (s16 or f32, per `--format`).
    Wav,
    /// FLAC, 16-bit, lossless; encoded by the server.
    Flac,
    /// Opus in Ogg at 48 kHz; encoded by the server.
    OggOpus,
    /// MP3 at 128 kbit/s; encoded by the server.
    Mp3,
}

impl FileFormat {
    /// The kind `path`'s extension names (any case). No extension means WAV, as it always did; an
    /// extension this client does not write is a usage error rather than a WAV under a name that
    /// promises something else.
    pub fn from_path(path: &Path) -> Result<Self, Failure> {
        let Some(ext) = path.extension() else {
            return Ok(Self::Wav);
        };
        match ext.to_string_lossy().to_ascii_lowercase().as_str() {
            // `out.` has an empty extension: no extension either.
            "" | "wav" => Ok(Self::Wav),
            "flac" => Ok(Self::Flac),
            "ogg" | "opus" => Ok(Self::OggOpus),
            "mp3" => Ok(Self::Mp3),
            other => Err(Failure::new(
                exit::USAGE,
                format!(
                    "cannot write a .{other} file ({}): the output's extension picks the format, one of {EXTENSIONS}",
                    path.display()
                ),
            )),
        }
    }

    /// The format to ask the server for: raw PCM in `sample` for a WAV, the file itself otherwise.
    /// f32 samples exist only in a WAV, so `--format f32` with another extension is a usage error.
    pub fn wire_format(self, sample: FormatArg) -> Result<pb::AudioFormat, Failure> {
        match (self, sample) {
            (Self::Wav, FormatArg::S16) => Ok(pb::AudioFormat::PcmS16le),
            (Self::Wav, FormatArg::F32) => Ok(pb::AudioFormat::PcmF32le),
            (_, FormatArg::F32) => Err(Failure::new(
                exit::USAGE,
                format!("--format f32 needs a .wav output; a {} file has its own encoding", self.label()),
            )),
            (Self::Flac, FormatArg::S16) => Ok(pb::AudioFormat::Flac),
            (Self::OggOpus, FormatArg::S16) => Ok(pb::AudioFormat::OggOpus),
            (Self::Mp3, FormatArg::S16) => Ok(pb::AudioFormat::Mp3),
        }
    }

    /// The kind the server sends as `format`; `None` for raw PCM (written here as a WAV).
    pub fn encoded(format: pb::AudioFormat) -> Option<Self> {
        match format {
            pb::AudioFormat::Wav => Some(Self::Wav),
            pb::AudioFormat::Flac => Some(Self::Flac),
            pb::AudioFormat::OggOpus => Some(Self::OggOpus),
            pb::AudioFormat::Mp3 => Some(Self::Mp3),
            pb::AudioFormat::Unspecified | pb::AudioFormat::PcmS16le | pb::AudioFormat::PcmF32le => None,
        }
    }

    /// Its name in messages.
    pub fn label(self) -> &'static str {
        match self {
            Self::Wav => "WAV",
            Self::Flac => "FLAC",
            Self::OggOpus => "Ogg Opus",
            Self::Mp3 => "MP3",
        }
    }

    /// The sample rate inside the file for audio at the model's `rate`: Opus has no 32 kHz mode,
    /// so the server resamples to 48 kHz.
    pub fn file_rate(self, rate: u32) -> u32 {
        if self == Self::OggOpus {
            48_000
        } else {
            rate
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format_of(name: &str, sample: FormatArg) -> Result<pb::AudioFormat, u8> {
        FileFormat::from_path(Path::new(name)).and_then(|f| f.wire_format(sample)).map_err(|f| f.code)
    }

    #[test]
    fn the_extension_picks_the_format() {
        assert_eq!(format_of("a.wav", FormatArg::S16), Ok(pb::AudioFormat::PcmS16le));
        assert_eq!(format_of("a.WAV", FormatArg::F32), Ok(pb::AudioFormat::PcmF32le));
        assert_eq!(format_of("out", FormatArg::S16), Ok(pb::AudioFormat::PcmS16le));
        assert_eq!(format_of("dir.d/a.flac", FormatArg::S16), Ok(pb::AudioFormat::Flac));
        assert_eq!(format_of("a.ogg", FormatArg::S16), Ok(pb::AudioFormat::OggOpus));
        assert_eq!(format_of("a.Opus", FormatArg::S16), Ok(pb::AudioFormat::OggOpus));
        assert_eq!(format_of("a.mp3", FormatArg::S16), Ok(pb::AudioFormat::Mp3));
    }

    #[test]
    fn unknown_extensions_and_f32_outside_a_wav_are_usage_errors() {
        assert_eq!(format_of("a.aac", FormatArg::S16), Err(exit::USAGE));
        assert_eq!(format_of("a.mp3", FormatArg::F32), Err(exit::USAGE));
        assert_eq!(format_of("a.ogg", FormatArg::F32), Err(exit::USAGE));
        let message = FileFormat::from_path(Path::new("x.m4a")).unwrap_err().message;
        assert!(message.contains(".m4a") && message.contains(EXTENSIONS), "{message}");
    }

    #[test]
    fn every_encoded_kind_maps_back_from_its_wire_format() {
        for kind in [FileFormat::Flac, FileFormat::OggOpus, FileFormat::Mp3] {
            assert_eq!(FileFormat::encoded(kind.wire_format(FormatArg::S16).unwrap()), Some(kind));
        }
        assert_eq!(FileFormat::encoded(pb::AudioFormat::PcmS16le), None);
        assert_eq!(FileFormat::OggOpus.file_rate(32_000), 48_000);
    }
}
