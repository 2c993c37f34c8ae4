//! The generation loop: a batch of requests, each with its own prompt, length, sampling parameters and
//! seed, decoded together (conditional rows, then unconditional rows for guidance) with the delay pattern
//! applied exactly as transformers applies it; each request's audio goes to an [`Observer`] as it settles.
//!
//! A request longer than the checkpoint's window (`max_length` frames, 30 s for the published models)
//! extends as audiocraft's `MusicGen.generate` does: windows start every `extend_stride` frames, and each
//! after the first is prompted with the last `window − extend_stride` frames of codes so far and adds
//! what follows them. The audio stream runs over the concatenated codes, so it has no seam. Every
//! continuing request of a batch has the same prompt length, so each pass over the windows is one
//! batch again, prefilled in one decoder call.

use std::ops::ControlFlow;
use std::time::Instant;

use tch::Tensor;

use super::error::{MusicgenError, Result};
use super::observer::{Observer, OnChunk};
use super::picker::Picker;
use super::rows::Row;
use super::sampling::{to_vec_f32, SamplingMode, SamplingParams};
use super::stream::DecodedChunk;
use super::{kernels, MusicGen};
pub use crate::engine::request::{AudioChunkOut, GenerationRequest, GenerationStats};

impl MusicGen {
    /// A request for `duration_s` seconds with the checkpoint's defaults (sampling as `do_sample` says).
    pub fn request(&self, prompt: &str, duration_s: f64) -> GenerationRequest {
        let g = self.generation_defaults();
        GenerationRequest {
            prompt: prompt.to_owned(),
            negative_prompt: String::new(),
            frames: self.frames_for(duration_s),
            prompt_codes: Vec::new(),
            melody: Vec::new(),
            include_prompt: false,
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
        let mut run = Run { start: Instant::now(), steps: 0 };
        let mut rows: Vec<Row> = requests.iter().map(|r| self.new_row(r)).collect();
        let (window, stride) = (self.window_frames(), self.extend_stride_frames());
        for pass in 0.. {
            let active: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].wants_frames()).collect();
            if active.is_empty() {
                break;
            }
            for &i in &active {
                // The first window is prompted with the request's own codes, if any.
                let settled = rows[i].codes[0].len();
                let (offset, prompt) =
                    if pass == 0 { (0, settled) } else { (pass * stride, window - stride) };
                debug_assert_eq!(settled, offset + prompt, "windows follow the stride");
                self.open_window(&mut rows[i], offset, prompt, window);
            }
            self.run_window(requests, &mut rows, &active, &mut run, observer)?;
        }
        Ok(rows.into_iter().map(|r| r.stats).collect())
    }

    /// Decodes the open windows of the `active` rows as one batch: the prompt columns every row has
    /// in one call, then one column per step (a longer prompt's columns forced from its codes).
    fn run_window(
        &self,
        requests: &[GenerationRequest],
        rows: &mut [Row],
        active: &[usize],
        run: &mut Run,
        observer: &mut impl Observer,
    ) -> Result<()> {
        let t = Instant::now();
        let batch: Vec<&GenerationRequest> = active.iter().map(|&i| &requests[i]).collect();
        let any_cfg = batch.iter().any(|r| r.guided());
        let picker = Picker::new(self, &batch, any_cfg)?;
        let window = |i: usize| rows[i].window.as_ref().expect("an active row has a window");
        let max_steps = active.iter().map(|&i| window(i).steps).max().unwrap_or(0);
        let prompt = active.iter().map(|&i| window(i).prompt).min().unwrap_or(0) as i64;
        let mut state = match &self.melody {
            Some(melody) => self.melody_state(melody, &batch, any_cfg, max_steps)?,
            None => {
                let cond = self.condition(&batch, any_cfg)?;
                self.decoder.new_state(&cond.states, &cond.mask, max_steps)
            }
        };
        let spent = t.elapsed();
        active.iter().for_each(|&i| rows[i].stats.text_encode += spent);
        let (n, c) = (active.len() as i64, self.num_codebooks() as i64);
        let mut column = 0;
        while column < max_steps {
            for &i in active {
                if rows[i].live && observer.stop(i) {
                    rows[i].stats.stopped = true;
                    self.end_row(i, &mut rows[i], run.start, observer);
                }
            }
            if active.iter().all(|&i| !rows[i].decoding(column + 1)) {
                break;
            }
            let width = if column == 0 { prompt + 1 } else { 1 };
            let t = Instant::now();
            observer.step(run.steps);
            run.steps += 1;
            let inputs: Vec<&Row> = active.iter().map(|&i| &rows[i]).collect();
            let input = Tensor::from_slice(&self.input_columns(&inputs, column, width)).view([n, c, width]);
            let input = if any_cfg { input.repeat([2, 1, 1]) } else { input };
            let logits = self.decoder.forward(&input.to_device(self.options.device), &mut state);
            let mut picking: Vec<&mut Row> = select_mut(rows, active);
            let picked = picker.pick(&logits.select(2, width - 1), &mut picking)?;
            let spent = t.elapsed();
            column += width;
            for (slot, &i) in active.iter().enumerate() {
                let row = &mut rows[i];
                if !row.decoding(column) {
                    continue;
                }
                row.stats.decode += spent;
                row.stats.steps += 1;
                let settled = self.store(row, column, &picked[slot]);
                self.stream_row(i, row, settled, run.start, observer)?;
            }
        }
        Ok(())
    }

    /// The invariants of a resolved request, for callers of this library that build one by hand:
    /// the service's requests pass `generation::ValidGenerate` first, which maps the wire's ranges
    /// (`top_p` 0 = off, guidance 1..=20, a chunk of one frame or more) into these.
    fn validate(&self, r: &GenerationRequest) -> Result<()> {
        let bad = |field, message: String| Err(MusicgenError::InvalidRequest { field, message });
        let s = &r.sampling;
        if r.frames == 0 {
            return bad("frames", format!("must be >= 1, got {}", r.frames));
        }
        if let Some(first) = r.prompt_codes.first() {
            let (c, vocab, window) =
                (self.num_codebooks(), self.codebook_size() as i64, self.window_frames());
            if r.prompt_codes.len() != c || r.prompt_codes.iter().any(|k| k.len() != first.len()) {
                return bad("prompt_codes", format!("must be {c} codebooks of equal length"));
            }
            if first.len() >= window {
                let got = first.len();
                return bad(
                    "audio_prompt",
                    format!("must be shorter than the window ({window} frames), got {got}"),
                );
            }
            if r.prompt_codes.iter().flatten().any(|&code| !(0..vocab).contains(&code)) {
                return bad("prompt_codes", format!("codes must be within 0..{vocab}"));
            }
        }
        self.validate_melody(r)?;
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

    /// Streams what the row's `settled` frames add to its audio; ends the row with its last chunk.
    fn stream_row(
        &self,
        index: usize,
        row: &mut Row,
        settled: usize,
        start: Instant,
        observer: &mut impl Observer,
    ) -> Result<()> {
        let t = Instant::now();
        let codes = &row.codes;
        let read = |ch: usize, from: i64, to: i64| self.frame_codes(codes, ch, from, to);
        let chunk = row.stream.advance(&self.codec, settled as i64, &read);
        row.stats.codec += t.elapsed();
        row.live = !row.stream.finished();
        if let Some(chunk) = chunk.and_then(|c| c.after(row.skip)) {
            let out = self.chunk_out(index, row.chunks, chunk, row.stream.finished(), row.skip)?;
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
        let frames = (row.skip + row.stats.frames).min(row.codes[0].len());
        row.stats.codes = row.codes.iter().map(|codes| codes[..frames].to_vec()).collect();
        observer.finished(index, &row.stats);
    }

    fn chunk_out(
        &self,
        request: usize,
        index: usize,
        chunk: DecodedChunk,
        is_last: bool,
        skip: usize,
    ) -> Result<AudioChunkOut> {
        let channels = chunk.audio.size()[0] as usize;
        Ok(AudioChunkOut {
            request,
            index,
            start_frame: chunk.start_frame as usize - skip,
            frames: chunk.frames as usize,
            channels,
            samples: to_vec_f32(&chunk.audio.transpose(0, 1))?,
            is_last,
        })
    }
}

/// The clock and step count of one `generate` call, across its windows.
struct Run {
    start: Instant,
    steps: usize,
}

/// Mutable references to `rows[i]` for each `i` of the ascending `picks`.
fn select_mut<'a>(rows: &'a mut [Row], picks: &[usize]) -> Vec<&'a mut Row> {
    rows.iter_mut().enumerate().filter(|(i, _)| picks.binary_search(i).is_ok()).map(|(_, r)| r).collect()
}
