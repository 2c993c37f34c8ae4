//! The live dashboard at `/` of the HTTP port: the bundle `make dashboard` builds into
//! `dashboard/dist/` (committed, so neither `make run` nor `make test` needs node), embedded in the
//! binary, and `dashboard.json`, which tells the page where the gRPC port is. The page calls the
//! ResourceService RPCs there through gRPC-Web (see [`cors`]), and its playground `ListModels` and
//! `Generate`, whose PCM it plays through Web Audio: nothing the CSP below must allow beyond `fetch`.

use axum::{
    http::{header, HeaderValue, Method},
    response::IntoResponse,
    routing::get,
    Router,
};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::grpc::auth::OriginPolicy;

/// What the page needs to reach the gRPC port from wherever it was loaded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DashboardInfo {
    /// `http`, or `https` when the gRPC port serves TLS.
    pub scheme: &'static str,
    /// The gRPC port (the page keeps the host it was loaded from).
    pub port: u16,
    /// Seconds of history the server keeps (the charts' first fill).
    pub history_seconds: u64,
}

const INDEX: &str = include_str!("../dashboard/dist/index.html");
const APP: &str = include_str!("../dashboard/dist/app.js");
const STYLE: &str = include_str!("../dashboard/dist/style.css");
const UPLOT: &str = include_str!("../dashboard/dist/uplot.css");

/// Only what the bundle loads: itself and the gRPC port (`connect-src`), nothing from elsewhere.
const CSP: &str = "default-src 'self'; connect-src 'self' http: https:; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse + Clone {
    ([(header::CONTENT_TYPE, content_type), (header::CONTENT_SECURITY_POLICY, CSP)], body)
}

/// The dashboard's routes.
pub fn routes(info: DashboardInfo) -> Router {
    let html = asset("text/html; charset=utf-8", INDEX);
    Router::new()
        .route("/", get(html.clone()))
        .route("/index.html", get(html))
        .route("/app.js", get(asset("text/javascript; charset=utf-8", APP)))
        .route("/style.css", get(asset("text/css; charset=utf-8", STYLE)))
        .route("/uplot.css", get(asset("text/css; charset=utf-8", UPLOT)))
        .route("/dashboard.json", get(move || async move { config_json(&info) }))
}

fn config_json(info: &DashboardInfo) -> impl IntoResponse {
    let body = serde_json::to_string(info).expect("plain fields serialise");
    ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], body)
}

/// CORS on the gRPC port for the dashboard: a page from an origin `origins` allows (the requested
/// host on the HTTP port, or one listed with `--cors-origin`) may send gRPC-Web POSTs with the
/// `authorization` header and read the gRPC status. Any other origin gets no CORS headers, so
/// browsers keep its pages out.
pub fn cors(origins: OriginPolicy) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, parts| {
            origins.allows_parts(origin, parts)
        }))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            "x-grpc-web".parse().expect("header name"),
            "x-user-agent".parse().expect("header name"),
            "grpc-timeout".parse().expect("header name"),
        ])
        .expose_headers(
            ["grpc-status", "grpc-message", "grpc-status-details-bin", "retry-after"]
                .into_iter()
                .chain(crate::gateway::EXPOSED_HEADERS)
                .map(|name| name.parse::<header::HeaderName>().expect("header name"))
                .collect::<Vec<_>>(),
        )
        .max_age(std::time::Duration::from_secs(600))
}
