//! A generation's audio in the format its client asked for: raw PCM, or a file (WAV, FLAC, Ogg
//! Opus, MP3) written by [`crate::audio_out`] as the audio arrives. Each chunk of a file format
//! carries whole encoder frames or pages (the first one the file's header too), and a last chunk
//! after the audio carries what the encoder flushes, so the chunks' data concatenated is one valid
//! file of exactly the length the header announced. Encoding one chunk takes well under a
//! millisecond of work against the tens of milliseconds of audio it holds, so it stays on the
//! stream's task.

use tonic::Status;

use super::{convert, pb};
use crate::{
    audio_out::{self, AudioEncoder, Container, StreamInfo},
    generation::Chunk,
};

/// The container an encoded format is written in; `None` for raw PCM.
pub fn container(format: pb::AudioFormat) -> Option<Container> {
    match format {
        pb::AudioFormat::Wav => Some(Container::Wav),
        pb::AudioFormat::Flac => Some(Container::Flac),
        pb::AudioFormat::OggOpus => Some(Container::OggOpus),
        pb::AudioFormat::Mp3 => Some(Container::Mp3),
        pb::AudioFormat::Unspecified | pb::AudioFormat::PcmS16le | pb::AudioFormat::PcmF32le => None,
    }
}

/// The format that writes `container`.
pub fn format_of(container: Container) -> pb::AudioFormat {
    match container {
        Container::Wav => pb::AudioFormat::Wav,
        Container::Flac => pb::AudioFormat::Flac,
        Container::OggOpus => pb::AudioFormat::OggOpus,
        Container::Mp3 => pb::AudioFormat::Mp3,
    }
}

/// Writes one stream's chunks.
pub struct AudioWriter {
    format: pb::AudioFormat,
    encoder: Option<Box<dyn AudioEncoder>>,
    begun: bool,
    next_index: u32,
    total: (u64, u32),
}

fn failed(e: audio_out::EncodeError) -> Status {
    Status::internal(format!("encoding the audio failed: {e}"))
}

impl AudioWriter {
    /// The writer for the stream `header` opens.
    pub fn new(format: pb::AudioFormat, header: &pb::Header) -> Result<Self, Status> {
        let encoder = match container(format) {
            Some(c) => {
                let channels =
                    u16::try_from(header.channels).map_err(|_| Status::internal("too many channels"))?;
                let info = StreamInfo {
                    sample_rate: header.sample_rate,
                    channels,
                    total_frames: header.expected_samples,
                };
                Some(audio_out::encoder(c, info).map_err(failed)?)
            }
            None => None,
        };
        Ok(Self { format, encoder, begun: false, next_index: 0, total: (header.expected_samples, 0) })
    }

    /// The chunk on the wire for `chunk`.
    pub fn chunk(&mut self, chunk: &Chunk) -> Result<pb::AudioChunk, Status> {
        let mut out = convert::audio_chunk(chunk, self.format);
        self.next_index = chunk.index + 1;
        self.total.1 = chunk.frames_total;
        if let Some(encoder) = self.encoder.as_mut() {
            let mut data = if self.begun { Vec::new() } else { encoder.begin().map_err(failed)? };
            self.begun = true;
            data.extend(encoder.push(&chunk.samples).map_err(failed)?);
            out.data = data;
        }
        Ok(out)
    }

    /// The chunk that ends a file: what the encoder still holds; `None` for raw PCM.
    pub fn finish(&mut self) -> Result<Option<pb::AudioChunk>, Status> {
        let Some(mut encoder) = self.encoder.take() else {
            return Ok(None);
        };
        let mut data = if self.begun { Vec::new() } else { encoder.begin().map_err(failed)? };
        data.extend(encoder.finish().map_err(failed)?);
        Ok(Some(pb::AudioChunk {
            index: self.next_index,
            sample_offset: self.total.0,
            data,
            frames_done: self.total.1,
            frames_total: self.total.1,
            progress: 1.0,
        }))
    }
}
