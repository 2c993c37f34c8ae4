//! A WAV file written progressively as audio chunks arrive: the header is rewritten after every
//! chunk, so the file on disk is a valid WAV of everything received so far, even if the command is
//! interrupted or the stream fails midway.

use std::{fs::File, io::BufWriter, path::Path};

use maestro_proto::AudioFormat;

use crate::{exit::Failure, units};

type Writer = hound::WavWriter<BufWriter<File>>;

/// An open WAV file and how much has been written to it.
pub struct WavSink {
    writer: Writer,
    format: AudioFormat,
    channels: u16,
    sample_rate: u32,
    written: u64,
    path: String,
}

impl WavSink {
    /// Creates (or truncates) `path` for PCM in `format` (S16LE when unspecified).
    pub fn create(
        path: &Path,
        sample_rate: u32,
        channels: u32,
        format: AudioFormat,
    ) -> Result<Self, Failure> {
        let shown = path.display().to_string();
        let channels = u16::try_from(channels)
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| Failure::io(&shown, format!("the server announced {channels} channels")))?;
        let format = if format == AudioFormat::PcmF32le { format } else { AudioFormat::PcmS16le };
        let (bits_per_sample, sample_format) = match format {
            AudioFormat::PcmF32le => (32, hound::SampleFormat::Float),
            _ => (16, hound::SampleFormat::Int),
        };
        let spec = hound::WavSpec { channels, sample_rate, bits_per_sample, sample_format };
        let writer = hound::WavWriter::create(path, spec)
            .map_err(|e| Failure::io(format!("cannot create {shown}"), e))?;
        Ok(Self { writer, format, channels, sample_rate, written: 0, path: shown })
    }

    /// Appends one chunk of little-endian interleaved PCM and updates the header on disk.
    pub fn write_chunk(&mut self, data: &[u8]) -> Result<(), Failure> {
        let width = if self.format == AudioFormat::PcmF32le { 4 } else { 2 };
        let frame = width * usize::from(self.channels);
        if data.len() % frame != 0 {
            let msg = format!("a chunk of {} bytes is not whole frames of {frame} bytes", data.len());
            return Err(Failure::io(&self.path, msg));
        }
        let result = if width == 4 {
            data.chunks_exact(4)
                .try_for_each(|b| self.writer.write_sample(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        } else {
            data.chunks_exact(2).try_for_each(|b| self.writer.write_sample(i16::from_le_bytes([b[0], b[1]])))
        };
        result
            .and_then(|()| self.writer.flush())
            .map_err(|e| Failure::io(format!("cannot write {}", self.path), e))?;
        self.written += (data.len() / frame) as u64;
        Ok(())
    }

    /// Samples per channel written so far.
    pub fn samples(&self) -> u64 {
        self.written
    }

    /// Seconds of audio written so far.
    pub fn seconds(&self) -> f64 {
        self.written as f64 / f64::from(self.sample_rate.max(1))
    }

    /// One line describing the file: `out.wav: 8.00 s, 32000 Hz, 1 channel(s), s16`.
    pub fn describe(&self) -> String {
        let format = if self.format == AudioFormat::PcmF32le { "f32" } else { "s16" };
        let size =
            units::bytes(self.written * u64::from(self.channels) * if format == "f32" { 4 } else { 2 });
        format!(
            "{}: {:.2} s, {} Hz, {} channel(s), {format}, {size} of samples",
            self.path,
            self.seconds(),
            self.sample_rate,
            self.channels
        )
    }

    /// Writes the final header and closes the file.
    pub fn finish(self) -> Result<(), Failure> {
        let path = self.path;
        self.writer.finalize().map_err(|e| Failure::io(format!("cannot finish {path}"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_valid_after_every_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let mut sink = WavSink::create(&path, 32_000, 1, AudioFormat::PcmS16le).unwrap();
        let chunk: Vec<u8> = (0..100i16).flat_map(|s| s.to_le_bytes()).collect();
        sink.write_chunk(&chunk).unwrap();
        let reader = hound::WavReader::open(&path).unwrap();
        assert_eq!(reader.len(), 100, "the header counts what was written before finishing");
        sink.write_chunk(&chunk).unwrap();
        sink.finish().unwrap();
        let reader = hound::WavReader::open(&path).unwrap();
        assert_eq!((reader.len(), reader.spec().sample_rate), (200, 32_000));
    }

    #[test]
    fn float_chunks_round_trip_and_partial_frames_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.wav");
        let mut sink = WavSink::create(&path, 16_000, 2, AudioFormat::PcmF32le).unwrap();
        let chunk: Vec<u8> = [0.5f32, -0.25].iter().flat_map(|s| s.to_le_bytes()).collect();
        sink.write_chunk(&chunk).unwrap();
        assert!(sink.write_chunk(&chunk[..4]).is_err(), "half a stereo frame");
        assert_eq!(sink.samples(), 1);
        sink.finish().unwrap();
        let mut reader = hound::WavReader::open(&path).unwrap();
        let samples: Vec<f32> = reader.samples::<f32>().map(Result::unwrap).collect();
        assert_eq!(samples, vec![0.5, -0.25]);
    }
}
