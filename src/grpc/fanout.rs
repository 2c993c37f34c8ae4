//! `WatchSnapshots` with each snapshot encoded once for all its subscribers.
//!
//! The generated `ResourceServiceServer` converts and encodes every message of every stream: at
//! 10 000 subscribers, the same bytes 10 000 times per tick. Sharing them cut the server's CPU by
//! about a sixth (BENCHMARKS.md, telemetry A/B).
//! [`ResourceRoutes`] serves `ResourceService` through the generated server, except
//! `WatchSnapshots`, which it answers with a codec that writes bytes encoded once per sample
//! ([`EncodedSnapshots`]). A subscriber that skipped samples gets its `skipped` field appended: protobuf
//! lets a field come after the others, and `skipped` is 0 (absent) in the shared bytes.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use tonic::{
    body::Body,
    codec::{Codec, EncodeBuf, Encoder},
    server::{Grpc, NamedService, ServerStreamingService},
    Request, Response, Status,
};

use super::{
    convert,
    pb::{self, resource_service_server::ResourceServiceServer},
    streams::BoxStream,
    ResourceApi,
};
use crate::monitor::snapshot::Snapshot;

const WATCH_SNAPSHOTS: &str = "/maestro.v1.ResourceService/WatchSnapshots";

/// The latest snapshot's encoding, shared by every `WatchSnapshots` stream of a server.
#[derive(Clone, Default)]
pub struct EncodedSnapshots {
    latest: Arc<Mutex<Option<(u64, Bytes)>>>,
}

impl EncodedSnapshots {
    /// `snapshot` as an encoded `pb::Snapshot` with `skipped`: encoded by the first stream that
    /// sends it, then copied by reference.
    pub fn get(&self, snapshot: &Snapshot, skipped: u64) -> Bytes {
        let shared = self.shared(snapshot);
        if skipped == 0 {
            return shared;
        }
        let field = pb::Snapshot { skipped, ..Default::default() };
        let mut bytes = BytesMut::with_capacity(shared.len() + field.encoded_len());
        bytes.put_slice(&shared);
        field.encode(&mut bytes).expect("the buffer was sized for the field");
        bytes.freeze()
    }

    fn shared(&self, snapshot: &Snapshot) -> Bytes {
        // A poisoned lock only means another stream panicked mid-encode; the cache is still valid
        // or stale, and a stale entry is replaced below.
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        match &*latest {
            Some((sequence, bytes)) if *sequence == snapshot.sequence => bytes.clone(),
            _ => {
                let bytes = Bytes::from(convert::snapshot(snapshot, 0).encode_to_vec());
                *latest = Some((snapshot.sequence, bytes.clone()));
                bytes
            }
        }
    }
}

/// `ResourceService` as the generated server serves it, with `WatchSnapshots` sending shared bytes.
#[derive(Clone)]
pub struct ResourceRoutes {
    generated: ResourceServiceServer<ResourceApi>,
    api: ResourceApi,
    encoded: EncodedSnapshots,
    max_decoding_message_size: usize,
}

impl ResourceRoutes {
    /// The service over `api`; requests above `max_decoding_message_size` bytes are refused.
    pub fn new(api: ResourceApi, max_decoding_message_size: usize) -> Self {
        let generated =
            ResourceServiceServer::new(api.clone()).max_decoding_message_size(max_decoding_message_size);
        Self { generated, api, encoded: EncodedSnapshots::default(), max_decoding_message_size }
    }
}

impl NamedService for ResourceRoutes {
    const NAME: &'static str = super::RESOURCE_SERVICE;
}

impl<B> tower::Service<http::Request<B>> for ResourceRoutes
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != WATCH_SNAPSHOTS {
            return self.generated.call(req);
        }
        let method = WatchSnapshots { api: self.api.clone(), encoded: self.encoded.clone() };
        let mut grpc = Grpc::new(SharedBytesCodec)
            .apply_max_message_size_config(Some(self.max_decoding_message_size), None);
        Box::pin(async move { Ok(grpc.server_streaming(method, req).await) })
    }
}

struct WatchSnapshots {
    api: ResourceApi,
    encoded: EncodedSnapshots,
}

impl ServerStreamingService<pb::WatchSnapshotsRequest> for WatchSnapshots {
    type Response = Bytes;
    type ResponseStream = BoxStream<Bytes>;
    type Future = Pin<Box<dyn Future<Output = Result<Response<BoxStream<Bytes>>, Status>> + Send>>;

    fn call(&mut self, req: Request<pb::WatchSnapshotsRequest>) -> Self::Future {
        let encoded = self.encoded.clone();
        let peer = super::auth::peer_addr(req.extensions());
        let opened =
            self.api.watch_snapshots_as(req.into_inner(), peer, move |s, skipped| encoded.get(s, skipped));
        Box::pin(async move { Ok(Response::new(opened.map_err(|e| super::status::status(&e))?)) })
    }
}

/// Sends messages that are already encoded; decodes requests with prost.
struct SharedBytesCodec;

impl Codec for SharedBytesCodec {
    type Encode = Bytes;
    type Decode = pb::WatchSnapshotsRequest;
    type Encoder = SharedBytesCodec;
    type Decoder = tonic_prost::ProstDecoder<pb::WatchSnapshotsRequest>;

    fn encoder(&mut self) -> Self::Encoder {
        SharedBytesCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::new(Default::default())
    }
}

impl Encoder for SharedBytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(sequence: u64) -> Snapshot {
        let mut s = Snapshot { sequence, ..Snapshot::default() };
        s.host.memory_total_bytes = 24 << 30;
        s.host.memory_used_bytes = 3 << 30;
        s.host.cpu_percent = 42.5;
        s.sampled_at =
            Some(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000));
        s
    }

    #[test]
    fn shared_bytes_decode_as_the_converted_snapshot_with_its_skipped_count() {
        let encoded = EncodedSnapshots::default();
        for (sequence, skipped) in [(7, 0), (7, 3), (8, 0), (8, u64::MAX)] {
            let snap = snapshot(sequence);
            let bytes = encoded.get(&snap, skipped);
            let decoded = pb::Snapshot::decode(bytes).unwrap();
            assert_eq!(decoded, convert::snapshot(&snap, skipped), "sequence {sequence}, skipped {skipped}");
        }
    }

    #[test]
    fn a_sample_is_encoded_once_and_a_new_one_replaces_it() {
        let encoded = EncodedSnapshots::default();
        let first = encoded.get(&snapshot(1), 0);
        let again = encoded.get(&snapshot(1), 0);
        assert_eq!(first.as_ptr(), again.as_ptr(), "the second stream shares the first one's bytes");
        let next = encoded.get(&snapshot(2), 0);
        assert_ne!(first.as_ptr(), next.as_ptr());
        assert_eq!(pb::Snapshot::decode(next).unwrap().sequence, 2);
    }
}
