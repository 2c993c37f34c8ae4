//! A running generation as its caller sees it: decoded chunks with their place in the output, then a
//! summary (timings, throughput, the host-memory peak while it ran) or an error.
//!
//! [`Admitted::next`] turns the worker's events into [`Progress`]: it keeps the sample offset, the
//! time to the first chunk and the process's RSS peak (sampled at every chunk), turns a stop by
//! shutdown into UNAVAILABLE, and hands an out-of-memory failure to
//! [`Generation::out_of_memory`](super::Generation::out_of_memory) (free figure, emergency cleanup).

use std::time::Instant;

use super::{Admitted, Error, GenerationError};
use crate::{
    engine::{EngineError, Event, Finished},
    monitor::sampler::rss_bytes,
    resources::journal::{Journal, Outcome, QueuedGeneration},
};

/// A generation's line in the journal: in the queue from admission, ended once; dropped before it
/// ended (the client went away), it ends as cancelled.
#[derive(Debug)]
pub(super) struct JournalEntry {
    journal: Journal,
    request_id: String,
    ended: bool,
}

impl JournalEntry {
    /// Puts `entry` in the journal's queue.
    pub fn admit(journal: Journal, entry: QueuedGeneration) -> Self {
        let request_id = entry.request_id.clone();
        journal.admitted(entry);
        Self { journal, request_id, ended: false }
    }

    pub(super) fn started(&self) {
        self.journal.started(&self.request_id);
    }

    pub(super) fn ended(&mut self, first_audio_ms: Option<f64>, real_time_factor: f64, outcome: Outcome) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        self.journal.ended(&self.request_id, first_audio_ms, real_time_factor, outcome);
    }
}

impl Drop for JournalEntry {
    fn drop(&mut self) {
        if !self.ended {
            self.journal.ended(&self.request_id, None, 0.0, Outcome::Cancelled);
        }
    }
}

/// What a running generation reports next.
#[derive(Debug)]
pub enum Progress {
    /// Decoded audio.
    Chunk(Chunk),
    /// Finished; nothing follows.
    Finished(Summary),
    /// Failed, stopped by shutdown, or lost its worker; nothing follows.
    Failed(Error),
}

/// One decoded chunk and its place in the output.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Chunk number, from 0.
    pub index: u32,
    /// Samples per channel sent before this chunk.
    pub sample_offset: u64,
    /// Interleaved f32 samples.
    pub samples: Vec<f32>,
    /// Frames decoded once this chunk is out.
    pub frames_done: u32,
    /// Frames the request asks for.
    pub frames_total: u32,
}

/// How a finished generation went.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// From the request's start to its first chunk (the total when none came).
    pub time_to_first_chunk_ms: f64,
    /// From the request's start to its end.
    pub total_ms: f64,
    /// Frames generated.
    pub frames: u32,
    /// Decoding steps per second of decoding time.
    pub steps_per_second: f64,
    /// Wall time over audio time.
    pub real_time_factor: f64,
    /// Highest process RSS seen while it ran, minus the RSS at its start.
    pub peak_host_memory_delta_bytes: i64,
    /// libtorch's CUDA allocator peak during the generation less what was allocated when it began;
    /// `None` on the CPU or where the allocator does not answer.
    pub peak_gpu_memory_delta_bytes: Option<i64>,
    /// Samples per channel sent.
    pub samples: u64,
    /// Time spent queued before the worker started it.
    pub queue_wait_ms: f64,
    /// How many requests shared its batch.
    pub batch_size: u32,
}

/// What [`Admitted::next`] keeps between events.
#[derive(Debug)]
pub(super) struct Tracking {
    started: Instant,
    samples_sent: u64,
    first_chunk_ms: Option<f64>,
    rss_start: u64,
    rss_peak: u64,
    done: bool,
}

impl Tracking {
    /// Starts tracking a generation that began at `started`.
    pub fn new(started: Instant) -> Self {
        let rss = rss_bytes();
        Self { started, samples_sent: 0, first_chunk_ms: None, rss_start: rss, rss_peak: rss, done: false }
    }
}

