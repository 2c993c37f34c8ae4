//! `maestro.v1.GenerationService`: streamed generation and the model lifecycle.

use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::{
    convert,
    pb::{self, generation_service_server::GenerationService},
    requests,
    streams::{BoxStream, StreamSlots},
};
use crate::{
    error::Error,
    resources::{manager, model_id, requirements::DType},
};

/// The GenerationService handlers.
#[derive(Clone)]
#[cfg_attr(not(feature = "torch"), allow(dead_code))]
pub struct GenerationApi {
    manager: manager::Handle,
    #[cfg(feature = "torch")]
    generation: crate::inference::service::Generation,
    slots: StreamSlots,
    shutdown: CancellationToken,
}

impl GenerationApi {
    /// Handlers over the generation service (with libtorch) and the resource manager.
    #[cfg(feature = "torch")]
    pub fn new(
        generation: crate::inference::service::Generation,
        manager: manager::Handle,
        slots: StreamSlots,
        shutdown: CancellationToken,
    ) -> Self {
        Self { manager, generation, slots, shutdown }
    }

    /// Handlers of a build without libtorch: models can be listed, not run.
    #[cfg(not(feature = "torch"))]
    pub fn new(manager: manager::Handle, slots: StreamSlots, shutdown: CancellationToken) -> Self {
        Self { manager, slots, shutdown }
    }

    async fn model_list(&self) -> Result<Vec<pb::ModelInfo>, Error> {
        let settings = self.manager.settings();
        let cached = self.manager.cached().await?;
        let mut ids: Vec<(String, String)> = model_id::list(&settings.roots)
            .into_iter()
            .map(|m| (m.id, m.root.display().to_string()))
            .collect();
        for (id, _) in settings.registry.entries() {
            if !ids.iter().any(|(i, _)| i == id) {
                ids.push((id.to_string(), String::new()));
            }
        }
        ids.sort();
        let mut out = Vec::new();
        for (id, root) in ids {
            let question = manager::FitQuestion {
                model: id.clone(),
                batch: 1,
                duration_s: 10.0,
                device: crate::resources::validate::Device::Cpu,
                dtype: DType::F32,
            };
            let requirements = self.manager.requirements(&question).await.ok();
            let entry = cached.iter().find(|c| c.model == id);
            out.push(convert::model_info(&id, &root, requirements.as_ref(), entry));
        }
        Ok(out)
    }
}

#[cfg(not(feature = "torch"))]
const NO_TORCH: &str = "generation (this build has no libtorch)";

#[tonic::async_trait]
impl GenerationService for GenerationApi {
    type GenerateStream = BoxStream<pb::GenerateResponse>;

    async fn generate(
        &self,
        req: Request<pb::GenerateRequest>,
    ) -> Result<Response<Self::GenerateStream>, Status> {
        #[cfg(feature = "torch")]
        {
            let started = Instant::now();
            let req = req.into_inner();
            let format = requests::audio_format(req.format)?;
            let params = requests::generate_params(&req)?;
            let slot = self.slots.acquire()?;
            let admitted = self.generation.start(params, self.shutdown.child_token()).await?;
            let device = self.generation.pool().device();
            let generation = self.generation.clone();
            Ok(Response::new(generate_stream::stream(admitted, format, device, started, slot, generation)))
        }
        #[cfg(not(feature = "torch"))]
        {
            let _ = (req, Instant::now());
            Err(Error::Unimplemented(NO_TORCH).into())
        }
    }

