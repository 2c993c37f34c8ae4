//! The generation loop: a batch of requests, each with its own prompt, length, sampling parameters and
//! seed, decoded together (conditional rows, then unconditional rows for guidance) with the delay pattern
//! applied exactly as transformers applies it; each request's audio goes to an [`Observer`] as it settles.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use tch::{Kind, Tensor};

use super::error::{MusicgenError, Result};
use super::observer::{Observer, OnChunk};
use super::sampling::{draw, to_vec_f32, to_vec_i64, SamplingMode, SamplingParams, SeededRng};
use super::stream::{AudioStream, DecodedChunk};
use super::{kernels, MusicGen};

/// One text-to-music request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// The text prompt; empty is the null condition (unconditional generation).
    pub prompt: String,
    /// Text whose conditioning replaces the null condition in guidance's unconditional row; empty
    /// keeps the null condition.
    pub negative_prompt: String,
    /// Audio frames to produce (see [`MusicGen::frames_for`]).
    pub frames: usize,
    /// How codes are picked.
    pub sampling: SamplingParams,
    /// Classifier-free guidance scale; ≤ 1 turns guidance off for this request (see
    /// [`GenerationRequest::effective_guidance`]).
    pub guidance_scale: f64,
    /// Seed of the request's own generator: the same seed gives the same codes on the same device.
    pub seed: u64,
    /// Frames per streamed chunk.
    pub chunk_frames: usize,
}

/// A chunk of decoded audio for one request of the batch.
#[derive(Debug, Clone)]
pub struct AudioChunkOut {
    /// Index of the request in the batch.
    pub request: usize,
    /// Chunk number within the request, from 0.
    pub index: usize,
    /// First frame covered.
    pub start_frame: usize,
    /// Frames covered.
    pub frames: usize,
    /// Channels interleaved in `samples`.
    pub channels: usize,
    /// f32 PCM, channel-interleaved.
    pub samples: Vec<f32>,
    /// Whether this is the request's last chunk.
    pub is_last: bool,
}

/// What one request cost and produced.
#[derive(Debug, Clone, Default)]
pub struct GenerationStats {
    /// Frames of audio produced (fewer than asked when stopped).
    pub frames: usize,
    /// Decoder steps run while the request was live.
    pub steps: usize,
    /// The codes, codebook-major: `codes[k][frame]`.
    pub codes: Vec<Vec<i64>>,
    /// Tokenization, T5 and cross-attention K/V (shared by the batch).
    pub text_encode: Duration,
    /// Decoder forward passes and sampling.
    pub decode: Duration,
    /// EnCodec streaming decode of this request.
    pub codec: Duration,
    /// From the call to this request's first chunk.
    pub first_chunk: Option<Duration>,
    /// Decoder steps run before the first chunk could be decoded.
    pub first_chunk_steps: Option<usize>,
    /// From the call to this request's end.
    pub total: Duration,
    /// The callback asked to stop.
    pub stopped: bool,
}

/// Per-request loop state.
struct Row {
    steps: i64,
    tokens: Vec<i64>,
    rng: SeededRng,
    stream: AudioStream,
    chunks: usize,
    live: bool,
    stats: GenerationStats,
}

impl MusicGen {
    /// A request for `duration_s` seconds with the checkpoint's defaults (sampling as `do_sample` says).
    pub fn request(&self, prompt: &str, duration_s: f64) -> GenerationRequest {
        let g = self.generation_defaults();
        GenerationRequest {
            prompt: prompt.to_owned(),
            negative_prompt: String::new(),
            frames: self.frames_for(duration_s),
            sampling: SamplingParams {
                greedy: !g.do_sample,
                temperature: g.temperature,
                top_k: g.top_k,
                top_p: g.top_p,
                mode: SamplingMode::Transformers,
            },
            guidance_scale: g.guidance_scale,
            seed: 0,
            chunk_frames: (self.frame_rate() / 2.0).ceil() as usize,
        }
    }

