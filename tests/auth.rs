//! Roles through the real server: every RPC × {no token, read, generate, another generate, admin},
//! lease ownership, browser origins with and without tokens, the failure count on `/metrics`, and
//! (with libtorch) the server's own leases and each name's share of the queue.

mod common;

use common::{scrape, start_server, test_config, TestServer};
use maestro_proto as pb;
use tonic::{client::Grpc, transport::Channel, Code, Request};

const TOKENS: &str = "# who may do what\n\
                      r-token, reader, read\n\
                      g-token, ci, generate\n\
                      h-token, batch, generate\n\
                      a-token, ops, admin\n";

/// What each RPC needs, as the roles table of docs/security.md says (not read from the server's own table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Need {
    Open,
    Read,
    Generate,
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Unary,
    ServerStream,
    Bidi,
}

const RPCS: [(&str, Need, Shape); 23] = [
    ("/maestro.v1.ResourceService/GetStatus", Need::Read, Shape::Unary),
    ("/maestro.v1.ResourceService/GetReport", Need::Read, Shape::Unary),
    ("/maestro.v1.ResourceService/GetHistory", Need::Read, Shape::Unary),
    ("/maestro.v1.ResourceService/ValidateModel", Need::Read, Shape::Unary),
    ("/maestro.v1.ResourceService/Allocate", Need::Generate, Shape::Unary),
    ("/maestro.v1.ResourceService/Release", Need::Generate, Shape::Unary),
    ("/maestro.v1.ResourceService/Cleanup", Need::Admin, Shape::Unary),
    ("/maestro.v1.ResourceService/GetOptimizationSuggestions", Need::Read, Shape::Unary),
    ("/maestro.v1.ResourceService/GetOptimalBatchSize", Need::Read, Shape::Unary),
    ("/maestro.v1.ResourceService/ListAlerts", Need::Read, Shape::Unary),
    ("/maestro.v1.ResourceService/WatchSnapshots", Need::Read, Shape::ServerStream),
    ("/maestro.v1.ResourceService/WatchAlerts", Need::Read, Shape::ServerStream),
    ("/maestro.v1.ResourceService/WatchReport", Need::Read, Shape::ServerStream),
    ("/maestro.v1.GenerationService/Generate", Need::Generate, Shape::ServerStream),
    ("/maestro.v1.GenerationService/ListModels", Need::Read, Shape::Unary),
    ("/maestro.v1.GenerationService/LoadModel", Need::Admin, Shape::Unary),
    ("/maestro.v1.GenerationService/UnloadModel", Need::Admin, Shape::Unary),
    ("/grpc.health.v1.Health/Check", Need::Open, Shape::Unary),
    ("/grpc.health.v1.Health/Watch", Need::Open, Shape::ServerStream),
    ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", Need::Open, Shape::Bidi),
    ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", Need::Open, Shape::Bidi),
    // Not served: the router answers, after the layer.
    ("/maestro.v1.ResourceService/NoSuchMethod", Need::Read, Shape::Unary),
    ("/maestro.v2.Nothing/Here", Need::Open, Shape::Unary),
];

/// The callers of the matrix: a name for messages, the token, and the role it has.
const CALLERS: [(&str, Option<&str>, Need); 5] = [
    ("no token", None, Need::Open),
    ("read", Some("r-token"), Need::Read),
    ("generate", Some("g-token"), Need::Generate),
    ("another generate", Some("h-token"), Need::Generate),
    ("admin", Some("a-token"), Need::Admin),
];

fn request<T>(msg: T, token: Option<&str>, origin: Option<&str>) -> Request<T> {
    let mut req = Request::new(msg);
    if let Some(t) = token {
        req.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    if let Some(o) = origin {
        req.metadata_mut().insert("origin", o.parse().unwrap());
    }
    req
}

/// Calls `path` with an empty message (every field at its default) and returns the status code the
/// call starts with: a stream that opens counts as OK.
async fn call(channel: &Channel, path: &'static str, shape: Shape, token: Option<&str>) -> (Code, String) {
    let mut grpc = Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let path = http::uri::PathAndQuery::from_static(path);
    let result = match shape {
        Shape::Unary => grpc.unary(request((), token, None), path, codec).await.map(drop),
        Shape::ServerStream => grpc.server_streaming(request((), token, None), path, codec).await.map(drop),
        Shape::Bidi => {
            let requests = request(futures::stream::iter([()]), token, None);
            grpc.streaming(requests, path, codec).await.map(drop)
        }
    };
    match result {
        Ok(()) => (Code::Ok, String::new()),
        Err(status) => (status.code(), status.message().to_string()),
    }
}

async fn with_tokens(public_telemetry: bool) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, TOKENS).unwrap();
    let mut config = test_config();
    config.server.auth_token_file = Some(file);
    config.server.public_telemetry = public_telemetry;
    config.resources.max_leases_per_token = 2;
    (start_server(config).await, dir)
}

