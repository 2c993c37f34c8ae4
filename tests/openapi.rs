//! The OpenAPI document: `docs/openapi.json` is the one the server generates and serves (rewrite it
//! with `UPDATE_OPENAPI=1 cargo test --test openapi`), and it describes every route.

mod common;

use maestro::gateway::{openapi_json, pool, routes::Routes};

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");

#[test]
fn the_committed_document_is_current() {
    let generated = openapi_json(&Routes::from_pool(&pool()));
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is not what the protos generate: run `UPDATE_OPENAPI=1 cargo test --test openapi`"
    );
}

#[test]
fn every_route_is_an_operation_with_its_errors_and_the_lease_link() {
    let doc: serde_json::Value = serde_json::from_str(&openapi_json(&Routes::from_pool(&pool()))).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for route in Routes::from_pool(&pool()).iter() {
        let op = &doc["paths"][&route.template][route.method.as_str().to_lowercase()];
        assert_eq!(op["operationId"], route.rpc.name(), "{} {}", route.method, route.template);
        assert!(op["description"].as_str().is_some_and(|d| !d.is_empty()), "{}: described", route.rpc.name());
        for status in ["200", "400", "401", "403", "429", "503"] {
            assert!(op["responses"].get(status).is_some(), "{} answers {status}", route.rpc.name());
        }
    }
    let allocate = &doc["paths"]["/api/v1/leases"]["post"];
    assert_eq!(
        allocate["responses"]["200"]["links"]["Release"]["parameters"]["lease_id"],
        "$response.body#/leaseId"
    );
    let release = &doc["paths"]["/api/v1/leases/{lease_id}"]["delete"]["parameters"][0];
    assert_eq!((release["in"].as_str(), release["required"].as_bool()), (Some("path"), Some(true)));
    let alerts = &doc["paths"]["/api/v1/monitoring/alerts"]["get"]["parameters"];
    let severity = alerts.as_array().unwrap().iter().find(|p| p["name"] == "severity").unwrap();
    let names = severity["schema"]["enum"].as_array().unwrap();
    assert!(names.contains(&"SEVERITY_CRITICAL".into()) && names.contains(&"critical".into()), "{severity}");
    // Responses list what is always written; requests require nothing.
    let snapshot = &doc["components"]["schemas"]["Snapshot"];
    assert!(snapshot["required"].as_array().unwrap().contains(&"sequence".into()), "{snapshot}");
    assert!(doc["components"]["schemas"]["AllocateRequest"].get("required").is_none());
}

#[tokio::test]
async fn the_server_serves_it() {
    let s = common::start_server(common::test_config()).await;
    let body = reqwest_like_get(s.addr, "/api/v1/openapi.json").await;
    assert_eq!(body, openapi_json(&Routes::from_pool(&pool())));
}

/// The body of `GET path` over HTTP/1.1.
async fn reqwest_like_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{}", &text[..text.len().min(300)]);
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    body.to_string()
}
