//! A tower layer that gives every RPC a tracing span (method, peer, status) and counts calls by
//! method and gRPC code for Prometheus.
//!
//! The status of a unary error is in the response headers; a streamed call's status is in its
//! trailers, so the body is wrapped and the status recorded when the trailers pass through (or when
//! the body is dropped early, which means the client went away).

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use http::{HeaderMap, Request, Response};
use http_body::{Body as HttpBody, Frame};
use tonic::body::Body;
use tower::{Layer, Service};
use tracing::{field::Empty, Instrument, Span};

/// Wraps a service with [`Observe`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ObserveLayer;

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Observe { inner }
    }
}

/// The service made by [`ObserveLayer`].
#[derive(Clone, Debug)]
pub struct Observe<S> {
    inner: S,
}

impl<S> Service<Request<Body>> for Observe<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let method = method_label(req.uri().path());
        let peer = super::transport::peer_addr(req.extensions()).map(|a| a.to_string()).unwrap_or_default();
        let span = tracing::info_span!("rpc", method = %method, peer = %peer, status = Empty, ms = Empty);
        let fut = self.inner.call(req);
        let start = Instant::now();
        Box::pin(
            async move {
                let response = fut.await?;
                let mut tracker = Tracker { method, span: Span::current(), start, done: false };
                let (parts, body) = response.into_parts();
                if let Some(code) = grpc_status(&parts.headers) {
                    tracker.finish(code);
                }
                Ok(Response::from_parts(parts, Body::new(ObservedBody { inner: body, tracker })))
            }
            .instrument(span),
        )
    }
}

/// Records the outcome of one call exactly once.
struct Tracker {
    method: String,
    span: Span,
    start: Instant,
    done: bool,
}

impl Tracker {
    fn finish(&mut self, code: i32) {
        if self.done {
            return;
        }
        self.done = true;
        let name = code_name(code);
        let ms = self.start.elapsed().as_secs_f64() * 1e3;
        self.span.record("status", name);
        self.span.record("ms", ms);
        let _enter = self.span.enter();
        if code == 0 {
            tracing::debug!("rpc done");
        } else {
            tracing::info!("rpc failed");
        }
        metrics::counter!("maestro_rpc_requests_total", "method" => self.method.clone(), "code" => name)
            .increment(1);
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        // The body ended without trailers: the client cancelled or the connection closed.
        self.finish(tonic::Code::Cancelled as i32);
    }
}

pin_project_lite::pin_project! {
    struct ObservedBody {
        #[pin]
        inner: Body,
        tracker: Tracker,
    }
}

impl HttpBody for ObservedBody {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                this.tracker.finish(code);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// The canonical upper-case name of a gRPC code (`OK`, `INVALID_ARGUMENT`, ...).
pub fn code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code).ok().and_then(|i| NAMES.get(i)).copied().unwrap_or("UNKNOWN")
}

/// What a call's `method` label is: the RPC's path when the port serves it, `unknown` otherwise, so
/// that made-up paths add one series at most instead of one each, kept forever.
pub fn method_label(path: &str) -> String {
    if super::served_methods().contains(path) {
        path.to_string()
    } else {
        "unknown".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_rpcs_keep_their_path_and_anything_else_is_unknown() {
        for served in [
            "/maestro.v1.GenerationService/Generate",
            "/maestro.v1.ResourceService/WatchSnapshots",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert_eq!(method_label(served), served);
        }
        for made_up in ["/", "/maestro.v1.GenerationService/Nope", "/x/y", "/maestro.v1.GenerationService"] {
            assert_eq!(method_label(made_up), "unknown");
        }
    }
}
