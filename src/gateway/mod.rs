//! The HTTP/JSON API under `/api/v1/` on the main port, beside gRPC and gRPC-Web: the mapping the
//! protos' `google.api.http` annotations declare (so Envoy's gRPC-JSON transcoder and grpc-gateway
//! serve the same API), served by Maestro itself.
//!
//! It is a transcoder, not a second implementation: a layer in front of the gRPC stack turns each
//! HTTP call into the gRPC call of its route ([`call`]) and sends it through the layers every gRPC
//! call passes — metrics by RPC, roles and credentials, CORS, limits — to the same service
//! implementations, then writes the answer back as JSON ([`json`]), as a stream ([`stream`]), or as an
//! error with the HTTP status grpc-gateway gives its code ([`errors`]). Requests to other paths pass
//! through untouched.

mod audio;
mod call;
pub mod errors;
pub mod json;
mod multipart;
pub mod openapi;
pub mod routes;
pub mod stream;

use std::{
    pin::Pin,
    sync::{Arc, LazyLock},
    task::{Context, Poll},
};

use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage};
use tonic::{body::Body, Code};
use tower::{Layer, Service, ServiceExt};

use self::{call::Messages, routes::Resolved, routes::Routes};

/// The response headers of the HTTP API a browser page may read.
pub const EXPOSED_HEADERS: [&str; 12] = audio::EXPOSED;

/// Where the HTTP API lives.
pub const PREFIX: &str = "/api/v1/";

/// The descriptors of the Maestro services, with their annotations and comments.
pub fn pool() -> DescriptorPool {
    static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
        DescriptorPool::decode(maestro_proto::FILE_DESCRIPTOR_SET)
            .expect("the embedded descriptor set is valid")
    });
    POOL.clone()
}

/// Bodies above this many bytes are decoded on the blocking pool.
const BLOCKING_BODY_BYTES: usize = 64 * 1024;

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// The OpenAPI document of `routes`, as served (pretty-printed, with a final newline).
pub fn openapi_json(routes: &Routes) -> String {
    let document = openapi::document(&pool(), routes);
    serde_json::to_string_pretty(&document).expect("a JSON value serializes") + "\n"
}

/// The layer that serves the HTTP API in front of the gRPC stack.
#[derive(Clone, Debug)]
pub struct GatewayLayer {
    routes: Arc<Routes>,
    max_body: usize,
    openapi: Arc<str>,
}

impl GatewayLayer {
    /// The annotated routes; JSON bodies up to `max_message_bytes` × 4/3 (base64 audio grows by a
    /// third) plus 64 KiB of JSON around it.
    pub fn new(max_message_bytes: usize) -> Self {
        let max_body = max_message_bytes.saturating_mul(4) / 3 + 64 * 1024;
        let routes = Routes::from_pool(&pool());
        let openapi = openapi_json(&routes).into();
        Self { routes: Arc::new(routes), max_body, openapi }
    }
}

impl<S> Layer<S> for GatewayLayer {
    type Service = Gateway<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Gateway { inner, layer: self.clone() }
    }
}

/// The service made by [`GatewayLayer`].
#[derive(Clone, Debug)]
pub struct Gateway<S> {
    inner: S,
    layer: GatewayLayer,
}

type BoxFuture<T, E> = Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send>>;

impl<S> Service<Request<Body>> for Gateway<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if !req.uri().path().starts_with(PREFIX) {
            return Box::pin(self.inner.call(req));
        }
        // The clone serves this call; the instance polled ready stays for the next one.
        let inner = self.inner.clone();
        let layer = self.layer.clone();
        Box::pin(async move { serve(&layer, inner, req).await })
    }
}

/// A refusal before any RPC ran, as JSON.
fn refuse(code: Code, message: &str) -> Response<Body> {
    errors::response::<String>(code, message).map(Body::new)
}

