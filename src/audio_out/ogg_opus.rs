//! `audio/ogg; codecs=opus`: Opus in Ogg as RFC 7845 lays it out. Opus has no 32 kHz mode, so the
//! audio is resampled to 48 kHz first ([`super::resample`]) and encoded by libopus in 20 ms packets.
//! - `begin`: the OpusHead page (pre-skip = the encoder's lookahead, the input rate recorded for
//!   players that want to resample back) and the OpusTags page (vendor = libopus's version).
//! - `push`: every whole packet the audio completes, on pages that end with the push.
//! - `finish`: silence up to the announced length, then enough silence to push the lookahead out;
//!   the last page carries EOS and a granule position trimmed to the true end
//!   (`pre-skip + length at 48 kHz`), so decoders drop the padding.
//!
//! Granule positions count 48 kHz samples including the pre-skip, as RFC 7845 §4 says.

use ogg::writing::{PacketWriteEndInfo, PacketWriter};

use super::{
    check_layout,
    pcm::Intake,
    resample::{frames_at_48k, To48k, OPUS_RATE},
    AudioEncoder, Container, EncodeError, StreamInfo, OPUS_BITRATE_MONO, OPUS_BITRATE_STEREO,
};

/// Frames per Opus packet: 20 ms at 48 kHz, the codec's usual frame for music.
const PACKET_FRAMES: usize = 960;
/// Room for one packet (libopus's recommended maximum).
const MAX_PACKET_BYTES: usize = 4000;

/// An Ogg Opus stream's encoder.
pub(super) struct OggOpusEncoder {
    info: StreamInfo,
    intake: Intake,
    resampler: To48k,
    opus: opus::Encoder,
    pages: PacketWriter<'static, Vec<u8>>,
    serial: u32,
    pre_skip: u16,
    /// 48 kHz samples, interleaved, not yet a whole packet.
    pending: Vec<f32>,
    /// Packets written so far.
    packets: u64,
    channels: usize,
}

impl OggOpusEncoder {
    /// Refuses anything but mono and stereo (Ogg Opus's mapping family 0) and a rate of 0.
    pub(super) fn new(info: StreamInfo) -> Result<Self, EncodeError> {
        check_layout(Container::OggOpus, &info, 2)?;
        let (layout, bitrate) = match info.channels {
            1 => (opus::Channels::Mono, OPUS_BITRATE_MONO),
            _ => (opus::Channels::Stereo, OPUS_BITRATE_STEREO),
        };
        let mut opus = opus::Encoder::new(OPUS_RATE, layout, opus::Application::Audio)?;
        // Both defaults fit in an i32 with room to spare.
        opus.set_bitrate(opus::Bitrate::Bits(bitrate as i32))?;
        let pre_skip = u16::try_from(opus.get_lookahead()?).unwrap_or(u16::MAX);
        let channels = usize::from(info.channels);
        Ok(OggOpusEncoder {
            info,
            intake: Intake::new(&info),
            resampler: To48k::new(info.sample_rate, channels)?,
            opus,
            pages: PacketWriter::new(Vec::new()),
            // A random serial, so streams chained or multiplexed by a client never collide.
            serial: uuid::Uuid::new_v4().as_u128() as u32,
            pre_skip,
            pending: Vec::new(),
            packets: 0,
            channels,
        })
    }

    /// The identification header (RFC 7845 §5.1), channel mapping family 0.
    fn opus_head(&self) -> Vec<u8> {
        let mut head = b"OpusHead".to_vec();
        head.push(1); // version
        head.push(self.info.channels as u8);
        head.extend_from_slice(&self.pre_skip.to_le_bytes());
        head.extend_from_slice(&self.info.sample_rate.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // mapping family
        head
    }

    /// The comment header (RFC 7845 §5.2): the vendor string and no comments.
    fn opus_tags() -> Vec<u8> {
        let vendor = opus::version().as_bytes();
        let mut tags = b"OpusTags".to_vec();
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor);
        tags.extend_from_slice(&0u32.to_le_bytes());
        tags
    }

    /// Encodes every whole packet in `pending`, each with the granule position at its end.
    fn encode_packets(&mut self) -> Result<Vec<(Vec<u8>, u64)>, EncodeError> {
        let packet = PACKET_FRAMES * self.channels;
        let whole = self.pending.len() / packet * packet;
        let mut out = Vec::with_capacity(whole / packet);
        for frame in self.pending[..whole].chunks_exact(packet) {
            let bytes = self.opus.encode_vec_float(frame, MAX_PACKET_BYTES)?;
            self.packets += 1;
            out.push((bytes, self.packets * PACKET_FRAMES as u64));
        }
        self.pending.drain(..whole);
        Ok(out)
    }

    /// Writes `packets`, ending the page (or with `end`, the stream) on the last one, and takes
    /// the finished pages' bytes.
    fn write_pages(
        &mut self,
        packets: Vec<(Vec<u8>, u64)>,
        end: PacketWriteEndInfo,
    ) -> Result<Vec<u8>, EncodeError> {
        let count = packets.len();
        for (i, (packet, granule)) in packets.into_iter().enumerate() {
            let info = if i + 1 == count { end } else { PacketWriteEndInfo::NormalPacket };
            self.pages.write_packet(packet, self.serial, info, granule)?;
        }
        Ok(std::mem::take(self.pages.inner_mut()))
    }
}

impl AudioEncoder for OggOpusEncoder {
    fn begin(&mut self) -> Result<Vec<u8>, EncodeError> {
        // Each header alone on its page, granule 0 (RFC 7845 §3).
        let head = vec![(self.opus_head(), 0)];
        let mut out = self.write_pages(head, PacketWriteEndInfo::EndPage)?;
        out.extend(self.write_pages(vec![(Self::opus_tags(), 0)], PacketWriteEndInfo::EndPage)?);
        Ok(out)
    }

    fn push(&mut self, interleaved: &[f32]) -> Result<Vec<u8>, EncodeError> {
        let samples = self.intake.take(interleaved);
        let resampled = self.resampler.push(&samples)?;
        self.pending.extend(resampled);
        let packets = self.encode_packets()?;
        self.write_pages(packets, PacketWriteEndInfo::EndPage)
    }

    fn finish(mut self: Box<Self>) -> Result<Vec<u8>, EncodeError> {
        for chunk in self.intake.finish() {
            let resampled = self.resampler.push(&chunk)?;
            self.pending.extend(resampled);
        }
        let length = frames_at_48k(self.info.total_frames, self.info.sample_rate);
        let tail = self.resampler.finish(length)?;
        self.pending.extend(tail);
        // Silence past the end until the encoder's lookahead is out, in whole packets (at least
        // one, to carry EOS).
        let needed = (u64::from(self.pre_skip) + length).div_ceil(PACKET_FRAMES as u64).max(self.packets + 1);
        let held = self.packets + (self.pending.len() / self.channels / PACKET_FRAMES) as u64;
        let frames = (needed.max(held) * PACKET_FRAMES as u64 - self.packets * PACKET_FRAMES as u64) as usize;
        self.pending.resize(frames * self.channels, 0.0);
        let mut packets = self.encode_packets()?;
        if let Some(last) = packets.last_mut() {
            // End trimming: the decoder stops at the true end, not at the last packet's end.
            last.1 = u64::from(self.pre_skip) + length;
        }
        self.write_pages(packets, PacketWriteEndInfo::EndStream)
    }
}