#[tokio::test]
async fn every_rpc_needs_its_role() {
    let served = maestro::grpc::served_methods();
    let listed: std::collections::BTreeSet<String> =
        RPCS.iter().map(|(p, _, _)| p.to_string()).filter(|p| served.contains(p)).collect();
    assert_eq!(&listed, served, "the matrix lists every served RPC");

    let (s, _dir) = with_tokens(false).await;
    for (path, need, shape) in RPCS {
        for (who, token, has) in CALLERS {
            let (code, message) = call(&s.channel, path, shape, token).await;
            let cell = format!("{path} × {who}: {code:?} {message}");
            match (need, has) {
                (Need::Open, _) => {
                    assert!(!matches!(code, Code::Unauthenticated | Code::PermissionDenied), "{cell}")
                }
                (_, Need::Open) => {
                    assert_eq!(code, Code::Unauthenticated, "{cell}");
                    assert!(message.contains("authorization: Bearer"), "{cell}");
                }
                (need, has) if has < need => {
                    assert_eq!(code, Code::PermissionDenied, "{cell}");
                    let role = format!("{need:?}").to_lowercase();
                    assert!(message.contains(&format!("needs the `{role}` role")), "{cell}");
                }
                _ => assert!(!matches!(code, Code::Unauthenticated | Code::PermissionDenied), "{cell}"),
            }
        }
    }
    for wrong in ["wrong", "r-token2", "sha256:", "reader", ""] {
        let (code, message) = call(&s.channel, RPCS[0].0, Shape::Unary, Some(wrong)).await;
        assert_eq!(code, Code::Unauthenticated, "{wrong:?}");
        assert!(!message.contains("token,") && !message.contains("r-token"), "{message}");
    }
    // Failures are counted by reason.
    let metrics = scrape(s.metrics_addr).await;
    for reason in ["missing", "unknown", "role"] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("maestro_auth_failures_total{{reason=\"{reason}\"}}")));
        let count: f64 =
            line.unwrap_or_else(|| panic!("no {reason} count")).rsplit(' ').next().unwrap().parse().unwrap();
        assert!(count >= 1.0, "{reason}: {count}");
    }
}

#[tokio::test]
async fn public_telemetry_opens_the_reads_only() {
    let (s, _dir) = with_tokens(true).await;
    for (path, need, shape) in RPCS {
        let (code, message) = call(&s.channel, path, shape, None).await;
        let refused = matches!(code, Code::Unauthenticated | Code::PermissionDenied);
        assert_eq!(refused, need > Need::Read, "{path}: {code:?} {message}");
    }
    // A wrong token is refused even where none is needed: a misconfigured client hears of it.
    let (code, _) = call(&s.channel, RPCS[0].0, Shape::Unary, Some("wrong")).await;
    assert_eq!(code, Code::Unauthenticated);
}

fn allocate(owner: &str) -> pb::AllocateRequest {
    pb::AllocateRequest {
        owner: owner.into(),
        cpu_memory_bytes: 1_000_000,
        ttl_seconds: 60,
        ..Default::default()
    }
}

fn release(lease: &pb::Lease) -> pb::ReleaseRequest {
    pb::ReleaseRequest { lease_id: lease.lease_id.clone() }
}