async fn serve<S>(layer: &GatewayLayer, inner: S, req: Request<Body>) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<Body>> + Send,
    S::Future: Send,
{
    let (parts, body) = req.into_parts();
    if parts.uri.path() == OPENAPI_PATH && parts.method == http::Method::GET {
        let mut response = Response::new(Body::new(layer.openapi.to_string()));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return Ok(response);
    }
    let (route, vars) = match layer.routes.resolve(&parts.method, parts.uri.path()) {
        Resolved::Route(route, vars) => (route, vars),
        Resolved::MethodNotAllowed(allowed) => {
            let names: Vec<&str> = allowed.iter().map(http::Method::as_str).collect();
            let mut response = refuse(
                Code::Unimplemented,
                &format!(
                    "{} is served for {} only, not {}",
                    parts.uri.path(),
                    names.join(", "),
                    parts.method
                ),
            );
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_str(&names.join(", ")).expect("method names"));
            return Ok(response);
        }
        Resolved::NotFound => {
            return Ok(refuse(Code::NotFound, &format!("no route {} {}", parts.method, parts.uri.path())));
        }
    };
    let bytes = match http_body_util::Limited::new(body, layer.max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let mut response = refuse(
                Code::ResourceExhausted,
                &format!(
                    "the request body is over {} bytes (--max-message-bytes × 4/3 for base64, plus 64 KiB)",
                    layer.max_body
                ),
            );
            *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            return Ok(response);
        }
    };
    let generate = route.rpc.full_name() == GENERATE;
    let (mut message, format_query) = match message_of(route, &parts, bytes, vars, generate).await {
        Ok(made) => made,
        Err(refusal) => return Ok(refusal),
    };
    let mut answer = None;
    if generate {
        match audio_answer(&mut message, format_query, &parts.headers) {
            Ok(chosen) => answer = Some(chosen),
            Err(e) => return Ok(refuse(Code::InvalidArgument, &e)),
        }
    }
    let grpc = call::grpc_request(&parts, &route.grpc_path(), prost::Message::encode_to_vec(&message));
    let (head, body) = inner.oneshot(grpc).await?.into_parts();
    let messages = Messages::new(&head.headers, body);
    if let Some(status) = messages.refused() {
        return Ok(refuse(status.code(), status.message()));
    }
    let output = route.rpc.output();
    if let Some(answer) = answer.filter(|a| *a != audio::Answer::Messages) {
        return Ok(audio::respond(messages, answer, &parts).await);
    }
    if route.streams() {
        let accept = parts.headers.get(header::ACCEPT).and_then(|a| a.to_str().ok());
        let format = stream::Format::from_accept(accept);
        let mut response = Response::new(stream::body(messages, output, format));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // nginx and its kin buffer responses by default; a live stream must not be.
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        return Ok(response);
    }
    Ok(unary(messages, output).await)
}

/// The request message of a call, from its path variables, its query and its body (JSON, or a
/// multipart form where the route takes a body); with a generate call's `format` query value, set
/// aside (it names a file format, not the enum).
async fn message_of(
    route: &routes::Route,
    parts: &http::request::Parts,
    bytes: bytes::Bytes,
    mut fields: Vec<(String, String)>,
    generate: bool,
) -> Result<(DynamicMessage, Option<(String, String)>), Response<Body>> {
    let query = form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes());
    fields.extend(query.map(|(k, v)| (k.into_owned(), v.into_owned())));
    let format_query = generate.then(|| take_field(&mut fields, "format")).flatten();
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|c| c.to_str().ok());
    let body = match (route.body.as_str(), bytes.is_empty(), multipart::boundary(content_type)) {
        ("*", _, Some(boundary)) => {
            let form =
                multipart::read(bytes, boundary).await.map_err(|e| refuse(Code::InvalidArgument, &e.0))?;
            fields.extend(form.fields);
            Some(bytes::Bytes::from(form.body))
        }
        ("*", _, None) => Some(bytes),
        (_, true, _) => None,
        (_, false, _) => {
            let message =
                format!("{} {} takes no body: its fields go in the query", route.method, route.template);
            return Err(refuse(Code::InvalidArgument, &message));
        }
    };
    let input = route.rpc.input();
    // A body that carries audio (base64, up to the limit) takes milliseconds to parse: not on the
    // async runtime's threads. Small ones stay where they are.
    let decoded = match body {
        Some(bytes) if bytes.len() > BLOCKING_BODY_BYTES => {
            tokio::task::spawn_blocking(move || json::request(&input, Some(&bytes), &fields))
                .await
                .unwrap_or_else(|e| Err(json::JsonError(format!("decoding the body stopped: {e}"))))
        }
        body => json::request(&input, body.as_deref(), &fields),
    };
    let message = decoded.map_err(|e| refuse(Code::InvalidArgument, &e.0))?;
    Ok((message, format_query))
}

/// The RPC whose HTTP answer is audio.
pub(crate) const GENERATE: &str = "maestro.v1.GenerationService.Generate";

fn take_field(fields: &mut Vec<(String, String)>, name: &str) -> Option<(String, String)> {
    let i = fields.iter().position(|(k, _)| k == name)?;
    Some(fields.remove(i))
}

/// Decides a generate call's answer and sets the format the gRPC call produces it in.
fn audio_answer(
    message: &mut DynamicMessage,
    format_query: Option<(String, String)>,
    headers: &http::HeaderMap,
) -> Result<audio::Answer, String> {
    let field = message.descriptor().get_field_by_name("format").expect("GenerateRequest has a format");
    let body_format = message.get_field(&field).as_enum_number().unwrap_or(0);
    let mut query: Vec<(String, String)> = format_query.into_iter().collect();
    let answer = audio::choose(&mut query, headers, body_format)?;
    if let Some(format) = audio::grpc_format(answer) {
        message.set_field(&field, prost_reflect::Value::EnumNumber(format as i32));
    }
    Ok(answer)
}

/// A unary call's one message as JSON, or its error.
async fn unary(mut messages: Messages, output: prost_reflect::MessageDescriptor) -> Response<Body> {
    let first = match messages.next().await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return refuse(Code::Internal, "the call ended without an answer"),
        Err(status) => return refuse(status.code(), status.message()),
    };
    if let Err(status) = messages.next().await {
        return refuse(status.code(), status.message());
    }
    let json = match DynamicMessage::decode(output, first) {
        Ok(message) => json::to_json(&message),
        Err(e) => return refuse(Code::Internal, &format!("an undecodable answer: {e}")),
    };
    let mut response = Response::new(Body::new(json.to_string()));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
