//! `audio/mpeg`: MP3 (MPEG-1 Layer III at 32 kHz) from LAME at a constant bitrate
//! ([`MP3_BITRATE_KBPS`](super::MP3_BITRATE_KBPS)), joint stereo for two channels. LAME returns
//! only whole frames from each call, so `push` passes on what it returns and `finish` flushes the
//! last frames (padded with silence to a whole frame).
//!
//! No Xing/LAME info tag: LAME can only fill it in once the stream is over, and it belongs in the
//! first frame, which has long been sent. Without it a decoder cannot trim LAME's encoder delay
//! (about 1 100 samples, 35 ms at 32 kHz) at the start nor the padding of the last frame (under
//! 1 152 samples), so an MP3 plays up to about 70 ms longer than announced; nothing is cut. For
//! the same reason an empty stream is two frames of silence (72 ms at 32 kHz), not LAME's lone
//! frame, which ffmpeg refuses to open.

use std::num::NonZeroU32;

use mp3lame_encoder::{Bitrate, Builder, FlushGap, InterleavedPcm, Mode, MonoPcm, Quality};

use super::{
    check_layout, mp3_frames::FrameSplitter, pcm::Intake, AudioEncoder, Container, EncodeError, StreamInfo,
};

/// LAME's form of [`super::MP3_BITRATE_KBPS`] (checked equal in the tests).
pub(super) const BITRATE: Bitrate = Bitrate::Kbps128;
/// The sample rates MPEG audio (1, 2 and 2.5) defines; LAME resamples anything else, which we refuse.
const MPEG_RATES: [u32; 9] = [8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000];
/// Bytes LAME may need to flush its last frames.
const FLUSH_BYTES: usize = 7_200;

fn lame_error(e: impl std::fmt::Display) -> EncodeError {
    EncodeError::Mp3(e.to_string())
}

fn lost_sync() -> EncodeError {
    EncodeError::Mp3("LAME's output does not start with a frame header".into())
}

/// An MP3 stream's encoder.
pub(super) struct Mp3Encoder {
    intake: Intake,
    lame: mp3lame_encoder::Encoder,
    frames: FrameSplitter,
    channels: usize,
    total_frames: u64,
}

impl Mp3Encoder {
    /// Refuses anything but mono and stereo, and rates MPEG audio does not define.
    pub(super) fn new(info: StreamInfo) -> Result<Self, EncodeError> {
        check_layout(Container::Mp3, &info, 2)?;
        if !MPEG_RATES.contains(&info.sample_rate) {
            return Err(EncodeError::SampleRate { container: Container::Mp3, sample_rate: info.sample_rate });
        }
        let mut lame =
            Builder::new().ok_or_else(|| EncodeError::Mp3("LAME could not allocate an encoder".into()))?;
        lame.set_num_channels(info.channels as u8).map_err(lame_error)?;
        lame.set_sample_rate(info.sample_rate).map_err(lame_error)?;
        // Left unset, LAME may pick a lower output rate for the bitrate; keep the input's.
        lame.set_output_sample_rate(NonZeroU32::new(info.sample_rate)).map_err(lame_error)?;
        lame.set_brate(BITRATE).map_err(lame_error)?;
        lame.set_mode(if info.channels == 1 { Mode::Mono } else { Mode::JointStereo }).map_err(lame_error)?;
        // LAME's own default (q=5 of 0 best..9 worst): real time with room to spare.
        lame.set_quality(Quality::Good).map_err(lame_error)?;
        lame.set_to_write_vbr_tag(false).map_err(lame_error)?;
        let lame = lame.build().map_err(lame_error)?;
        Ok(Mp3Encoder {
            intake: Intake::new(&info),
            lame,
            frames: FrameSplitter::default(),
            channels: usize::from(info.channels),
            total_frames: info.total_frames,
        })
    }

    /// The whole MP3 frames out once LAME has `samples` (whole frames, sanitized).
    fn encode(&mut self, samples: &[f32]) -> Result<Vec<u8>, EncodeError> {
        let frames = samples.len() / self.channels;
        let mut out = Vec::with_capacity(mp3lame_encoder::max_required_buffer_size(frames));
        if self.channels == 1 {
            self.lame.encode_to_vec(MonoPcm(samples), &mut out).map_err(lame_error)?;
        } else {
            self.lame.encode_to_vec(InterleavedPcm(samples), &mut out).map_err(lame_error)?;
        }
        self.frames.push(&out).ok_or_else(lost_sync)
    }
}

impl AudioEncoder for Mp3Encoder {
    fn begin(&mut self) -> Result<Vec<u8>, EncodeError> {
        Ok(Vec::new())
    }

    fn push(&mut self, interleaved: &[f32]) -> Result<Vec<u8>, EncodeError> {
        let samples = self.intake.take(interleaved);
        self.encode(&samples)
    }

    fn finish(mut self: Box<Self>) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        if self.total_frames == 0 {
            out.extend(self.encode(&vec![0.0; self.channels])?);
        }
        for chunk in self.intake.finish() {
            out.extend(self.encode(&chunk)?);
        }
        let mut last = Vec::with_capacity(FLUSH_BYTES);
        self.lame.flush_to_vec::<FlushGap>(&mut last).map_err(lame_error)?;
        out.extend(self.frames.push(&last).ok_or_else(lost_sync)?);
        out.extend(self.frames.finish());
        Ok(out)
    }
}
