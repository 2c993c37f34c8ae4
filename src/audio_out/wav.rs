//! `audio/wav`: 16-bit PCM in a canonical 44-byte RIFF/WAVE header. The sizes in the header are
//! exact from the start because the stream's length is known up front (and held to by the intake),
//! so nothing needs a seek back: the header leaves with `begin`, samples with each `push`.

use super::{
    check_layout,
    pcm::{to_i16, Intake},
    AudioEncoder, Container, EncodeError, StreamInfo, PCM_BITS,
};

/// Bytes in the header before the samples (RIFF, `fmt `, `data` chunk headers).
const HEADER_BYTES: u64 = 44;

/// A WAV stream's encoder.
pub(super) struct WavEncoder {
    info: StreamInfo,
    intake: Intake,
}

impl WavEncoder {
    /// Refuses channel counts beyond 16, a rate of 0, and streams whose size overflows the RIFF
    /// size fields.
    pub(super) fn new(info: StreamInfo) -> Result<Self, EncodeError> {
        check_layout(Container::Wav, &info, 16)?;
        let max = (u64::from(u32::MAX) - (HEADER_BYTES - 8)) / block_align(&info);
        if info.total_frames > max {
            return Err(EncodeError::TooLong {
                container: Container::Wav,
                total_frames: info.total_frames,
                max,
            });
        }
        Ok(WavEncoder { info, intake: Intake::new(&info) })
    }
}

/// Bytes per frame.
fn block_align(info: &StreamInfo) -> u64 {
    u64::from(info.channels) * u64::from(PCM_BITS / 8)
}

/// The 44-byte header for `info`, sizes included.
fn header(info: &StreamInfo) -> Vec<u8> {
    let align = block_align(info);
    // `new` checked that both sizes fit in 32 bits.
    let data_bytes = (info.total_frames * align) as u32;
    let mut out = Vec::with_capacity(HEADER_BYTES as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(data_bytes + (HEADER_BYTES as u32 - 8)).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // integer PCM
    out.extend_from_slice(&info.channels.to_le_bytes());
    out.extend_from_slice(&info.sample_rate.to_le_bytes());
    out.extend_from_slice(&((u64::from(info.sample_rate) * align) as u32).to_le_bytes());
    out.extend_from_slice(&(align as u16).to_le_bytes());
    out.extend_from_slice(&PCM_BITS.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_bytes.to_le_bytes());
    out
}

/// Samples as 16-bit little-endian bytes.
fn pcm_bytes(samples: &[f32]) -> Vec<u8> {
    samples.iter().flat_map(|s| to_i16(*s).to_le_bytes()).collect()
}

impl AudioEncoder for WavEncoder {
    fn begin(&mut self) -> Result<Vec<u8>, EncodeError> {
        Ok(header(&self.info))
    }

    fn push(&mut self, interleaved: &[f32]) -> Result<Vec<u8>, EncodeError> {
        Ok(pcm_bytes(&self.intake.take(interleaved)))
    }

    fn finish(mut self: Box<Self>) -> Result<Vec<u8>, EncodeError> {
        Ok(self.intake.finish().flat_map(|chunk| pcm_bytes(&chunk)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{encode_in_pushes, expected_i16, sine, PUSH_SIZES};
    use super::super::{encoder, Container, StreamInfo};

    fn read_back(bytes: &[u8]) -> (hound::WavSpec, Vec<i16>) {
        let reader = hound::WavReader::new(bytes).expect("a valid WAV file");
        let spec = reader.spec();
        let samples = reader.into_samples::<i16>().collect::<Result<Vec<_>, _>>().unwrap();
        (spec, samples)
    }

    #[test]
    fn every_push_size_reads_back_as_the_same_samples() {
        for channels in [1u16, 2] {
            for push in PUSH_SIZES {
                let input = sine(channels, 9_001, 440.0);
                let info = StreamInfo { sample_rate: 32_000, channels, total_frames: 9_001 };
                let bytes = encode_in_pushes(Container::Wav, info, &input, push(channels));
                let (spec, samples) = read_back(&bytes);
                assert_eq!((spec.channels, spec.sample_rate, spec.bits_per_sample), (channels, 32_000, 16));
                assert_eq!(samples, expected_i16(&input, info));
                assert_eq!(bytes.len(), 44 + 9_001 * 2 * usize::from(channels));
                let riff = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
                let data = u32::from_le_bytes(bytes[40..44].try_into().unwrap()) as usize;
                assert_eq!((riff, data), (bytes.len() - 8, bytes.len() - 44));
            }
        }
    }

    #[test]
    fn short_streams_are_padded_and_long_ones_truncated() {
        let info = StreamInfo { sample_rate: 32_000, channels: 2, total_frames: 100 };
        let short = encode_in_pushes(Container::Wav, info, &sine(2, 60, 440.0), 7);
        let (_, samples) = read_back(&short);
        assert_eq!(samples.len(), 200);
        assert!(samples[120..].iter().all(|s| *s == 0));
        let long = encode_in_pushes(Container::Wav, info, &sine(2, 150, 440.0), 7);
        assert_eq!(read_back(&long).1.len(), 200);
        let empty = StreamInfo { total_frames: 0, ..info };
        assert_eq!(read_back(&encode_in_pushes(Container::Wav, empty, &[], 1)).1.len(), 0);
    }

    #[test]
    fn hostile_samples_are_clamped_or_zeroed() {
        let info = StreamInfo { sample_rate: 32_000, channels: 1, total_frames: 4 };
        let input = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 7.5];
        let (_, samples) = read_back(&encode_in_pushes(Container::Wav, info, &input, 1));
        assert_eq!(samples, [0, 32767, -32767, 32767]);
    }

    #[test]
    fn oversized_streams_and_channel_counts_are_refused() {
        let info = StreamInfo { sample_rate: 32_000, channels: 2, total_frames: u64::from(u32::MAX) };
        assert!(encoder(Container::Wav, info).is_err());
        assert!(encoder(Container::Wav, StreamInfo { channels: 0, total_frames: 1, ..info }).is_err());
    }
}
