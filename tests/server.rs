//! The server's house: reflection, health, placeholders and shutdown, through real gRPC calls.

mod common;

use std::collections::BTreeSet;

use common::{start_server, test_config};
use futures::StreamExt;
use tonic::Code;
use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};

const EXPECTED: [&str; 5] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "maestro.v1.GenerationService",
    "maestro.v1.ResourceService",
];

async fn list_v1(channel: tonic::transport::Channel) -> BTreeSet<String> {
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse, ServerReflectionRequest,
    };
    let mut client = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client.server_reflection_info(futures::stream::iter([req])).await.unwrap().into_inner();
    match stream.next().await.unwrap().unwrap().message_response.unwrap() {
        MessageResponse::ListServicesResponse(list) => list.service.into_iter().map(|s| s.name).collect(),
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

async fn list_v1alpha(channel: tonic::transport::Channel) -> BTreeSet<String> {
    use tonic_reflection::pb::v1alpha::{
        server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse, ServerReflectionRequest,
    };
    let mut client = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client.server_reflection_info(futures::stream::iter([req])).await.unwrap().into_inner();
    match stream.next().await.unwrap().unwrap().message_response.unwrap() {
        MessageResponse::ListServicesResponse(list) => list.service.into_iter().map(|s| s.name).collect(),
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_every_service() {
    let server = start_server(test_config()).await;
    let expected: BTreeSet<String> = EXPECTED.iter().map(|s| s.to_string()).collect();
    assert_eq!(list_v1(server.channel.clone()).await, expected);
    assert_eq!(list_v1alpha(server.channel.clone()).await, expected);
    server.shutdown().await.unwrap();
}

async fn reflection_files(
    channel: tonic::transport::Channel,
    request: tonic_reflection::pb::v1::server_reflection_request::MessageRequest,
) -> Vec<String> {
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut client = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest { host: String::new(), message_request: Some(request) };
    let mut stream = client.server_reflection_info(futures::stream::iter([req])).await.unwrap().into_inner();
    let MessageResponse::FileDescriptorResponse(files) =
        stream.next().await.unwrap().unwrap().message_response.unwrap()
    else {
        panic!("expected file descriptors")
    };
    files
        .file_descriptor_proto
        .iter()
        .map(|bytes| {
            <prost_types::FileDescriptorProto as prost::Message>::decode(bytes.as_slice())
                .unwrap()
                .name()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn reflection_describes_maestro_symbols_and_their_imports() {
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    let server = start_server(test_config()).await;
    let names = reflection_files(
        server.channel.clone(),
        MessageRequest::FileContainingSymbol("maestro.v1.Snapshot".into()),
    )
    .await;
    assert!(names.contains(&"maestro/v1/resources.proto".to_string()), "{names:?}");
    let names = reflection_files(
        server.channel.clone(),
        MessageRequest::FileContainingSymbol("maestro.v1.GenerationService".into()),
    )
    .await;
    assert!(names.contains(&"maestro/v1/generation.proto".to_string()), "{names:?}");
    // grpcurl then fetches each import by name.
    let names = reflection_files(
        server.channel.clone(),
        MessageRequest::FileByFilename("google/protobuf/timestamp.proto".into()),
    )
    .await;
    assert_eq!(names, vec!["google/protobuf/timestamp.proto".to_string()]);
}

#[tokio::test]
async fn health_is_serving_for_the_server_and_each_service() {
    let mut server = start_server(test_config()).await;
    for service in ["", "maestro.v1.ResourceService", "maestro.v1.GenerationService"] {
        let status = server.health.check(HealthCheckRequest { service: service.into() }).await.unwrap();
        assert_eq!(status.into_inner().status(), ServingStatus::Serving, "service {service:?}");
    }
    let unknown = server.health.check(HealthCheckRequest { service: "nope".into() }).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}
