//! An encoded audio file (FLAC, Ogg Opus, MP3) written as its chunks arrive. The server sends whole
//! encoder frames or pages, the first chunk with the file's header and a last one after the audio
//! with what the encoder flushed, so appending each chunk's bytes in order is the whole file. A file
//! cut short (Ctrl-C, a failed stream) keeps every frame that arrived but lacks that last chunk.
//!
//! Encoded bytes do not say how many samples they hold, so the sink counts samples by the chunks'
//! offsets: the audio before the latest chunk, which is the whole length once the flush chunk (whose
//! offset is the header's expected total) has arrived, and a lower bound before.

use std::{fs::File, io::Write, path::Path};

use maestro_proto as pb;

use crate::{exit::Failure, file_format::FileFormat, units};

/// An open encoded file and what has been written to it.
pub struct EncodedSink {
    file: File,
    kind: FileFormat,
    sample_rate: u32,
    channels: u32,
    expected: u64,
    next_index: u32,
    offset: u64,
    bytes: u64,
    path: String,
}

impl EncodedSink {
    /// Creates (or truncates) `path` for a `kind` file of the audio `header` announces.
    pub fn create(path: &Path, kind: FileFormat, header: &pb::Header) -> Result<Self, Failure> {
        let shown = path.display().to_string();
        let file = File::create(path).map_err(|e| Failure::io(format!("cannot create {shown}"), e))?;
        Ok(Self {
            file,
            kind,
            sample_rate: header.sample_rate,
            channels: header.channels,
            expected: header.expected_samples,
            next_index: 0,
            offset: 0,
            bytes: 0,
            path: shown,
        })
    }

    /// Why `chunk` cannot follow what arrived, if it cannot. Without sample counts, a lost chunk
    /// shows as a gap in the indices, a misplaced one as an offset before the previous one's.
    pub fn check(&self, chunk: &pb::AudioChunk) -> Result<(), String> {
        if chunk.index != self.next_index {
            return Err(format!("chunk {} arrived where chunk {} was due", chunk.index, self.next_index));
        }
        let first_misplaced = chunk.index == 0 && chunk.sample_offset != 0;
        if first_misplaced || chunk.sample_offset < self.offset {
            return Err(format!(
                "chunk {} starts at sample {}, expected {} or later",
                chunk.index, chunk.sample_offset, self.offset
            ));
        }
        Ok(())
    }

    /// Appends `chunk`'s bytes (unbuffered, so the file on disk holds every chunk received).
    pub fn write_chunk(&mut self, chunk: &pb::AudioChunk) -> Result<(), Failure> {
        self.file
            .write_all(&chunk.data)
            .map_err(|e| Failure::io(format!("cannot write {}", self.path), e))?;
        self.next_index = chunk.index + 1;
        self.offset = chunk.sample_offset;
        self.bytes += chunk.data.len() as u64;
        Ok(())
    }

    /// Samples per channel before the latest chunk: the whole length after the flush chunk.
    pub fn samples(&self) -> u64 {
        self.offset
    }

    /// [`Self::samples`] in seconds.
    pub fn seconds(&self) -> f64 {
        self.offset as f64 / f64::from(self.sample_rate.max(1))
    }

    /// One line describing the file: `out.flac: 8.00 s, FLAC, 32000 Hz, 1 channel(s), 212.4 KiB`;
    /// `at least 3.75 s (cut short)` before the flush chunk.
    pub fn describe(&self) -> String {
        let length = if self.offset < self.expected {
            format!("at least {:.2} s (cut short)", self.seconds())
        } else {
            format!("{:.2} s", self.seconds())
        };
        format!(
            "{}: {length}, {}, {} Hz, {} channel(s), {}",
            self.path,
            self.kind.label(),
            self.kind.file_rate(self.sample_rate),
            self.channels,
            units::bytes(self.bytes)
        )
    }

    /// Closes the file, reporting a failure to write it out.
    pub fn finish(self) -> Result<(), Failure> {
        self.file.sync_data().map_err(|e| Failure::io(format!("cannot finish {}", self.path), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(index: u32, sample_offset: u64, data: &[u8]) -> pb::AudioChunk {
        pb::AudioChunk { index, sample_offset, data: data.to_vec(), ..Default::default() }
    }

    fn header(expected_samples: u64) -> pb::Header {
        pb::Header { sample_rate: 32_000, channels: 1, expected_samples, ..Default::default() }
    }

    #[test]
    fn chunks_are_appended_and_counted_by_their_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.flac");
        let mut sink = EncodedSink::create(&path, FileFormat::Flac, &header(16_000)).unwrap();
        for c in [chunk(0, 0, b"fLaC"), chunk(1, 8_000, b""), chunk(2, 16_000, b"tail")] {
            sink.check(&c).unwrap();
            sink.write_chunk(&c).unwrap();
            assert_eq!(std::fs::read(&path).unwrap().len() as u64, sink.bytes, "on disk at once");
            if c.index == 1 {
                assert!(sink.describe().contains("at least 0.25 s (cut short)"), "{}", sink.describe());
            }
        }
        assert_eq!((sink.samples(), sink.seconds()), (16_000, 0.5));
        assert!(
            sink.describe().ends_with("a.flac: 0.50 s, FLAC, 32000 Hz, 1 channel(s), 8 B"),
            "{}",
            sink.describe()
        );
        sink.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"fLaCtail");
    }

    #[test]
    fn a_lost_or_misplaced_chunk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink =
            EncodedSink::create(&dir.path().join("a.mp3"), FileFormat::Mp3, &header(32_000)).unwrap();
        assert!(sink.check(&chunk(0, 640, b"")).is_err(), "the first chunk starts at 0");
        assert!(sink.check(&chunk(1, 0, b"")).is_err(), "chunk 0 is due");
        sink.write_chunk(&chunk(0, 0, b"ID3")).unwrap();
        sink.write_chunk(&chunk(1, 8_000, b"")).unwrap();
        assert!(sink.check(&chunk(2, 4_000, b"")).is_err(), "before the previous chunk");
        assert!(sink.check(&chunk(3, 16_000, b"")).is_err(), "chunk 2 was lost");
        assert!(sink.check(&chunk(2, 16_000, b"")).is_ok());
    }
}
