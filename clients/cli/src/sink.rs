//! Where `generate` puts the audio: a WAV written here from raw PCM ([`WavSink`]), or a file the
//! server encoded, written as its bytes arrive ([`EncodedSink`]). Both keep what arrived when the
//! stream stops early, and both refuse a chunk that does not continue the previous one.

use std::path::Path;

use maestro_proto as pb;

use crate::{encoded::EncodedSink, exit, file_format::FileFormat, wav::WavSink, Failure};

/// The file a generation is written to.
pub enum Sink {
    /// Raw PCM, written as a WAV whose header is kept current.
    Wav(WavSink),
    /// An encoded file, appended to chunk by chunk.
    Encoded(EncodedSink),
}

impl Sink {
    /// Creates `path` for the stream `header` opens, after checking that the server sends what was
    /// `asked` for (a server that ignored the format would otherwise leave PCM in a `.flac`).
    pub fn create(path: &Path, header: &pb::Header, asked: pb::AudioFormat) -> Result<Self, Failure> {
        let sent = pb::AudioFormat::try_from(header.format).unwrap_or_default();
        let kind = FileFormat::encoded(sent);
        if kind != FileFormat::encoded(asked) {
            let msg =
                format!("the server sent {}, not the {} asked for", sent.as_str_name(), asked.as_str_name());
            return Err(Failure::new(exit::GENERAL, msg));
        }
        Ok(match kind {
            Some(kind) => Self::Encoded(EncodedSink::create(path, kind, header)?),
            None => Self::Wav(WavSink::create(path, header.sample_rate, header.channels, sent)?),
        })
    }

    /// Writes `chunk` if it continues what arrived: a gap or an overlap is DATA_LOSS, a local write
    /// failure UNKNOWN (the file is kept either way).
    pub fn accept(&mut self, chunk: &pb::AudioChunk) -> Result<(), tonic::Status> {
        let continues = match self {
            Self::Wav(sink) => wav_continues(sink, chunk),
            Self::Encoded(sink) => sink.check(chunk),
        };
        continues.map_err(tonic::Status::data_loss)?;
        let result = match self {
            Self::Wav(sink) => sink.write_chunk(&chunk.data),
            Self::Encoded(sink) => sink.write_chunk(chunk),
        };
        result.map_err(|f| tonic::Status::unknown(f.message))
    }

    /// Samples per channel known to be in the file.
    pub fn samples(&self) -> u64 {
        match self {
            Self::Wav(sink) => sink.samples(),
            Self::Encoded(sink) => sink.samples(),
        }
    }

    /// [`Self::samples`] in seconds.
    pub fn seconds(&self) -> f64 {
        match self {
            Self::Wav(sink) => sink.seconds(),
            Self::Encoded(sink) => sink.seconds(),
        }
    }

    /// One line describing the file for the report and the `kept ...` messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Wav(sink) => sink.describe(),
            Self::Encoded(sink) => sink.describe(),
        }
    }

    /// Completes and closes the file.
    pub fn finish(self) -> Result<(), Failure> {
        match self {
            Self::Wav(sink) => sink.finish(),
            Self::Encoded(sink) => sink.finish(),
        }
    }
}

/// PCM says how long it is, so a WAV chunk must start exactly where the file ends.
fn wav_continues(sink: &WavSink, chunk: &pb::AudioChunk) -> Result<(), String> {
    if chunk.sample_offset != sink.samples() {
        return Err(format!(
            "chunk {} starts at sample {}, expected {}",
            chunk.index,
            chunk.sample_offset,
            sink.samples()
        ));
    }
    Ok(())
}