    async fn list_models(
        &self,
        _: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ModelList>, Status> {
        Ok(Response::new(pb::ModelList { models: self.model_list().await? }))
    }

    async fn load_model(
        &self,
        req: Request<pb::LoadModelRequest>,
    ) -> Result<Response<pb::ModelInfo>, Status> {
        let req = req.into_inner();
        let model = requests::model(&req.model)?;
        let dtype = requests::dtype(&req.dtype)?;
        if let crate::resources::validate::Device::Cuda(i) =
            crate::resources::validate::Device::parse(&req.device, "device")?
        {
            return Err(
                Error::invalid("device", format!("cuda:{i} is not served by this server's workers")).into()
            );
        }
        #[cfg(feature = "torch")]
        {
            self.generation.ensure_loaded(&model, dtype, req.pin).await?;
            self.manager.pin(&model, req.pin).await?;
            let info = self.model_list().await?.into_iter().find(|m| m.model == model);
            info.map(Response::new).ok_or_else(|| Error::NotFound(format!("model {model} vanished")).into())
        }
        #[cfg(not(feature = "torch"))]
        {
            let _ = (model, dtype);
            Err(Error::Unimplemented(NO_TORCH).into())
        }
    }

    async fn unload_model(
        &self,
        req: Request<pb::UnloadModelRequest>,
    ) -> Result<Response<pb::UnloadModelResponse>, Status> {
        let req = req.into_inner();
        let model = requests::model(&req.model)?;
        #[cfg(feature = "torch")]
        {
            let entry = self.generation.unload(&model, req.force).await?;
            Ok(Response::new(pb::UnloadModelResponse { model, unloaded: true, bytes_freed: entry.bytes() }))
        }
        #[cfg(not(feature = "torch"))]
        {
            let _ = model;
            Err(Error::Unimplemented(NO_TORCH).into())
        }
    }
}

#[cfg(feature = "torch")]
mod generate_stream {
    //! Turns an admitted generation into the response stream: header, chunks, summary.

    use std::time::Instant;

    use tokio::sync::OwnedSemaphorePermit;
    use tonic::Status;

    use super::super::{pb, streams::BoxStream};
    use crate::{
        error::Error,
        inference::{
            service::{Admitted, Generation},
            Event,
        },
        monitor::sampler::rss_bytes,
        musicgen::GenerationStats,
    };

    struct State {
        admitted: Admitted,
        generation: Generation,
        format: pb::AudioFormat,
        device: String,
        started: Instant,
        header_sent: bool,
        samples_sent: u64,
        first_chunk_ms: Option<f64>,
        rss_start: u64,
        rss_peak: u64,
        done: bool,
        _slot: OwnedSemaphorePermit,
    }

    /// The response stream of one generation.
    pub fn stream(
        admitted: Admitted,
        format: pb::AudioFormat,
        device: String,
        started: Instant,
        slot: OwnedSemaphorePermit,
        generation: Generation,
    ) -> BoxStream<pb::GenerateResponse> {
        let rss = rss_bytes();
        let state = State {
            admitted,
            generation,
            format,
            device,
            started,
            header_sent: false,
            samples_sent: 0,
            first_chunk_ms: None,
            rss_start: rss,
            rss_peak: rss,
            done: false,
            _slot: slot,
        };
        Box::pin(futures::stream::unfold(state, |mut s| async move {
            let item = next(&mut s).await?;
            Some((item, s))
        }))
    }

    fn payload(p: pb::generate_response::Payload) -> Result<pb::GenerateResponse, Status> {
        Ok(pb::GenerateResponse { payload: Some(p) })
    }

    async fn next(s: &mut State) -> Option<Result<pb::GenerateResponse, Status>> {
        if s.done {
            return None;
        }
        if !s.header_sent {
            s.header_sent = true;
            return Some(payload(pb::generate_response::Payload::Header(header(s))));
        }
        match s.admitted.events.recv().await {
            Some(Event::Chunk(chunk)) => {
                s.rss_peak = s.rss_peak.max(rss_bytes());
                s.first_chunk_ms.get_or_insert_with(|| s.started.elapsed().as_secs_f64() * 1e3);
                let frames_total = s.admitted.request.frames as u32;
                let per_channel = (chunk.samples.len() / chunk.channels.max(1)) as u64;
                let out = pb::AudioChunk {
                    index: chunk.index as u32,
                    sample_offset: s.samples_sent,
                    data: encode(&chunk.samples, s.format),
                    frames_done: (chunk.start_frame + chunk.frames) as u32,
                    frames_total,
                    progress: (chunk.start_frame + chunk.frames) as f64 / f64::from(frames_total.max(1)),
                };
                s.samples_sent += per_channel;
                Some(payload(pb::generate_response::Payload::Chunk(out)))
            }
            Some(Event::Done(stats, batch)) => {
                s.done = true;
                if stats.stopped {
                    return Some(Err(Error::Unavailable(
                        "generation cancelled: the server is shutting down".into(),
                    )
                    .into()));
                }
                let summary = summary(s, &stats, batch);
                record(&s.admitted.model, &summary);
                Some(payload(pb::generate_response::Payload::Summary(summary)))
            }
            Some(Event::Failed(e)) => {
                s.done = true;
                if let Error::ResourceExhausted(what) = &e {
                    s.generation.out_of_memory(what.clone());
                }
                let code = super::super::observe::code_name(e.to_status().code() as i32);
                metrics::counter!("maestro_generations_total", "model" => s.admitted.model.clone(), "outcome" => code)
                    .increment(1);
                Some(Err(e.into()))
            }
            None => {
                s.done = true;
                Some(Err(Error::Internal("the inference worker stopped without an answer".into()).into()))
            }
        }
    }

