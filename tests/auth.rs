//! Bearer tokens through the real server: mutating RPCs need one, telemetry follows
//! `--public-telemetry`, health and reflection stay open.

mod common;

use common::{start_server, test_config};
use maestro_proto as pb;
use tonic::{Code, Request};
use tonic_health::pb::HealthCheckRequest;

fn with_token<T>(msg: T, token: Option<&str>) -> Request<T> {
    let mut req = Request::new(msg);
    if let Some(t) = token {
        req.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    req
}

fn allocate() -> pb::AllocateRequest {
    pb::AllocateRequest {
        owner: "auth-test".into(),
        cpu_memory_bytes: 1000,
        gpu_memory_bytes: 0,
        gpu_index: None,
        ttl_seconds: 60,
    }
}

#[tokio::test]
async fn tokens_guard_mutations_and_optionally_telemetry() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, "# operators\ns3cret-token\n").unwrap();
    let mut config = test_config();
    config.server.auth_token_file = Some(file.clone());
    let mut s = start_server(config.clone()).await;

    for token in [None, Some("wrong"), Some("s3cret-token-and-more")] {
        let err = s.resources.allocate(with_token(allocate(), token)).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{token:?}");
        assert!(!err.message().contains("s3cret"), "the token never appears in messages");
    }
    let gen = s.generation.generate(with_token(pb::GenerateRequest::default(), None)).await.unwrap_err();
    assert_eq!(gen.code(), Code::Unauthenticated);
    let cleanup = s.resources.cleanup(with_token(pb::CleanupRequest::default(), None)).await.unwrap_err();
    assert_eq!(cleanup.code(), Code::Unauthenticated);

    let lease =
        s.resources.allocate(with_token(allocate(), Some("s3cret-token"))).await.unwrap().into_inner();
    let release = pb::ReleaseRequest { lease_id: lease.lease_id };
    s.resources.release(with_token(release, Some("s3cret-token"))).await.unwrap();

    // Telemetry is public by default; health is always open.
    s.resources.get_status(with_token(pb::StatusRequest {}, None)).await.unwrap();
    s.health.check(HealthCheckRequest { service: String::new() }).await.unwrap();

    config.server.public_telemetry = false;
    let mut closed = start_server(config).await;
    let err = closed.resources.get_status(with_token(pb::StatusRequest {}, None)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    closed.resources.get_status(with_token(pb::StatusRequest {}, Some("s3cret-token"))).await.unwrap();
    closed.health.check(HealthCheckRequest { service: String::new() }).await.unwrap();
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
