//! `GenerationService` with a message limit per method: `Generate` may carry audio (an audio prompt
//! and a melody, up to `--max-message-bytes`), every other method gets `--max-unary-message-bytes`.
//! tonic sets the limit per service, so two copies of the generated server share one
//! implementation and the path picks which decodes the request.

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use tonic::{body::Body, server::NamedService};
use tower::Service;

use super::{pb::generation_service_server::GenerationServiceServer, GenerationApi};

/// The path of the one method that carries audio.
const GENERATE: &str = "/maestro.v1.GenerationService/Generate";

/// `GenerationService`, `Generate` decoding up to one limit and every other method up to another.
#[derive(Clone)]
pub struct GenerationRoutes {
    generate: GenerationServiceServer<GenerationApi>,
    unary: GenerationServiceServer<GenerationApi>,
}

impl GenerationRoutes {
    /// Over `api`: `Generate` requests up to `max_generate_bytes`, the others up to
    /// `max_unary_bytes`.
    pub fn new(api: GenerationApi, max_generate_bytes: usize, max_unary_bytes: usize) -> Self {
        Self {
            generate: GenerationServiceServer::new(api.clone()).max_decoding_message_size(max_generate_bytes),
            unary: GenerationServiceServer::new(api).max_decoding_message_size(max_unary_bytes),
        }
    }
}

impl NamedService for GenerationRoutes {
    const NAME: &'static str = super::GENERATION_SERVICE;
}

impl<B> Service<http::Request<B>> for GenerationRoutes
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = <GenerationServiceServer<GenerationApi> as Service<http::Request<B>>>::Future;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The generated servers are always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() == GENERATE {
            self.generate.call(req)
        } else {
            self.unary.call(req)
        }
    }
}
