//! `audio/flac`: lossless 16-bit FLAC, one fixed-size block (4096 frames) at a time with
//! `flacenc`'s `encode_fixed_size_frame`. `begin` writes `fLaC` and a STREAMINFO whose total sample
//! count is exact (known up front); the fields only known at the end are written as "unknown",
//! which the format allows: the minimum and maximum frame sizes as 0 and the MD5 signature as all
//! zeros (decoders then skip the MD5 check); an empty stream's total of 0 also reads as "unknown",
//! which for it says the same. Each full block leaves as one frame from `push`; the
//! short last block leaves from `finish`.

use flacenc::{
    bitsink::ByteSink,
    component::{BitRepr, Stream},
    config,
    error::{Verified, Verify},
    source::{Fill, FrameBuf},
};

use super::{
    check_layout,
    pcm::{to_i16, Intake},
    AudioEncoder, Container, EncodeError, StreamInfo, PCM_BITS,
};

/// Frames per FLAC block: the reference encoder's default at this rate.
const BLOCK_FRAMES: usize = 4096;
/// STREAMINFO's total-samples field is 36 bits wide.
const MAX_TOTAL_FRAMES: u64 = (1 << 36) - 1;
/// STREAMINFO's sample-rate field (20 bits, in Hz) holds at most this.
const MAX_SAMPLE_RATE: u32 = 655_350;

/// A FLAC stream's encoder.
pub(super) struct FlacEncoder {
    intake: Intake,
    config: Verified<config::Encoder>,
    stream_info: flacenc::component::StreamInfo,
    framebuf: FrameBuf,
    /// 16-bit samples, interleaved, not yet a whole block.
    pending: Vec<i32>,
    channels: usize,
    frame_number: usize,
}

fn flac_error(e: impl std::fmt::Display) -> EncodeError {
    EncodeError::Flac(e.to_string())
}

/// The bitstream of a FLAC component (whole bytes: frames and metadata end byte-aligned).
fn bytes_of(component: &impl BitRepr) -> Result<Vec<u8>, EncodeError> {
    let mut sink = ByteSink::new();
    component.write(&mut sink).map_err(flac_error)?;
    Ok(sink.into_inner())
}

impl FlacEncoder {
    /// Refuses more than 8 channels, rates STREAMINFO cannot say, and streams past 2^36 frames.
    pub(super) fn new(info: StreamInfo) -> Result<Self, EncodeError> {
        check_layout(Container::Flac, &info, 8)?;
        if !(1..=MAX_SAMPLE_RATE).contains(&info.sample_rate) {
            return Err(EncodeError::SampleRate {
                container: Container::Flac,
                sample_rate: info.sample_rate,
            });
        }
        if info.total_frames > MAX_TOTAL_FRAMES {
            let (container, total_frames) = (Container::Flac, info.total_frames);
            return Err(EncodeError::TooLong { container, total_frames, max: MAX_TOTAL_FRAMES });
        }
        let channels = usize::from(info.channels);
        let mut stream_info =
            flacenc::component::StreamInfo::new(info.sample_rate as usize, channels, usize::from(PCM_BITS))
                .map_err(flac_error)?;
        stream_info.set_total_samples(info.total_frames as usize);
        stream_info.set_block_sizes(BLOCK_FRAMES, BLOCK_FRAMES).map_err(flac_error)?;
        // Frame sizes are only known once every frame is out: 0 says "unknown".
        stream_info.set_frame_sizes(0, 0).map_err(flac_error)?;
        let mut config = config::Encoder::default();
        config.block_size = BLOCK_FRAMES;
        Ok(FlacEncoder {
            intake: Intake::new(&info),
            config: config.into_verified().map_err(|(_, e)| flac_error(e))?,
            stream_info,
            framebuf: FrameBuf::with_size(channels, BLOCK_FRAMES).map_err(flac_error)?,
            pending: Vec::with_capacity(BLOCK_FRAMES * channels),
            channels,
            frame_number: 0,
        })
    }