    fn header(s: &State) -> pb::Header {
        let a = &s.admitted;
        let f = &a.facts;
        let r = &a.request;
        let hop = (f64::from(f.sample_rate) / f.frame_rate).round() as u64;
        pb::Header {
            request_id: a.request_id.clone(),
            model: a.model.clone(),
            sample_rate: f.sample_rate,
            channels: f.channels,
            format: s.format as i32,
            expected_samples: r.frames as u64 * hop,
            chunk_samples: (r.chunk_frames as u64 * hop) as u32,
            queue_position: a.queue_position as u32,
            device: s.device.clone(),
            params: Some(pb::GenerationParams {
                temperature: r.sampling.temperature,
                top_k: r.sampling.top_k as u32,
                top_p: r.sampling.top_p,
                guidance_scale: r.guidance_scale,
                seed: r.seed,
                greedy: r.sampling.greedy,
                duration_s: r.frames as f64 / f.frame_rate,
            }),
        }
    }

    fn summary(s: &State, stats: &GenerationStats, batch: usize) -> pb::Summary {
        let total_ms = s.started.elapsed().as_secs_f64() * 1e3;
        let audio_s = s.samples_sent as f64 / f64::from(s.admitted.facts.sample_rate.max(1));
        let decode_s = stats.decode.as_secs_f64();
        pb::Summary {
            time_to_first_chunk_ms: s.first_chunk_ms.unwrap_or(total_ms),
            total_ms,
            frames: stats.frames as u32,
            steps_per_second: if decode_s > 0.0 { stats.steps as f64 / decode_s } else { 0.0 },
            real_time_factor: if audio_s > 0.0 { total_ms / 1e3 / audio_s } else { 0.0 },
            device: s.device.clone(),
            peak_host_memory_delta_bytes: s.rss_peak as i64 - s.rss_start as i64,
            peak_gpu_memory_delta_bytes: 0,
            samples: s.samples_sent,
            queue_wait_ms: (total_ms - stats.total.as_secs_f64() * 1e3).max(0.0),
            batch_size: batch as u32,
        }
    }

    /// Feeds the generation histograms and counters.
    fn record(model: &str, s: &pb::Summary) {
        let labels = [("model", model.to_string())];
        metrics::histogram!("maestro_generation_time_to_first_chunk_seconds", &labels)
            .record(s.time_to_first_chunk_ms / 1e3);
        metrics::histogram!("maestro_generation_seconds", &labels).record(s.total_ms / 1e3);
        metrics::histogram!("maestro_generation_real_time_factor", &labels).record(s.real_time_factor);
        metrics::histogram!("maestro_generation_queue_wait_seconds", &labels).record(s.queue_wait_ms / 1e3);
        metrics::counter!("maestro_generations_total", "model" => model.to_string(), "outcome" => "OK")
            .increment(1);
    }

    /// Little-endian PCM of interleaved f32 samples.
    pub fn encode(samples: &[f32], format: pb::AudioFormat) -> Vec<u8> {
        match format {
            pb::AudioFormat::PcmF32le => samples.iter().flat_map(|x| x.to_le_bytes()).collect(),
            _ => samples
                .iter()
                .flat_map(|x| ((x.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes())
                .collect(),
        }
    }
}
