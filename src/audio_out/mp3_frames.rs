//! Cuts LAME's output at MP3 frame boundaries. LAME hands out bytes as its bit reservoir frees
//! them, which is often mid-frame; a chunk that ends mid-frame would still concatenate, but a client
//! playing chunks as they come (or a proxy cutting between them) needs whole frames. Each frame's
//! length comes from its 4-byte header (MPEG-1/2/2.5 Layer III).

/// Layer III bitrates in kbit/s by index: MPEG-1, then MPEG-2 and 2.5.
const BITRATES_V1: [u32; 15] = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320];
const BITRATES_V2: [u32; 15] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
/// MPEG-1 sample rates by index (MPEG-2 halves them, MPEG-2.5 quarters them).
const RATES_V1: [u32; 3] = [44_100, 48_000, 32_000];

/// The length in bytes of the Layer III frame whose header starts `bytes`; `None` when `bytes`
/// does not start with one (or with a free-format or reserved one).
pub(super) fn frame_len(bytes: &[u8]) -> Option<usize> {
    let [b0, b1, b2, ..] = *bytes else { return None };
    if b0 != 0xFF || b1 & 0xE0 != 0xE0 || (b1 >> 1) & 3 != 1 {
        return None;
    }
    let (version, bitrate_index, rate_index) =
        ((b1 >> 3) & 3, usize::from(b2 >> 4), usize::from((b2 >> 2) & 3));
    let padding = u32::from((b2 >> 1) & 1);
    let (bitrates, divisor, samples_per_byte) = match version {
        3 => (&BITRATES_V1, 1, 144),
        2 => (&BITRATES_V2, 2, 72),
        0 => (&BITRATES_V2, 4, 72),
        _ => return None,
    };
    let bitrate = *bitrates.get(bitrate_index).filter(|b| **b > 0)? * 1000;
    let rate = RATES_V1.get(rate_index)? / divisor;
    Some((samples_per_byte * bitrate / rate + padding) as usize)
}

/// Holds LAME's output until whole frames are there.
#[derive(Default)]
pub(super) struct FrameSplitter {
    held: Vec<u8>,
}

impl FrameSplitter {
    /// Adds `bytes` and takes every whole frame held; `None` when the bytes held do not start
    /// with a frame header (LAME's output lost its sync).
    pub(super) fn push(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        self.held.extend_from_slice(bytes);
        let mut whole = 0;
        while whole < self.held.len() {
            let len = frame_len(&self.held[whole..])
                .or_else(|| (self.held.len() - whole < 4).then_some(usize::MAX))?;
            if self.held.len() - whole < len {
                break;
            }
            whole += len;
        }
        Some(self.held.drain(..whole).collect())
    }

    /// Everything still held (after LAME's flush: the last frames, complete).
    pub(super) fn finish(self) -> Vec<u8> {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_give_frame_lengths() {
        // MPEG-1 Layer III, 128 kbit/s, 32 kHz, no padding: 144 * 128 000 / 32 000 = 576.
        assert_eq!(frame_len(&[0xFF, 0xFB, 0x98, 0xC4]), Some(576));
        // The same at 44.1 kHz with padding: 417 + 1.
        assert_eq!(frame_len(&[0xFF, 0xFB, 0x92, 0x00]), Some(418));
        // MPEG-2, 64 kbit/s, 16 kHz: 72 * 64 000 / 16 000 = 288.
        assert_eq!(frame_len(&[0xFF, 0xF3, 0x88, 0x00]), Some(288));
        assert_eq!(frame_len(b"LAME"), None);
        assert_eq!(frame_len(&[0xFF, 0xFB]), None);
        assert_eq!(frame_len(&[0xFF, 0xFB, 0xF8, 0x00]), None); // bitrate index 15
    }

    #[test]
    fn output_is_cut_at_frame_boundaries() {
        let frame = |fill: u8| [vec![0xFF, 0xFB, 0x98, 0xC4], vec![fill; 572]].concat();
        let stream = [frame(1), frame(2), frame(3)].concat();
        let mut splitter = FrameSplitter::default();
        assert_eq!(splitter.push(&stream[..531]).unwrap(), b"");
        assert_eq!(splitter.push(&stream[531..578]).unwrap(), frame(1));
        assert_eq!(splitter.push(&stream[578..1152]).unwrap(), frame(2));
        assert_eq!(splitter.push(&stream[1152..1500]).unwrap(), b"");
        assert_eq!(splitter.finish(), &stream[1152..1500]);
        assert!(FrameSplitter::default().push(b"LAME3.100 and more").is_none());
    }
}
