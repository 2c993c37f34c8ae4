//! One request's state across a generation: the codes settled so far (whole request, undelayed), the
//! delay-pattern layout of the window being decoded, its audio stream and figures.
//!
//! A window holds `steps + 1` columns per codebook: column 0 is the start token and codebook `k`'s
//! frame `f` sits at column `f + 1 + delay(k)`, as transformers' `build_delay_pattern_mask` lays it
//! out. A window prompted with `prompt` frames of earlier codes has them in place before it starts, and
//! the decoder's picks never overwrite them.

use super::sampling::SeededRng;
use super::stream::AudioStream;
use super::{GenerationRequest, GenerationStats, MusicGen};

/// The delay-pattern layout of one window.
pub(super) struct Window {
    /// Global frame of the window's first frame.
    pub offset: usize,
    /// Frames at the window's start that are earlier codes, not predictions.
    pub prompt: usize,
    /// Frames the window ends with (prompt included).
    pub frames: usize,
    /// Columns predicted after the start column: `frames + channel_codebooks − 1`.
    pub steps: i64,
    /// `codebooks × (steps + 1)` codes, codebook-major.
    pub tokens: Vec<i64>,
}

/// Per-request loop state.
pub(super) struct Row {
    /// Frames of the whole sequence: the prompt codes and what follows them.
    pub frames: usize,
    /// Leading frames whose audio is not streamed (the prompt's, unless it is asked for).
    pub skip: usize,
    /// Settled codes `[codebook][frame]` of the whole request so far.
    pub codes: Vec<Vec<i64>>,
    /// The window being decoded.
    pub window: Option<Window>,
    pub rng: SeededRng,
    pub stream: AudioStream,
    pub chunks: usize,
    /// Not ended: neither every frame streamed nor stopped.
    pub live: bool,
    pub stats: GenerationStats,
}

impl Row {
    /// Whether the request still needs frames decoded.
    pub fn wants_frames(&self) -> bool {
        self.live && self.codes[0].len() < self.frames
    }

    /// Whether the row takes part in decoding `column` of the current window.
    pub fn decoding(&self, column: i64) -> bool {
        self.live && self.window.as_ref().is_some_and(|w| column <= w.steps)
    }
}

impl MusicGen {
    pub(super) fn new_row(&self, r: &GenerationRequest) -> Row {
        let prompt = r.prompt_codes.first().map_or(0, Vec::len);
        let frames = prompt + r.frames;
        let stream =
            AudioStream::new(self.channels(), frames as i64, r.chunk_frames as i64, self.options.device);
        let mut codes = vec![Vec::with_capacity(frames); self.num_codebooks()];
        for (row, given) in codes.iter_mut().zip(&r.prompt_codes) {
            row.extend_from_slice(given);
        }
        Row {
            frames,
            skip: if r.include_prompt { 0 } else { prompt },
            codes,
            window: None,
            rng: SeededRng::new(r.seed),
            stream,
            chunks: 0,
            live: true,
            stats: GenerationStats::default(),
        }
    }

    /// Delay of codebook `k`: stereo models interleave left/right, which share a delay.
    pub(super) fn delay(&self, k: usize) -> i64 {
        (k / self.channels()) as i64
    }

    /// Opens the row's next window at global frame `offset`, prompted with the `prompt` settled
    /// frames from there, ending at most `window` frames later.
    pub(super) fn open_window(&self, row: &mut Row, offset: usize, prompt: usize, window: usize) {
        let (c, cc) = (self.num_codebooks(), self.config.decoder.channel_codebooks());
        let frames = (row.frames - offset).min(window);
        let steps = frames as i64 + cc - 1;
        let len = steps as usize + 1;
        let mut tokens = vec![self.config.decoder.pad_id(); c * len];
        for (k, codes) in row.codes.iter().enumerate() {
            let at = k * len + 1 + self.delay(k) as usize;
            tokens[at..at + prompt].copy_from_slice(&codes[offset..offset + prompt]);
        }
        row.window = Some(Window { offset, prompt, frames, steps, tokens });
    }

    /// Columns `from..from + width` of the rows' windows, `(rows, codebooks, width)` row-major, with
    /// pad wherever the delay pattern has no code yet (or no more).
    pub(super) fn input_columns(&self, rows: &[&Row], from: i64, width: i64) -> Vec<i64> {
        let (c, cc, pad) =
            (self.num_codebooks(), self.config.decoder.channel_codebooks(), self.config.decoder.pad_id());
        let mut ids = Vec::with_capacity(rows.len() * c * width as usize);
        for row in rows {
            let w = row.window.as_ref().expect("a decoding row has a window");
            let len = w.steps + 1;
            for k in 0..c {
                let d = self.delay(k);
                for col in from..from + width {
                    let valid = col > d && col < len - cc + 1 + d && col <= w.steps;
                    ids.push(if valid { w.tokens[k * len as usize + col as usize] } else { pad });
                }
            }
        }
        ids
    }

    /// Stores the picks for `column`, keeping the prompt's codes where the pattern holds them, and
    /// settles the frames the column completes. Returns how many frames of the request are settled.
    pub(super) fn store(&self, row: &mut Row, column: i64, picks: &[i64]) -> usize {
        let cc = self.config.decoder.channel_codebooks();
        let Some(w) = row.window.as_mut() else { return row.codes[0].len() };
        if column > w.steps {
            return row.codes[0].len();
        }
        let len = w.steps as usize + 1;
        for (k, &code) in picks.iter().enumerate() {
            let d = (k / self.channels()) as i64;
            let in_prompt = column > d && column <= w.prompt as i64 + d;
            if !in_prompt {
                w.tokens[k * len + column as usize] = code;
            }
        }
        let settled = (column - cc + 1).clamp(0, w.frames as i64) as usize;
        for frame in row.codes[0].len() - w.offset..settled {
            for (k, codes) in row.codes.iter_mut().enumerate() {
                let d = k / self.channels();
                codes.push(w.tokens[k * len + frame + 1 + d]);
            }
        }
        row.codes[0].len()
    }

    /// Codes of `channel` for frames `from..to`, `(quantizers, to − from)` row-major.
    pub(super) fn frame_codes(&self, codes: &[Vec<i64>], channel: usize, from: i64, to: i64) -> Vec<i64> {
        let (from, to) = (from as usize, to as usize);
        (channel..codes.len())
            .step_by(self.channels())
            .flat_map(|k| codes[k][from..to].iter().copied())
            .collect()
    }
}
