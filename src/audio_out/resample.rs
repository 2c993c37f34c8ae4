//! A streaming resampler to Opus's 48 kHz (`rubato`'s synchronous FFT resampler, as
//! `audio_input` uses for whole clips), fed in pieces of any size. The resampler's own delay is cut
//! from the front of its output, so output frame `n` is input time `n / 48 000` s: the Ogg
//! pre-skip then only has to cover the Opus encoder's lookahead.

use rubato::{audioadapter_buffers::direct::InterleavedSlice, Fft, FixedSync, Resampler};

use super::EncodeError;

/// The rate Opus always decodes at (and the one we encode at).
pub(super) const OPUS_RATE: u32 = 48_000;

fn resample_error(e: impl std::fmt::Display) -> EncodeError {
    EncodeError::Resample(e.to_string())
}

/// Interleaved audio at any rate in, at 48 kHz out.
pub(super) struct To48k {
    /// `None` when the input is already at 48 kHz.
    resampler: Option<Fft<f32>>,
    channels: usize,
    /// Input samples not yet a whole chunk.
    pending: Vec<f32>,
    /// Output frames still to drop (what is left of the resampler's delay).
    skip: usize,
    /// Output frames handed out so far.
    produced: u64,
}

impl To48k {
    /// A resampler from `sample_rate` with 20 ms input chunks.
    pub(super) fn new(sample_rate: u32, channels: usize) -> Result<Self, EncodeError> {
        let resampler = if sample_rate == OPUS_RATE {
            None
        } else {
            let chunk = (sample_rate as usize / 50).max(1);
            let fft =
                Fft::<f32>::new(sample_rate as usize, OPUS_RATE as usize, chunk, channels, FixedSync::Input)
                    .map_err(resample_error)?;
            Some(fft)
        };
        let skip = resampler.as_ref().map_or(0, |r| r.output_delay());
        Ok(To48k { resampler, channels, pending: Vec::new(), skip, produced: 0 })
    }

    /// The 48 kHz frames that `samples` (whole frames) complete.
    pub(super) fn push(&mut self, samples: &[f32]) -> Result<Vec<f32>, EncodeError> {
        let Some(resampler) = self.resampler.as_mut() else {
            self.produced += (samples.len() / self.channels) as u64;
            return Ok(samples.to_vec());
        };
        self.pending.extend_from_slice(samples);
        let mut out = Vec::new();
        let mut buffer = vec![0.0; resampler.output_frames_max() * self.channels];
        let mut start = 0;
        loop {
            let frames = resampler.input_frames_next();
            if self.pending.len() - start < frames * self.channels {
                break;
            }
            let chunk = &self.pending[start..start + frames * self.channels];
            let input = InterleavedSlice::new(chunk, self.channels, frames).map_err(resample_error)?;
            let out_frames = buffer.len() / self.channels;
            let mut output =
                InterleavedSlice::new_mut(&mut buffer, self.channels, out_frames).map_err(resample_error)?;
            let (_, written) =
                resampler.process_into_buffer(&input, &mut output, None).map_err(resample_error)?;
            let dropped = self.skip.min(written);
            self.skip -= dropped;
            out.extend_from_slice(&buffer[dropped * self.channels..written * self.channels]);
            start += frames * self.channels;
        }
        self.pending.drain(..start);
        self.produced += (out.len() / self.channels) as u64;
        Ok(out)
    }

    /// Ends the input: feeds silence until `total` output frames have come out in all, and returns
    /// the rest of them (none past `total`).
    pub(super) fn finish(&mut self, total: u64) -> Result<Vec<f32>, EncodeError> {
        let mut out = Vec::new();
        while self.produced < total {
            let frames = match &self.resampler {
                Some(r) => r.input_frames_next(),
                None => (total - self.produced) as usize,
            };
            let silence = vec![0.0; frames * self.channels - self.pending.len() % (frames * self.channels)];
            out.extend(self.push(&silence)?);
        }
        let excess = (self.produced - total) as usize * self.channels;
        out.truncate(out.len().saturating_sub(excess));
        self.produced = total;
        Ok(out)
    }
}

/// Frames at 48 kHz that `frames` at `sample_rate` last (rounded up).
pub(super) fn frames_at_48k(frames: u64, sample_rate: u32) -> u64 {
    (u128::from(frames) * u128::from(OPUS_RATE)).div_ceil(u128::from(sample_rate)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_aligned_with_the_input_and_exactly_as_long() {
        let mut r = To48k::new(32_000, 1).unwrap();
        // An impulse-free ramp up: a step from silence to 0.5 at 0.1 s.
        let input: Vec<f32> = (0..16_000).map(|i| if i < 3_200 { 0.0 } else { 0.5 }).collect();
        let mut out = Vec::new();
        for piece in input.chunks(333) {
            out.extend(r.push(piece).unwrap());
        }
        let total = frames_at_48k(16_000, 32_000);
        out.extend(r.finish(total).unwrap());
        assert_eq!(out.len() as u64, total);
        let onset = out.iter().position(|s| *s > 0.25).unwrap();
        assert!((4_795..=4_805).contains(&onset), "the step came out at {onset}, not 4800");
        assert!((out[10_000] - 0.5).abs() < 0.01);
    }

    #[test]
    fn at_48k_it_passes_audio_through() {
        let mut r = To48k::new(48_000, 2).unwrap();
        assert_eq!(r.push(&[0.1, 0.2, 0.3, 0.4]).unwrap(), [0.1, 0.2, 0.3, 0.4]);
        assert_eq!(r.finish(3).unwrap(), [0.0, 0.0]);
        assert_eq!(frames_at_48k(3, 32_000), 5);
    }
}
