//! A batch of generations on one worker. Each request streams its own chunks and hears its own end
//! as it comes (a short request is done before its batch is). When libtorch runs out of memory the
//! requests that already streamed audio fail alone with RESOURCE_EXHAUSTED; those that have not
//! streamed yet lose nothing by starting over, so a batch of more than one retries them once, in
//! groups of half the batch's size. Any other failure fails every request not yet done.

use std::{
    ops::ControlFlow,
    panic::{catch_unwind, AssertUnwindSafe},
    time::Instant,
};

use super::{out_of_memory, panic_message, Event, Faults, Finished, GenerateJob, InjectedFault, Worker};
use crate::{
    engine::EngineError,
    musicgen::{AudioChunkOut, AudioEncoder, GenerationRequest, GenerationStats, MusicgenError, Observer},
};

/// How an attempt failed: the error, and the requests it leaves without an answer and without audio.
struct Failure {
    error: EngineError,
    unstreamed: Vec<usize>,
}

impl Failure {
    fn fail_unstreamed(self, batch: &[GenerateJob]) {
        for &i in &self.unstreamed {
            let _ = batch[i].events.send(Event::Failed(self.error.clone()));
        }
    }
}

impl Worker {
    /// Runs a batch; on out-of-memory retries the requests that streamed nothing once, at half size.
    pub(super) fn generate_batch(&self, batch: Vec<GenerateJob>) {
        for job in &batch {
            if let Some(admission) = job.admission.lock().expect("admission lock").as_mut() {
                admission.start();
            }
        }
        let all: Vec<usize> = (0..batch.len()).collect();
        let Err(failure) = self.attempt(&batch, &all) else { return };
        let oom = matches!(failure.error, EngineError::OutOfMemory(_));
        if !oom || batch.len() < 2 || failure.unstreamed.is_empty() {
            return failure.fail_unstreamed(&batch);
        }
        let half = batch.len().div_ceil(2);
        tracing::warn!(
            model = batch[0].model,
            batch = batch.len(),
            retried = failure.unstreamed.len(),
            half,
            error = %failure.error,
            "out of memory before these requests streamed audio; retrying them at half the batch size"
        );
        for rows in failure.unstreamed.chunks(half) {
            if let Err(again) = self.attempt(&batch, rows) {
                again.fail_unstreamed(&batch);
            }
        }
    }

    /// Generates `rows` of `batch` as one batch. Every request it finishes hears its end; on failure
    /// the requests that streamed audio hear the error and the others are returned to the caller.
    fn attempt(&self, batch: &[GenerateJob], rows: &[usize]) -> Result<(), Failure> {
        let model = &batch[0].model;
        for &i in rows {
            let _ = batch[i].events.send(Event::Started);
        }
        let mut observer = Rows::new(batch, rows, self.device, self.faults);
        observer.progress = Some(&self.progress);
        observer.peak = GpuPeak::start(self.device);
        let outcome = catch_unwind(AssertUnwindSafe(|| self.generate(model, &mut observer)));
        let error = match outcome {
            Ok(Ok(stats)) => {
                observer.finish_rest(stats);
                return Ok(());
            }
            Ok(Err(e)) => e,
            Err(p) => {
                let message = panic_message(p);
                out_of_memory(self.pinned.device, format!("generating with {model}"), &message)
                    .unwrap_or_else(|| {
                        tracing::error!(model, panic = %message, "generation panicked; worker continues");
                        EngineError::Failed(format!("generation with {model} failed inside the worker"))
                    })
            }
        };
        let mut unstreamed = Vec::new();
        for (local, &i) in rows.iter().enumerate() {
            match (observer.finished[local], observer.streamed[local]) {
                (true, _) => {}
                (false, true) => {
                    let _ = batch[i].events.send(Event::Failed(error.clone()));
                }
                (false, false) => unstreamed.push(i),
            }
        }
        Err(Failure { error, unstreamed })
    }

    fn generate(&self, model: &str, observer: &mut Rows<'_>) -> Result<Vec<GenerationStats>, EngineError> {
        let m = self.models.get(model).ok_or_else(|| EngineError::NotHeld { model: model.into() })?;
        if observer.jobs.iter().any(|j| j.fault == Some(InjectedFault::Panic)) {
            panic!("injected panic inside the worker");
        }
        let started = Instant::now();
        let mut requests: Vec<GenerationRequest> = observer.jobs.iter().map(|j| j.request.clone()).collect();
        self.encode_prompts(model, m, observer.jobs.as_slice(), &mut requests)?;
        let stats = m.generate_observed(&requests, observer).map_err(|e| self.generation_error(model, e))?;
        tracing::debug!(
            model,
            batch = requests.len(),
            ms = started.elapsed().as_millis() as u64,
            "generation finished"
        );
        Ok(stats)
    }

