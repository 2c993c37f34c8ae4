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
