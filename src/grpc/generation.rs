//! `maestro.v1.GenerationService`: streamed generation and the model lifecycle.

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::{
    auth::Caller,
    convert,
    pb::{self, generation_service_server::GenerationService},
    requests,
    streams::{BoxStream, StreamSlots},
};
use crate::{
    audio_input::AudioLimits,
    error::Error,
    generation::{Client, Generation},
    resources::{device::RequestedDevice, manager},
};

/// The GenerationService handlers.
#[derive(Clone)]
pub struct GenerationApi {
    manager: manager::Handle,
    generation: Generation,
    slots: StreamSlots,
    shutdown: CancellationToken,
    audio: AudioLimits,
}

impl GenerationApi {
    /// Handlers over the generation orchestrator and the resource manager.
    pub fn new(
        generation: Generation,
        manager: manager::Handle,
        slots: StreamSlots,
        shutdown: CancellationToken,
    ) -> Self {
        Self { manager, generation, slots, shutdown, audio: AudioLimits::default() }
    }

    /// What audio requests may send (default [`AudioLimits::default`]).
    pub fn with_audio_limits(mut self, audio: AudioLimits) -> Self {
        self.audio = audio;
        self
    }
}

#[tonic::async_trait]
impl GenerationService for GenerationApi {
    type GenerateStream = BoxStream<pb::GenerateResponse>;

    async fn generate(
        &self,
        req: Request<pb::GenerateRequest>,
    ) -> Result<Response<Self::GenerateStream>, Status> {
        let client = Client { peer: req.remote_addr(), token: Caller::of(req.extensions()).name().cloned() };
        let req = req.into_inner();
        let format = requests::audio_format(req.format)?;
        let params = requests::generate_params(&req, self.audio)?;
        Ok(Response::new(self.start(params, format, client).await?))
    }

    async fn list_models(
        &self,
        _: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ModelList>, Status> {
        let models = self.manager.models().await?;
        Ok(Response::new(pb::ModelList { models: models.iter().map(convert::model_info).collect() }))
    }

    async fn load_model(
        &self,
        req: Request<pb::LoadModelRequest>,
    ) -> Result<Response<pb::ModelInfo>, Status> {
        let req = req.into_inner();
        let model = requests::model(&req.model)?;
        let dtype = requests::dtype(&req.dtype)?;
        let device = RequestedDevice::parse(&req.device, "device")?;
        self.load(&model, dtype, device, req.pin).await?;
        Ok(Response::new(convert::model_info(&self.manager.listing(&model).await?)))
    }

    async fn unload_model(
        &self,
        req: Request<pb::UnloadModelRequest>,
    ) -> Result<Response<pb::UnloadModelResponse>, Status> {
        let req = req.into_inner();
        let model = requests::model(&req.model)?;
        let bytes_freed = self.unload(&model, req.force).await?;
        Ok(Response::new(pb::UnloadModelResponse { model, unloaded: true, bytes_freed }))
    }
}

/// The calls into the generation orchestrator.
impl GenerationApi {
    async fn start(
        &self,
        params: crate::generation::GenerateParams,
        format: pb::AudioFormat,
        client: Client,
    ) -> Result<BoxStream<pb::GenerateResponse>, Error> {
        let slot = self.slots.acquire()?;
        let admitted = self.generation.start(params, self.shutdown.child_token(), client).await?;
        Ok(generate_stream::stream(admitted, format, slot))
    }

    async fn load(
        &self,
        model: &str,
        dtype: crate::resources::requirements::DType,
        device: RequestedDevice,
        pin: bool,
    ) -> Result<(), Error> {
        self.generation.load_model(model, dtype, device, pin).await.map(drop)
    }

    async fn unload(&self, model: &str, force: bool) -> Result<u64, Error> {
        Ok(self.generation.unload(model, force).await?.bytes())
    }
}

mod generate_stream {
    //! Turns an admitted generation into the response stream: header, chunks, summary. Records the
    //! generation metrics as the outcome is sent.

    use tonic::Status;

    use super::super::{
        audio::AudioWriter,
        convert, observe, pb,
        streams::{BoxStream, Slot},
    };
    use crate::generation::{Admitted, Progress, Summary};

    type Payload = pb::generate_response::Payload;

    /// The response stream of one generation; it holds its stream slot until it ends.
    pub fn stream(
        admitted: Admitted,
        format: pb::AudioFormat,
        slot: Slot,
    ) -> BoxStream<pb::GenerateResponse> {
        let header = convert::generate_header(&admitted, format);
        let writer = AudioWriter::new(format, &header);
        let head = futures::stream::once(std::future::ready(Ok(response(Payload::Header(header)))));
        let state = Streaming { admitted, _slot: slot, writer, summary: None };
        let rest = futures::stream::unfold(Some(state), |state| async move {
            let mut s = state?;
            if let Some(summary) = s.summary.take() {
                return Some((Ok(response(Payload::Summary(summary))), None));
            }
            let writer = match s.writer.as_mut() {
                Ok(writer) => writer,
                Err(status) => return Some((Err(status.clone()), None)),
            };
            let item = match s.admitted.next().await? {
                Progress::Chunk(chunk) => writer.chunk(&chunk).map(|c| response(Payload::Chunk(c))),
                Progress::Finished(summary) => {
                    record(&s.admitted.model, &summary);
                    let summary = convert::generate_summary(&summary, s.admitted.device);
                    match writer.finish() {
                        // The file's last bytes first, then the summary.
                        Ok(Some(last)) => {
                            s.summary = Some(summary);
                            Ok(response(Payload::Chunk(last)))
                        }
                        Ok(None) => Ok(response(Payload::Summary(summary))),
                        Err(status) => Err(status),
                    }
                }
                Progress::Failed(e) => {
                    let status = Status::from(e);
                    count(&s.admitted.model, observe::code_name(status.code() as i32));
                    Err(status)
                }
            };
            let ended = item.is_err();
            Some((item, (!ended).then_some(s)))
        });
        Box::pin(futures::StreamExt::chain(head, rest))
    }

    /// One stream's state: the generation, its stream slot, its audio writer, and the summary
    /// that waits for the file's last chunk.
    struct Streaming {
        admitted: Admitted,
        _slot: Slot,
        writer: Result<AudioWriter, Status>,
        summary: Option<pb::Summary>,
    }

    fn response(payload: Payload) -> pb::GenerateResponse {
        pb::GenerateResponse { payload: Some(payload) }
    }

    /// Feeds the generation histograms and counters.
    fn record(model: &str, s: &Summary) {
        let labels = [("model", model.to_string())];
        metrics::histogram!("maestro_generation_time_to_first_chunk_seconds", &labels)
            .record(s.time_to_first_chunk_ms / 1e3);
        metrics::histogram!("maestro_generation_seconds", &labels).record(s.total_ms / 1e3);
        metrics::histogram!("maestro_generation_real_time_factor", &labels).record(s.real_time_factor);
        metrics::histogram!("maestro_generation_queue_wait_seconds", &labels).record(s.queue_wait_ms / 1e3);
        count(model, "OK");
    }

    fn count(model: &str, outcome: &'static str) {
        metrics::counter!("maestro_generations_total", "model" => model.to_string(), "outcome" => outcome)
            .increment(1);
    }
}