impl Admitted {
    /// The next chunk, the summary or the error; `None` once one of the last two was returned.
    pub async fn next(&mut self) -> Option<Progress> {
        if self.tracking.done {
            return None;
        }
        if let Some(stalled) = self.stall.stalled() {
            // The watchdog gave everything back and ended the journal line already.
            self.tracking.done = true;
            return Some(Progress::Failed(stalled.into()));
        }
        let mut event = self.events.recv().await;
        self.stall.took();
        while let Some(Event::Started) = event {
            self.journal.lock().expect("journal lock").started();
            event = self.events.recv().await;
            self.stall.took();
        }
        let progress = match event {
            Some(Event::Started) => unreachable!("skipped above"),
            Some(Event::Chunk(chunk)) => return Some(Progress::Chunk(self.chunk(chunk))),
            Some(Event::Done(done)) if done.stats.stopped => {
                Progress::Failed(GenerationError::ShutDown.into())
            }
            Some(Event::Done(done)) => Progress::Finished(self.summary(&done)),
            Some(Event::Failed(EngineError::OutOfMemory(oom))) => {
                Progress::Failed(self.generation.out_of_memory(*oom).into())
            }
            Some(Event::Failed(e)) => Progress::Failed(GenerationError::from(e).into()),
            None => {
                let lost = GenerationError::Internal("the inference engine stopped without an answer".into());
                Progress::Failed(lost.into())
            }
        };
        self.tracking.done = true;
        let first_audio_ms = self.tracking.first_chunk_ms;
        let mut journal = self.journal.lock().expect("journal lock");
        match &progress {
            Progress::Finished(s) => journal.ended(first_audio_ms, s.real_time_factor, Outcome::Completed),
            Progress::Failed(e) => journal.ended(first_audio_ms, 0.0, Outcome::Failed(e.to_string())),
            Progress::Chunk(_) => {}
        }
        Some(progress)
    }

    fn chunk(&mut self, chunk: crate::engine::AudioChunkOut) -> Chunk {
        let t = &mut self.tracking;
        t.rss_peak = t.rss_peak.max(rss_bytes());
        t.first_chunk_ms.get_or_insert_with(|| t.started.elapsed().as_secs_f64() * 1e3);
        let sample_offset = t.samples_sent;
        t.samples_sent += (chunk.samples.len() / chunk.channels.max(1)) as u64;
        Chunk {
            index: chunk.index as u32,
            sample_offset,
            frames_done: (chunk.start_frame + chunk.frames) as u32,
            frames_total: (self.request.frames
                + if self.request.include_prompt { self.prompt_frames } else { 0 })
                as u32,
            samples: chunk.samples,
        }
    }

    fn summary(&self, done: &Finished) -> Summary {
        let (t, stats) = (&self.tracking, &done.stats);
        let total_ms = t.started.elapsed().as_secs_f64() * 1e3;
        let audio_s = t.samples_sent as f64 / f64::from(self.facts.checkpoint.sample_rate.max(1));
        let decode_s = stats.decode.as_secs_f64();
        Summary {
            time_to_first_chunk_ms: t.first_chunk_ms.unwrap_or(total_ms),
            total_ms,
            frames: stats.frames as u32,
            steps_per_second: if decode_s > 0.0 { stats.steps as f64 / decode_s } else { 0.0 },
            real_time_factor: if audio_s > 0.0 { total_ms / 1e3 / audio_s } else { 0.0 },
            peak_host_memory_delta_bytes: t.rss_peak as i64 - t.rss_start as i64,
            samples: t.samples_sent,
            queue_wait_ms: (total_ms - stats.total.as_secs_f64() * 1e3).max(0.0),
            batch_size: done.batch as u32,
            peak_gpu_memory_delta_bytes: done.peak_gpu_delta_bytes,
        }
    }
}
