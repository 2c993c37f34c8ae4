//! Streaming EnCodec decode. Frames arrive one generation step at a time; every `chunk_frames` frames the
//! new audio is decoded and handed out. The first convolution waits for its right context, the LSTM runs
//! once over each frame carrying its state, and the upsampling stages re-decode a few frames of left
//! context and hold back a right margin, so the concatenated chunks equal the full decode.

use tch::{Device, Kind, Tensor};

use super::encodec::{EncodecDecoder, LstmState};

/// Streaming decode state of one audio channel.
struct ChannelStream {
    lstm_state: Option<LstmState>,
    /// LSTM outputs `(1, dim, n)` for frames `buf_start..lstm_done`.
    buf: Option<Tensor>,
    buf_start: i64,
}

/// Streaming decoder of one request: codes in, audio chunks out.
pub struct AudioStream {
    channels: Vec<ChannelStream>,
    total_frames: i64,
    chunk_frames: i64,
    lstm_done: i64,
    emitted: i64,
    device: Device,
}

/// One decoded piece of audio.
pub struct DecodedChunk {
    /// First frame covered.
    pub start_frame: i64,
    /// Frames covered.
    pub frames: i64,
    /// Audio `(channels, frames·hop)` in f32.
    pub audio: Tensor,
}

impl DecodedChunk {
    /// The part from frame `skip` on; `None` when the chunk ends before it.
    pub fn after(self, skip: usize) -> Option<Self> {
        let skip = skip as i64;
        let end = self.start_frame + self.frames;
        if end <= skip {
            return None;
        }
        if self.start_frame >= skip {
            return Some(self);
        }
        let (cut, samples) = (skip - self.start_frame, self.audio.size()[1]);
        let hop = samples / self.frames;
        let audio = self.audio.narrow(1, cut * hop, samples - cut * hop);
        Some(Self { start_frame: skip, frames: end - skip, audio })
    }
}

impl AudioStream {
    /// A stream for `total_frames` frames of `channels` channels, emitting every `chunk_frames` frames.
    pub fn new(channels: usize, total_frames: i64, chunk_frames: i64, device: Device) -> Self {
        let channels =
            (0..channels).map(|_| ChannelStream { lstm_state: None, buf: None, buf_start: 0 }).collect();
        Self { channels, total_frames, chunk_frames: chunk_frames.max(1), lstm_done: 0, emitted: 0, device }
    }

    /// Whether every frame has been emitted.
    pub fn finished(&self) -> bool {
        self.emitted >= self.total_frames
    }

    /// Advances with `available` complete frames; `codes(channel, from, to)` gives that channel's codes
    /// `(1, quantizers, to − from)` as int64. Returns a chunk once enough audio is settled, or the rest
    /// when every frame is available.
    pub fn advance(
        &mut self,
        codec: &EncodecDecoder,
        available: i64,
        codes: &dyn Fn(usize, i64, i64) -> Vec<i64>,
    ) -> Option<DecodedChunk> {
        let last = available >= self.total_frames;
        let (left1, right1) = codec.first_context();
        let target = if last { self.total_frames } else { (available - right1).max(self.lstm_done) };
        // Run the LSTM only when a chunk is due: one call over many frames beats one call per frame.
        if !last && target - codec.upsample_context() - self.emitted < self.chunk_frames {
            return None;
        }
        if target > self.lstm_done {
            let w0 = (self.lstm_done - left1).max(0);
            let w1 = if last { self.total_frames } else { target + right1 };
            for (ch, stream) in self.channels.iter_mut().enumerate() {
                let ids = codes(ch, w0, w1);
                let q = ids.len() as i64 / (w1 - w0);
                let ids = Tensor::from_slice(&ids).view([1, q, w1 - w0]).to_device(self.device);
                let latent = codec.first_conv(&codec.embed(&ids)).narrow(
                    2,
                    self.lstm_done - w0,
                    target - self.lstm_done,
                );
                let (out, state) = codec.lstm(&latent, stream.lstm_state.as_ref());
                stream.lstm_state = Some(state);
                stream.buf = Some(match stream.buf.take() {
                    Some(buf) => Tensor::cat(&[buf, out], 2),
                    None => out,
                });
            }
            self.lstm_done = target;
        }
        self.emit(codec, last)
    }

    fn emit(&mut self, codec: &EncodecDecoder, last: bool) -> Option<DecodedChunk> {
        let context = codec.upsample_context();
        let emit_to = if last { self.total_frames } else { self.lstm_done - context };
        if emit_to <= self.emitted || (!last && emit_to - self.emitted < self.chunk_frames) {
            return None;
        }
        let start = (self.emitted - context).max(0);
        let hop = codec.hop();
        let mut audio = Vec::with_capacity(self.channels.len());
        for stream in &mut self.channels {
            let buf = stream.buf.as_ref().expect("LSTM ran before any emit");
            let window = buf.narrow(2, start - stream.buf_start, self.lstm_done - start);
            let decoded = codec.upsample(&window);
            audio.push(
                decoded
                    .narrow(2, (self.emitted - start) * hop, (emit_to - self.emitted) * hop)
                    .squeeze_dim(0),
            );
            let keep_from = (emit_to - context).max(stream.buf_start);
            let kept = buf.narrow(2, keep_from - stream.buf_start, self.lstm_done - keep_from).copy();
            stream.buf = Some(kept);
            stream.buf_start = keep_from;
        }
        let chunk = DecodedChunk {
            start_frame: self.emitted,
            frames: emit_to - self.emitted,
            audio: Tensor::cat(&audio, 0).to_kind(Kind::Float),
        };
        self.emitted = emit_to;
        Some(chunk)
    }
}