    /// The audio prompts of `jobs` as their requests' prompt codes, through the model's EnCodec
    /// encoder, loaded for this and dropped after: a model without audio input keeps no encoder.
    fn encode_prompts(
        &self,
        model: &str,
        m: &crate::musicgen::MusicGen,
        jobs: &[&GenerateJob],
        requests: &mut [GenerationRequest],
    ) -> Result<(), EngineError> {
        if jobs.iter().all(|j| j.audio_prompt.is_none()) {
            return Ok(());
        }
        let dir = self.dirs.get(model).ok_or_else(|| EngineError::NotHeld { model: model.into() })?;
        let encoder = AudioEncoder::load(dir, self.device).map_err(|e| self.generation_error(model, e))?;
        let channels = m.channels() as i64;
        for (job, request) in jobs.iter().zip(requests) {
            let Some(samples) = &job.audio_prompt else { continue };
            let audio = tch::Tensor::from_slice(samples).view([-1, channels]).transpose(0, 1);
            request.prompt_codes = encoder.encode(&audio).map_err(|e| self.generation_error(model, e))?;
        }
        Ok(())
    }

    fn generation_error(&self, model: &str, e: MusicgenError) -> EngineError {
        let message = e.to_string();
        match e {
            MusicgenError::InvalidRequest { field, .. } => EngineError::InvalidRequest { field, message },
            _ => out_of_memory(self.pinned.device, format!("generating with {model}"), &message)
                .unwrap_or_else(|| EngineError::Failed(format!("generation with {model} failed: {message}"))),
        }
    }
}

/// The requests of one attempt as the generation loop sees them, and what each has received.
struct Rows<'a> {
    jobs: Vec<&'a GenerateJob>,
    streamed: Vec<bool>,
    finished: Vec<bool>,
    device: tch::Device,
    faults: Faults,
    peak: Option<GpuPeak>,
    /// Told of each decoding step (liveness watches it).
    progress: Option<&'a super::WorkerLoad>,
}

/// libtorch's CUDA allocator peak over one attempt: reset as it starts, read as each request ends.
struct GpuPeak {
    ordinal: usize,
    allocated_at_start: u64,
}

impl GpuPeak {
    /// `None` off CUDA, and where the allocator declines (no shim, CUDA not used there yet).
    fn start(device: tch::Device) -> Option<Self> {
        let tch::Device::Cuda(ordinal) = device else { return None };
        crate::cuda_alloc::reset_peak(ordinal).ok()?;
        let allocated_at_start = crate::cuda_alloc::stats(ordinal).ok()?.allocated_bytes;
        Some(Self { ordinal, allocated_at_start })
    }

    fn delta(&self) -> Option<i64> {
        let peak = crate::cuda_alloc::stats(self.ordinal).ok()?.peak_allocated_bytes;
        Some(peak as i64 - self.allocated_at_start as i64)
    }
}

impl<'a> Rows<'a> {
    fn new(batch: &'a [GenerateJob], rows: &[usize], device: tch::Device, faults: Faults) -> Self {
        let n = rows.len();
        Self {
            jobs: rows.iter().map(|&i| &batch[i]).collect(),
            streamed: vec![false; n],
            finished: vec![false; n],
            device,
            faults,
            peak: None,
            progress: None,
        }
    }

    /// Ends the requests the loop returned without having reported their end.
    fn finish_rest(&mut self, stats: Vec<GenerationStats>) {
        for (i, stats) in stats.iter().enumerate() {
            if !self.finished[i] {
                self.finished(i, stats);
            }
        }
    }

    /// Holds the worker while a request tagged [`InjectedFault::Stall`] is live (at most a minute).
    fn stall(&self) {
        let stalled: Vec<&GenerateJob> =
            self.jobs.iter().copied().filter(|j| j.fault == Some(InjectedFault::Stall)).collect();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let live = |j: &&GenerateJob| !j.cancel.is_cancelled() && !j.events.is_closed();
        while stalled.iter().any(live) && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Whether the injected out-of-memory strikes at `step`.
    fn oom_fires(&self, step: usize) -> bool {
        let f = &self.faults;
        step == f.oom_step
            && self.jobs.len() >= f.oom_min_batch
            && self
                .jobs
                .iter()
                .zip(&self.finished)
                .any(|(j, done)| !done && j.fault == Some(InjectedFault::OutOfMemory))
    }
}

impl Observer for Rows<'_> {
    fn stop(&mut self, request: usize) -> bool {
        let job = self.jobs[request];
        job.cancel.is_cancelled() || job.events.is_closed()
    }

    fn chunk(&mut self, chunk: AudioChunkOut) -> ControlFlow<()> {
        let job = self.jobs[chunk.request];
        self.streamed[chunk.request] = true;
        if job.cancel.is_cancelled() || job.events.send(Event::Chunk(chunk)).is_err() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn finished(&mut self, request: usize, stats: &GenerationStats) {
        self.finished[request] = true;
        let done = Finished {
            stats: stats.clone(),
            batch: self.jobs.len(),
            peak_gpu_delta_bytes: self.peak.as_ref().and_then(GpuPeak::delta),
        };
        let job = self.jobs[request];
        let _ = job.events.send(Event::Done(done));
        // Its queue slot goes back now, while the rest of the batch runs on.
        drop(job.admission.lock().expect("admission lock").take());
    }

    fn step(&mut self, step: usize) {
        if let Some(progress) = self.progress {
            progress.progressed();
        }
        if step == 0 {
            self.stall();
        }
        if self.oom_fires(step) {
            // The infallible op, as the decoder's own ops are: libtorch's failure arrives as the panic
            // a real out-of-memory inside a forward pass raises.
            let _ = tch::Tensor::empty([super::IMPOSSIBLE_BYTES], (tch::Kind::Uint8, self.device));
        }
    }
}