#[tokio::test]
async fn only_a_leases_token_or_an_admin_releases_it() {
    let (mut s, _dir) = with_tokens(true).await;
    let r = &mut s.resources;
    let mine = r.allocate(request(allocate("job-1"), Some("g-token"), None)).await.unwrap().into_inner();
    assert_eq!((mine.token_name.as_str(), mine.owner.as_str()), ("ci", "job-1"));
    assert!(!mine.lease_id.is_empty(), "Allocate tells its caller the id");

    for (token, code, says) in [
        (Some("h-token"), Code::PermissionDenied, "made by token \"ci\""),
        (Some("r-token"), Code::PermissionDenied, "needs the `generate` role"),
        (None, Code::Unauthenticated, "authorization"),
    ] {
        let err = r.release(request(release(&mine), token, None)).await.unwrap_err();
        assert_eq!(err.code(), code, "{token:?}: {err:?}");
        assert!(err.message().contains(says), "{token:?}: {}", err.message());
    }
    // Ids are shown to admins only, in reports and watches.
    let report = |token| request(pb::ReportRequest {}, token, None);
    for token in [None, Some("r-token"), Some("g-token")] {
        let leases = r.get_report(report(token)).await.unwrap().into_inner().leases;
        assert_eq!(leases.len(), 1);
        assert!(leases[0].lease_id.is_empty() && leases[0].token_name == "ci", "{token:?}: {leases:?}");
    }
    let watch = request(pb::WatchReportRequest { interval_ms: 100 }, Some("g-token"), None);
    let first = r.watch_report(watch).await.unwrap().into_inner().message().await.unwrap().unwrap();
    assert!(first.leases[0].lease_id.is_empty());
    let leases = r.get_report(report(Some("a-token"))).await.unwrap().into_inner().leases;
    assert_eq!(leases[0].lease_id, mine.lease_id);
    let watch = request(pb::WatchReportRequest { interval_ms: 100 }, Some("a-token"), None);
    let first = r.watch_report(watch).await.unwrap().into_inner().message().await.unwrap().unwrap();
    assert_eq!(first.leases[0].lease_id, mine.lease_id);

    // The owner releases its own; an admin releases anyone's.
    r.release(request(release(&mine), Some("g-token"), None)).await.unwrap();
    let theirs = r.allocate(request(allocate("job-2"), Some("h-token"), None)).await.unwrap().into_inner();
    let released = r.release(request(release(&theirs), Some("a-token"), None)).await.unwrap().into_inner();
    assert_eq!(released.lease.unwrap().token_name, "batch");

    // A name holds at most --max-leases-per-token client leases; another name is not held back.
    for n in 0..2 {
        r.allocate(request(allocate(&format!("fill-{n}")), Some("g-token"), None)).await.unwrap();
    }
    let err = r.allocate(request(allocate("one-too-many"), Some("g-token"), None)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("--max-leases-per-token 2"), "{}", err.message());
    r.allocate(request(allocate("other"), Some("h-token"), None)).await.unwrap();
}

#[tokio::test]
async fn browser_origins_need_both_an_allowed_origin_and_the_role() {
    let (mut s, _dir) = with_tokens(true).await;
    let own = format!("http://127.0.0.1:{}", s.metrics_addr.port());
    let evil = format!("http://evil.example:{}", s.metrics_addr.port());
    let r = &mut s.resources;
    let lease =
        r.allocate(request(allocate("page"), Some("g-token"), Some(&own))).await.unwrap().into_inner();
    r.release(request(release(&lease), Some("g-token"), Some(&own))).await.unwrap();
    for (token, origin, code) in [
        (None, own.as_str(), Code::Unauthenticated),
        (Some("r-token"), own.as_str(), Code::PermissionDenied),
        (Some("g-token"), evil.as_str(), Code::PermissionDenied),
        (Some("a-token"), evil.as_str(), Code::PermissionDenied),
        (None, evil.as_str(), Code::PermissionDenied),
    ] {
        let err = r.allocate(request(allocate("page"), token, Some(origin))).await.unwrap_err();
        assert_eq!(err.code(), code, "{token:?} from {origin}: {err:?}");
    }
    // Reads follow --public-telemetry from any origin (the browser keeps a foreign page from the answer).
    r.get_status(request(pb::StatusRequest {}, None, Some(&evil))).await.unwrap();
}

#[tokio::test]
async fn a_broken_token_file_stops_the_start_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, "# ok so far\nabc,def\n").unwrap();
    let mut config = test_config();
    config.server.auth_token_file = Some(file);
    let err = maestro::app::App::build(config).await.err().expect("refused");
    let message = format!("{err:#}");
    assert!(message.contains("line 2") && message.contains("TOKEN,NAME,ROLE"), "{message}");
    assert!(!message.contains("abc"), "no token in the message: {message}");
}

#[cfg(feature = "torch")]
mod with_models {
    //! What needs a loaded model: the server's own leases, and each name's share of the queue.

    use super::*;
    use common::model_config;

    const TINY: &str = "maestro/musicgen-tiny";