    /// Generates every request of the batch, calling `on_chunk` with each decoded chunk. Returning
    /// `ControlFlow::Break` stops that request within one step; the call returns once every request has
    /// finished or stopped.
    pub fn generate(
        &self,
        requests: &[GenerationRequest],
        on_chunk: impl FnMut(AudioChunkOut) -> ControlFlow<()>,
    ) -> Result<Vec<GenerationStats>> {
        self.generate_observed(requests, &mut OnChunk(on_chunk))
    }

    /// [`MusicGen::generate`] with an [`Observer`], which stops requests and hears each chunk and each
    /// request's end as it happens (a short request ends before its batch).
    pub fn generate_observed(
        &self,
        requests: &[GenerationRequest],
        observer: &mut impl Observer,
    ) -> Result<Vec<GenerationStats>> {
        let _guard = tch::no_grad_guard();
        let _inference = kernels::InferenceMode::enter();
        requests.iter().try_for_each(|r| self.validate(r))?;
        let start = Instant::now();
        let any_cfg = requests.iter().any(GenerationRequest::guided);
        let cond = self.condition(requests, any_cfg)?;
        let mut rows: Vec<Row> = requests.iter().map(|r| self.new_row(r)).collect();
        let max_steps = rows.iter().map(|r| r.steps).max().unwrap_or(0);
        let mut state = self.decoder.new_state(&cond.states, &cond.mask, max_steps);
        let picker = Picker::new(self, requests, any_cfg)?;
        let text_encode = start.elapsed();
        rows.iter_mut().for_each(|r| r.stats.text_encode = text_encode);
        for step in 0..max_steps {
            for (i, row) in rows.iter_mut().enumerate() {
                if row.live && observer.stop(i) {
                    row.stats.stopped = true;
                    self.end_row(i, row, start, observer);
                }
            }
            if rows.iter().all(|r| !r.live) {
                break;
            }
            let t = Instant::now();
            observer.step(step as usize);
            let input = self.input_column(&rows, step, any_cfg);
            let logits = self.decoder.forward(&input, &mut state).squeeze_dim(2);
            let picked = picker.pick(&logits, &mut rows)?;
            let spent = t.elapsed();
            for (i, row) in rows.iter_mut().enumerate().filter(|(_, r)| r.live) {
                row.stats.decode += spent;
                row.stats.steps += 1;
                self.store(row, step + 1, &picked[i]);
                self.stream_row(i, row, step + 1, start, observer)?;
            }
        }
        Ok(rows.into_iter().map(|r| r.stats).collect())
    }

    fn validate(&self, r: &GenerationRequest) -> Result<()> {
        let bad = |field, message: String| Err(MusicgenError::InvalidRequest { field, message });
        let s = &r.sampling;
        if r.frames == 0 || r.frames > self.max_frames() {
            return bad("frames", format!("must be 1..={}, got {}", self.max_frames(), r.frames));
        }
        let temperature_ok = s.temperature > 0.0 && s.temperature.is_finite();
        if !s.greedy && !temperature_ok {
            return bad("temperature", format!("must be > 0, got {}", s.temperature));
        }
        if s.top_k < 0 || s.top_k > self.codebook_size() as i64 {
            return bad("top_k", format!("must be 0..={}, got {}", self.codebook_size(), s.top_k));
        }
        if !(s.top_p > 0.0 && s.top_p <= 1.0) {
            return bad("top_p", format!("must be > 0 and ≤ 1, got {}", s.top_p));
        }
        if !r.guidance_scale.is_finite() || r.guidance_scale < 0.0 {
            return bad("guidance_scale", format!("must be finite and ≥ 0, got {}", r.guidance_scale));
        }
        if r.chunk_frames == 0 {
            return bad("chunk_frames", "must be ≥ 1".into());
        }
        Ok(())
    }

    fn new_row(&self, r: &GenerationRequest) -> Row {
        let (c, cc) = (self.num_codebooks(), self.config.decoder.channel_codebooks());
        let steps = r.frames as i64 + cc - 1;
        let stream =
            AudioStream::new(self.channels(), r.frames as i64, r.chunk_frames as i64, self.options.device);
        Row {
            steps,
            tokens: vec![self.config.decoder.pad_id(); c * (steps as usize + 1)],
            rng: SeededRng::new(r.seed),
            stream,
            chunks: 0,
            live: true,
            stats: GenerationStats::default(),
        }
    }

