//! Deadlines per kind of call: a unary call has `--request-timeout-s`, `LoadModel` has
//! `--load-timeout-s`, and the streams have none here (`Generate`'s admission may wait for a load and
//! its stream has the stall timeout; a watch lives as long as its client wants).
//!
//! tonic's server-wide `timeout` would cut every call alike, streams' admission included, so the
//! budget is chosen per method in this layer instead. Over HTTP the same layer applies (the gateway
//! calls through it), and DEADLINE_EXCEEDED becomes 504. A call cut here is dropped: its future
//! stops at its next await, and its guards (leases, model uses) are given back as they drop. A load
//! runs in a task of its own, so a `LoadModel` cut here leaves the load going on.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use http::{Request, Response};
use tonic::{body::Body, Status};
use tower::{Layer, Service};

/// The deadlines: see the module header.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    request: Duration,
    load: Duration,
}

impl DeadlineLayer {
    /// `request` for unary calls, `load` for `LoadModel`.
    pub fn new(request: Duration, load: Duration) -> Self {
        Self { request, load }
    }

    /// The deadline of a call to `path`, and the flag that sets it; `None` for the streams.
    fn budget(&self, path: &str) -> Option<(Duration, &'static str)> {
        let method = path.rsplit('/').next().unwrap_or_default();
        match method {
            "Generate" | "WatchSnapshots" | "WatchAlerts" | "WatchReport" | "Watch" => None,
            "ServerReflectionInfo" => None,
            "LoadModel" => Some((self.load, "--load-timeout-s")),
            _ => Some((self.request, "--request-timeout-s")),
        }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Deadline { inner, budgets: *self }
    }
}

/// The service made by [`DeadlineLayer`].
#[derive(Clone, Debug)]
pub struct Deadline<S> {
    inner: S,
    budgets: DeadlineLayer,
}

impl<S> Service<Request<Body>> for Deadline<S>
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
        let budget = self.budgets.budget(req.uri().path());
        let method = req.uri().path().rsplit('/').next().unwrap_or_default().to_owned();
        let call = self.inner.call(req);
        let Some((limit, flag)) = budget else { return Box::pin(call) };
        Box::pin(async move {
            match tokio::time::timeout(limit, call).await {
                Ok(answer) => answer,
                Err(_) => {
                    let seconds = limit.as_secs_f64();
                    tracing::warn!(method, seconds, "call cut at its deadline");
                    Ok(Status::deadline_exceeded(exceeded(&method, seconds, flag)).into_http())
                }
            }
        })
    }
}

/// The message of a call cut at its deadline: the method, the limit and the flag.
fn exceeded(method: &str, seconds: f64, flag: &str) -> String {
    let tail = if method == "LoadModel" {
        "; the load goes on, and ListModels shows the model once it is loaded"
    } else {
        ""
    };
    format!("{method} took longer than {seconds} s (the server's {flag}){tail}")
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    /// A service whose every call takes `delay` and then answers OK.
    fn slow(
        delay: Duration,
    ) -> impl Service<
        Request<Body>,
        Response = Response<Body>,
        Error = Infallible,
        Future = impl std::future::Future<Output = Result<Response<Body>, Infallible>> + Send,
    > + Clone {
        tower::service_fn(move |_req: Request<Body>| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, Infallible>(Status::ok("").into_http())
        })
    }

    async fn call(path: &str, delay: Duration) -> Status {
        let layer = DeadlineLayer::new(Duration::from_secs(30), Duration::from_secs(600));
        let mut service = layer.layer(slow(delay));
        let req = Request::builder().uri(path).body(Body::empty()).unwrap();
        let response = service.call(req).await.unwrap();
        Status::from_header_map(response.headers()).expect("a gRPC status")
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_unary_call_is_cut_naming_the_flag() {
        let status = call("/maestro.v1.ResourceService/ValidateModel", Duration::from_secs(31)).await;
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert_eq!(
            status.message(),
            "ValidateModel took longer than 30 s (the server's --request-timeout-s)"
        );
        let quick = call("/maestro.v1.ResourceService/ValidateModel", Duration::from_secs(29)).await;
        assert_eq!(quick.code(), tonic::Code::Ok);
    }

    #[tokio::test(start_paused = true)]
    async fn a_load_has_its_own_deadline_and_streams_none() {
        let load = call("/maestro.v1.GenerationService/LoadModel", Duration::from_secs(300)).await;
        assert_eq!(load.code(), tonic::Code::Ok, "a 5-minute load is within --load-timeout-s");
        let cut = call("/maestro.v1.GenerationService/LoadModel", Duration::from_secs(601)).await;
        assert_eq!(cut.code(), tonic::Code::DeadlineExceeded);
        assert!(cut.message().contains("--load-timeout-s") && cut.message().contains("the load goes on"));
        for stream in ["Generate", "WatchSnapshots", "WatchAlerts", "WatchReport"] {
            let path = format!("/maestro.v1.X/{stream}");
            assert_eq!(call(&path, Duration::from_secs(3600)).await.code(), tonic::Code::Ok, "{stream}");
        }
    }
}