    async fn serve(queue_capacity: usize) -> (TestServer, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, TOKENS).unwrap();
        let mut config = model_config();
        config.server.auth_token_file = Some(file);
        config.generation.queue_capacity = queue_capacity;
        config.generation.stall_timeout = std::time::Duration::from_secs(120);
        (start_server(config).await, dir)
    }

    fn generate(duration_s: f64) -> pb::GenerateRequest {
        pb::GenerateRequest {
            model: TINY.into(),
            prompt: "a slow drone".into(),
            duration_s,
            seed: Some(1),
            chunk_ms: 20,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn the_servers_own_leases_are_released_by_no_one() {
        let (mut s, _dir) = serve(4).await;
        let load = pb::LoadModelRequest { model: TINY.into(), ..Default::default() };
        s.generation.load_model(request(load, Some("a-token"), None)).await.unwrap();
        // A generation the client does not read holds its generation lease.
        let open = s.generation.generate(request(generate(30.0), Some("g-token"), None)).await.unwrap();
        let report = request(pb::ReportRequest {}, Some("a-token"), None);
        let leases = s.resources.get_report(report).await.unwrap().into_inner().leases;
        for kind in ["model_load", "generation"] {
            let lease =
                leases.iter().find(|l| l.kind == kind).unwrap_or_else(|| panic!("no {kind}: {leases:?}"));
            assert!(lease.token_name.is_empty(), "{lease:?}");
            for token in ["a-token", "g-token"] {
                let err = s.resources.release(request(release(lease), Some(token), None)).await.unwrap_err();
                assert_eq!(err.code(), Code::FailedPrecondition, "{kind} by {token}: {err:?}");
                assert!(err.message().contains(&format!("is a {kind} lease")), "{}", err.message());
            }
        }
        drop(open);
    }

    #[tokio::test]
    async fn one_name_filling_its_share_leaves_slots_for_another() {
        // A queue of 2: each name's share is 1.
        let (mut s, _dir) = serve(2).await;
        let mut held = s.generation.generate(request(generate(30.0), Some("g-token"), None)).await.unwrap();
        held.get_mut().message().await.unwrap().expect("the header");
        let err = s.generation.generate(request(generate(1.0), Some("g-token"), None)).await.unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
        assert!(err.message().contains("--max-queued-per-token 1"), "{}", err.message());
        let mut other = s.generation.generate(request(generate(0.2), Some("h-token"), None)).await.unwrap();
        while other.get_mut().message().await.unwrap().is_some() {}
        drop(held);
        // The share comes back when the generation ends.
        let again = common::eventually("ci's share back", std::time::Duration::from_secs(30), async || {
            s.generation.generate(request(generate(0.2), Some("g-token"), None)).await.ok()
        })
        .await;
        drop(again);
    }
}

/// Everything the process logs (the subscriber is process-wide: tests on other threads log here too).
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// The lines that contain `text` and the port of `addr`.
    fn lines(&self, text: &str, addr: std::net::SocketAddr) -> usize {
        let logs = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        let port = format!(":{}", addr.port());
        logs.lines().filter(|l| l.contains(text) && l.contains(&port)).count()
    }
}

/// Whether a server on `ip` (port 0) with `config` warns, once it logs that it serves.
async fn warns(ip: &str, config: maestro::config::Config, logs: &Logs) -> bool {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = maestro::app::App::build(config).await.unwrap();
    let (stop, signals) = maestro::shutdown::Signals::channel();
    let server = tokio::spawn(app.serve(listener, signals));
    let started = async || (logs.lines("serving gRPC", addr) == 1).then_some(());
    common::eventually("the server serving", common::WITHIN, started).await;
    stop.request();
    server.await.unwrap().unwrap();
    match logs.lines("beyond loopback with no --auth-token-file", addr) {
        0 => false,
        1 => true,
        n => panic!("warned {n} times"),
    }
}

#[tokio::test]
async fn a_server_beyond_loopback_without_tokens_warns_at_start() {
    let logs = Logs::default();
    let writer = {
        let logs = logs.clone();
        move || logs.clone()
    };
    let subscriber = tracing_subscriber::fmt().with_writer(writer).with_ansi(false).finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this test binary");
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "a-token\n").unwrap();
    let mut with_tokens = test_config();
    with_tokens.server.auth_token_file = Some(tokens);

    assert!(!warns("127.0.0.1", test_config(), &logs).await, "loopback");
    assert!(!warns("0.0.0.0", with_tokens, &logs).await, "tokens");
    assert!(warns("0.0.0.0", test_config(), &logs).await, "beyond loopback without tokens");
}
