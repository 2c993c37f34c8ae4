//! `maestro.v1.GenerationService`: streamed generation and the model lifecycle.

use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Response, Status};

use super::pb::{self, generation_service_server::GenerationService};
use crate::error::Error;

const GENERATION: &str = "music generation (the inference worker pool)";

/// The GenerationService handlers.
#[derive(Clone, Default)]
pub struct GenerationApi {}

#[tonic::async_trait]
impl GenerationService for GenerationApi {
    type GenerateStream = Pin<Box<dyn Stream<Item = Result<pb::GenerateResponse, Status>> + Send>>;
    async fn generate(
        &self,
        _: Request<pb::GenerateRequest>,
    ) -> Result<Response<Self::GenerateStream>, Status> {
        Err(Error::Unimplemented(GENERATION).into())
    }
    async fn list_models(
        &self,
        _: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ModelList>, Status> {
        Err(Error::Unimplemented(GENERATION).into())
    }
    async fn load_model(&self, _: Request<pb::LoadModelRequest>) -> Result<Response<pb::ModelInfo>, Status> {
        Err(Error::Unimplemented(GENERATION).into())
    }
    async fn unload_model(
        &self,
        _: Request<pb::UnloadModelRequest>,
    ) -> Result<Response<pb::UnloadModelResponse>, Status> {
        Err(Error::Unimplemented(GENERATION).into())
    }
}