    /// Delay of codebook `k`: stereo models interleave left/right, which share a delay.
    fn delay(&self, k: usize) -> i64 {
        (k / self.channels()) as i64
    }

    /// Column `step` of every row as the decoder input `(rows, codebooks, 1)`, with the delay pattern
    /// forcing pad at positions still inside the leading or trailing delay; duplicated for guidance.
    fn input_column(&self, rows: &[Row], step: i64, any_cfg: bool) -> Tensor {
        let (c, cc, pad) =
            (self.num_codebooks(), self.config.decoder.channel_codebooks(), self.config.decoder.pad_id());
        let mut ids = Vec::with_capacity(rows.len() * c);
        for row in rows {
            let len = row.steps + 1;
            for k in 0..c {
                let d = self.delay(k);
                let valid = step > d && step < len - cc + 1 + d && step <= row.steps;
                ids.push(if valid { row.tokens[k * len as usize + step as usize] } else { pad });
            }
        }
        let input = Tensor::from_slice(&ids).view([rows.len() as i64, c as i64, 1]);
        let input = if any_cfg { input.repeat([2, 1, 1]) } else { input };
        input.to_device(self.options.device)
    }

    fn store(&self, row: &mut Row, column: i64, codes: &[i64]) {
        if column > row.steps {
            return;
        }
        let len = row.steps as usize + 1;
        for (k, &code) in codes.iter().enumerate() {
            row.tokens[k * len + column as usize] = code;
        }
    }

    /// Codes of `channel` for frames `from..to`, `(quantizers, to − from)` row-major.
    fn frame_codes(&self, tokens: &[i64], steps: i64, channel: usize, from: i64, to: i64) -> Vec<i64> {
        let (c, channels, len) = (self.num_codebooks(), self.channels(), steps as usize + 1);
        let mut out = Vec::with_capacity(c / channels * (to - from) as usize);
        for k in (channel..c).step_by(channels) {
            let shift = 1 + self.delay(k);
            out.extend((from..to).map(|f| tokens[k * len + (f + shift) as usize]));
        }
        out
    }

    fn stream_row(
        &self,
        index: usize,
        row: &mut Row,
        column: i64,
        start: Instant,
        observer: &mut impl Observer,
    ) -> Result<()> {
        let cc = self.config.decoder.channel_codebooks();
        let total = row.steps - cc + 1;
        let available = (column - cc + 1).clamp(0, total);
        let t = Instant::now();
        let (tokens, steps) = (&row.tokens, row.steps);
        let codes = |ch: usize, from: i64, to: i64| self.frame_codes(tokens, steps, ch, from, to);
        let chunk = row.stream.advance(&self.codec, available, &codes);
        row.stats.codec += t.elapsed();
        row.live = !row.stream.finished();
        if let Some(chunk) = chunk {
            let out = self.chunk_out(index, row.chunks, chunk, row.stream.finished())?;
            row.chunks += 1;
            row.stats.first_chunk.get_or_insert_with(|| start.elapsed());
            row.stats.first_chunk_steps.get_or_insert(row.stats.steps);
            row.stats.frames = out.start_frame + out.frames;
            // A live row had not stopped: `Break` is its first stop.
            row.stats.stopped = observer.chunk(out).is_break();
            row.live &= !row.stats.stopped;
        }
        if !row.live {
            self.end_row(index, row, start, observer);
        }
        Ok(())
    }

    /// Ends a request: its figures become final and the observer hears it.
    fn end_row(&self, index: usize, row: &mut Row, start: Instant, observer: &mut impl Observer) {
        row.live = false;
        row.stats.total = start.elapsed();
        row.stats.codes = self.codes_of(row);
        observer.finished(index, &row.stats);
    }