    /// Adds `samples` and encodes every whole block; with `last`, the short block left too.
    fn encode(&mut self, samples: &[f32], last: bool) -> Result<Vec<u8>, EncodeError> {
        self.pending.extend(samples.iter().map(|s| i32::from(to_i16(*s))));
        let block = BLOCK_FRAMES * self.channels;
        let mut out = Vec::new();
        let mut start = 0;
        while self.pending.len() - start >= block || (last && self.pending.len() > start) {
            let end = (start + block).min(self.pending.len());
            self.framebuf.fill_interleaved(&self.pending[start..end]).map_err(flac_error)?;
            let frame = flacenc::encode_fixed_size_frame(
                &self.config,
                &self.framebuf,
                self.frame_number,
                &self.stream_info,
            )
            .map_err(flac_error)?;
            out.extend(bytes_of(&frame)?);
            self.frame_number += 1;
            start = end;
        }
        self.pending.drain(..start);
        Ok(out)
    }
}

impl AudioEncoder for FlacEncoder {
    fn begin(&mut self) -> Result<Vec<u8>, EncodeError> {
        bytes_of(&Stream::with_stream_info(self.stream_info.clone()))
    }

    fn push(&mut self, interleaved: &[f32]) -> Result<Vec<u8>, EncodeError> {
        let samples = self.intake.take(interleaved);
        self.encode(&samples, false)
    }

    fn finish(mut self: Box<Self>) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        for chunk in self.intake.finish() {
            out.extend(self.encode(&chunk, false)?);
        }
        out.extend(self.encode(&[], true)?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{encode_chunks, expected_i16, ffmpeg_decode, sine, PUSH_SIZES};
    use super::super::{Container, StreamInfo};

    /// claxon's decoding: the STREAMINFO's total, and the samples.
    fn claxon_decode(bytes: &[u8]) -> (Option<u64>, Vec<i16>) {
        let mut reader = claxon::FlacReader::new(bytes).expect("a valid FLAC stream");
        let total = reader.streaminfo().samples;
        let samples = reader.samples().map(|s| s.expect("a valid sample") as i16).collect();
        (total, samples)
    }

    fn check_lossless(info: StreamInfo, input: &[f32], push: usize) {
        let chunks = encode_chunks(Container::Flac, info, input, push);
        assert_eq!(&chunks[0][..4], b"fLaC");
        for frame in &chunks[1..] {
            // Every later chunk starts on a frame's sync code (fixed block size).
            assert_eq!(frame[..2], [0xFF, 0xF8], "a chunk that does not start a frame");
        }
        let bytes = chunks.concat();
        let expected = expected_i16(input, info);
        // STREAMINFO's total of 0 reads as "unknown", which for an empty stream says the same.
        let total = (info.total_frames > 0).then_some(info.total_frames);
        assert_eq!(claxon_decode(&bytes), (total, expected.clone()));
        let by_ffmpeg: Vec<i16> =
            ffmpeg_decode(&bytes, "flac").iter().map(|s| (s * 32768.0) as i16).collect();
        assert_eq!(by_ffmpeg, expected);
    }

    #[test]
    fn every_push_size_decodes_losslessly() {
        for channels in [1u16, 2] {
            for push in PUSH_SIZES {
                let info = StreamInfo { sample_rate: 32_000, channels, total_frames: 9_001 };
                check_lossless(info, &sine(channels, 9_001, 440.0), push(channels));
            }
        }
    }

    #[test]
    fn lengths_are_held_to_the_announced_total() {
        let info = StreamInfo { sample_rate: 32_000, channels: 2, total_frames: 5_000 };
        check_lossless(info, &sine(2, 3_000, 440.0), 777);
        check_lossless(info, &sine(2, 8_000, 440.0), 777);
        check_lossless(StreamInfo { total_frames: 0, ..info }, &[], 1);
        check_lossless(StreamInfo { total_frames: 1, ..info }, &sine(2, 1, 440.0), 1);
    }

    #[test]
    fn hostile_samples_are_clamped_or_zeroed() {
        let info = StreamInfo { sample_rate: 32_000, channels: 1, total_frames: 4 };
        let input = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -7.5];
        let bytes = encode_chunks(Container::Flac, info, &input, 1).concat();
        assert_eq!(claxon_decode(&bytes).1, [0, 32767, -32767, -32767]);
    }
}
