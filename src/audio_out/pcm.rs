//! What every encoder does to its input before encoding it: sanitize each sample, gather whole
//! frames across pushes (a push may end mid-frame), hold the stream to its announced length, and
//! at the end pad it with silence to that length.

use super::StreamInfo;

/// Most frames of silence handed out at once while padding, so padding a long stream stays small.
const SILENCE_CHUNK_FRAMES: u64 = 4096;

/// A sample an encoder can trust: NaN is 0, everything else clamped to [-1, 1] (±infinity to ±1).
pub(super) fn sanitize(sample: f32) -> f32 {
    if sample.is_nan() {
        0.0
    } else {
        sample.clamp(-1.0, 1.0)
    }
}

/// A sanitized sample as 16-bit PCM: `round(x * 32767)`, so ±1 maps to ±32767 (never -32768) and
/// the scale is symmetric.
pub(super) fn to_i16(sample: f32) -> i16 {
    (sanitize(sample) * 32767.0).round() as i16
}

/// Whole, sanitized frames out of arbitrary pushes, never more than the stream's total.
pub(super) struct Intake {
    channels: usize,
    total_frames: u64,
    /// Frames handed out so far (never above `total_frames`).
    taken: u64,
    /// Samples of a frame a push left incomplete (fewer than `channels`).
    carry: Vec<f32>,
}

impl Intake {
    pub(super) fn new(info: &StreamInfo) -> Self {
        Intake {
            channels: usize::from(info.channels),
            total_frames: info.total_frames,
            taken: 0,
            carry: Vec::new(),
        }
    }

    /// The whole frames that `interleaved` completes (after what an earlier push left), sanitized
    /// and interleaved; anything past the stream's total is dropped.
    pub(super) fn take(&mut self, interleaved: &[f32]) -> Vec<f32> {
        let room = self.room();
        let mut out = Vec::with_capacity((interleaved.len() + self.carry.len()).min(room));
        let mut rest = interleaved;
        if !self.carry.is_empty() {
            let need = (self.channels - self.carry.len()).min(rest.len());
            self.carry.extend(rest[..need].iter().copied().map(sanitize));
            rest = &rest[need..];
            if self.carry.len() == self.channels {
                out.append(&mut self.carry);
            }
        }
        let whole = rest.len() / self.channels * self.channels;
        out.extend(rest[..whole].iter().copied().map(sanitize));
        if self.carry.is_empty() {
            self.carry.extend(rest[whole..].iter().copied().map(sanitize));
        }
        out.truncate(room);
        self.taken += (out.len() / self.channels) as u64;
        if self.room() == 0 {
            self.carry.clear();
        }
        out
    }

    /// Ends the intake: a partial frame completed with silence (when there is room for it), then
    /// silence up to the stream's total, in chunks of at most [`SILENCE_CHUNK_FRAMES`] frames.
    pub(super) fn finish(&mut self) -> impl Iterator<Item = Vec<f32>> {
        let mut first = Vec::new();
        if !self.carry.is_empty() && self.room() > 0 {
            first = std::mem::take(&mut self.carry);
            first.resize(self.channels, 0.0);
            self.taken += 1;
        }
        let channels = self.channels;
        let mut missing = self.total_frames - self.taken;
        self.taken = self.total_frames;
        std::iter::once(first).filter(|f| !f.is_empty()).chain(std::iter::from_fn(move || {
            let n = missing.min(SILENCE_CHUNK_FRAMES);
            missing -= n;
            (n > 0).then(|| vec![0.0; n as usize * channels])
        }))
    }

    /// Samples (not frames) the stream still has room for.
    fn room(&self) -> usize {
        usize::try_from(self.total_frames - self.taken).unwrap_or(usize::MAX).saturating_mul(self.channels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intake(channels: u16, total_frames: u64) -> Intake {
        Intake::new(&StreamInfo { sample_rate: 32_000, channels, total_frames })
    }

    #[test]
    fn samples_are_sanitized_and_rounded() {
        assert_eq!(sanitize(f32::NAN), 0.0);
        assert_eq!(sanitize(f32::INFINITY), 1.0);
        assert_eq!(sanitize(f32::NEG_INFINITY), -1.0);
        assert_eq!(sanitize(3.0), 1.0);
        assert_eq!(to_i16(1.0), 32767);
        assert_eq!(to_i16(-1.0), -32767);
        assert_eq!(to_i16(0.5), 16384);
        assert_eq!(to_i16(-0.5), -16384);
        assert_eq!(to_i16(f32::NAN), 0);
    }

    #[test]
    fn frames_are_gathered_across_pushes() {
        let mut it = intake(2, 10);
        assert!(it.take(&[0.1]).is_empty());
        assert_eq!(it.take(&[0.2, 0.3]), [0.1, 0.2]);
        assert_eq!(it.take(&[0.4, 0.5, 0.6, 0.7]), [0.3, 0.4, 0.5, 0.6]);
        assert_eq!(it.take(&[]), Vec::<f32>::new());
        let rest: Vec<f32> = it.finish().flatten().collect();
        // The carried 0.7 is completed with silence; 6 frames of silence follow.
        assert_eq!(rest.len(), 14);
        assert_eq!(&rest[..2], [0.7, 0.0]);
        assert!(rest[2..].iter().all(|s| *s == 0.0));
    }

    #[test]
    fn pushes_past_the_total_are_dropped() {
        let mut it = intake(1, 3);
        assert_eq!(it.take(&[0.1, 0.2]), [0.1, 0.2]);
        assert_eq!(it.take(&[0.3, 0.4, 0.5]), [0.3]);
        assert!(it.take(&[0.6]).is_empty());
        assert_eq!(it.finish().count(), 0);
    }

    #[test]
    fn padding_comes_in_bounded_chunks() {
        let mut it = intake(2, 10_000);
        let chunks: Vec<Vec<f32>> = it.finish().collect();
        assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), 20_000);
        assert!(chunks.iter().all(|c| c.len() <= 8192));
        assert_eq!(intake(1, 0).finish().count(), 0);
    }
}