    fn chunk_out(
        &self,
        request: usize,
        index: usize,
        chunk: DecodedChunk,
        is_last: bool,
    ) -> Result<AudioChunkOut> {
        let channels = chunk.audio.size()[0] as usize;
        Ok(AudioChunkOut {
            request,
            index,
            start_frame: chunk.start_frame as usize,
            frames: chunk.frames as usize,
            channels,
            samples: to_vec_f32(&chunk.audio.transpose(0, 1))?,
            is_last,
        })
    }

    fn codes_of(&self, row: &Row) -> Vec<Vec<i64>> {
        let frames = row.stats.frames as i64;
        (0..self.num_codebooks())
            .map(|k| {
                let channel_codes = self.frame_codes(&row.tokens, row.steps, k % self.channels(), 0, frames);
                let j = k / self.channels();
                channel_codes[j * frames as usize..(j + 1) * frames as usize].to_vec()
            })
            .collect()
    }
}

/// Guidance and code picking for a batch, with the per-request scales and temperatures as tensors.
struct Picker {
    n: i64,
    cfg_scale: Option<Tensor>,
    cfg_rows: Option<Tensor>,
    temperature: Tensor,
    params: Vec<SamplingParams>,
    vocab: i64,
}

impl Picker {
    fn new(model: &MusicGen, requests: &[GenerationRequest], any_cfg: bool) -> Result<Self> {
        let dev = model.options.device;
        let n = requests.len() as i64;
        let column = |v: Vec<f64>| Tensor::from_slice(&v).to_kind(Kind::Float).view([n, 1, 1]).to_device(dev);
        let all_cfg = requests.iter().all(GenerationRequest::guided);
        let cfg_rows = (any_cfg && !all_cfg).then(|| {
            let rows: Vec<bool> = requests.iter().map(GenerationRequest::guided).collect();
            Tensor::from_slice(&rows).view([n, 1, 1]).to_device(dev)
        });
        Ok(Self {
            n,
            cfg_scale: any_cfg.then(|| column(requests.iter().map(|r| r.effective_guidance()).collect())),
            cfg_rows,
            temperature: column(requests.iter().map(|r| r.sampling.temperature).collect()),
            params: requests.iter().map(|r| r.sampling).collect(),
            vocab: model.codebook_size() as i64,
        })
    }

    /// Codes `[row][codebook]` from decoder logits `(rows[·2], codebooks, vocab)`.
    fn pick(&self, logits: &Tensor, rows: &mut [Row]) -> Result<Vec<Vec<i64>>> {
        let logits = logits.to_kind(Kind::Float);
        let cond = logits.narrow(0, 0, self.n);
        let guided = match &self.cfg_scale {
            Some(scale) => {
                let uncond = logits.narrow(0, self.n, self.n);
                let mixed = &uncond + (&cond - &uncond) * scale;
                match &self.cfg_rows {
                    Some(rows) => mixed.where_self(rows, &cond),
                    None => mixed,
                }
            }
            None => cond,
        };
        let c = guided.size()[1] as usize;
        let greedy = if self.params.iter().any(|p| p.greedy) {
            to_vec_i64(&guided.argmax(-1, false))?
        } else {
            vec![]
        };
        let width = self.params.iter().filter(|p| !p.greedy).map(|p| p.candidates(self.vocab)).max();
        let sampled = match width {
            Some(width) => {
                let (values, indices) = (guided / &self.temperature).topk(width, -1, true, true);
                Some((to_vec_f32(&values)?, to_vec_i64(&indices)?, width as usize))
            }
            None => None,
        };
        let mut out = Vec::with_capacity(rows.len());
        for (i, (row, p)) in rows.iter_mut().zip(&self.params).enumerate() {
            out.push(match (&sampled, p.greedy) {
                (Some((vals, idx, w)), false) => {
                    let span = i * c * w..(i + 1) * c * w;
                    let keep = p.candidates(self.vocab) as usize;
                    draw(&vals[span.clone()], &idx[span], *w, keep, (p.top_p, p.mode), &mut row.rng)
                }
                _ => greedy[i * c..(i + 1) * c].to_vec(),
            });
        }
        Ok(out)
    }
}
