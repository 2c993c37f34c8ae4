//! `POST /api/v1/generate` on Maestro's own router: the music itself, streamed as it is generated
//! (chunked; the first bytes leave with the first chunk), in the format chosen by `?format=`
//! (`wav`, `flac`, `opus`/`ogg`, `mp3`), else by an `Accept` naming an audio type, else by the body's
//! `format`, else WAV (so curl's `*/*` gets WAV). The header's facts go in `X-Maestro-*` response
//! headers. A failure before the first byte is a JSON error; one after it ends the body early (the
//! client sees a truncated transfer) and is logged. An `Accept` of JSON, NDJSON or SSE without an
//! audio type gets the gRPC messages as a JSON stream instead, as a transcoding proxy would give.
//!
//! The audio is the gRPC call's own: the chosen format is set in the request, and the chunks'
//! bytes (whole frames or pages of the file) are written as they come.

use bytes::Bytes;
use http::{header, request::Parts, HeaderMap, HeaderName, HeaderValue, Response};
use http_body::Frame;
use prost::Message;
use tonic::{body::Body, Status};

use super::call::Messages;
use crate::{audio_out::Container, grpc::pb};

/// What a generate call answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The audio in a container.
    Audio(Container),
    /// Raw PCM as the body's `format` asked (little-endian, interleaved).
    Pcm(pb::AudioFormat),
    /// The gRPC messages as JSON (NDJSON or SSE).
    Messages,
}

/// Takes `format` out of the query and decides the answer from it, the `Accept` header and the
/// body's `format` (`body_format`, the enum's number).
pub fn choose(
    fields: &mut Vec<(String, String)>,
    headers: &HeaderMap,
    body_format: i32,
) -> Result<Answer, String> {
    if let Some(i) = fields.iter().position(|(k, _)| k == "format") {
        let (_, value) = fields.remove(i);
        return Container::from_name(&value)
            .map(Answer::Audio)
            .ok_or_else(|| format!("format: must be wav, flac, opus (or ogg) or mp3, got {value:?}"));
    }
    let accept = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).unwrap_or("");
    let ranges: Vec<&str> = accept.split(',').map(|r| r.split(';').next().unwrap_or("").trim()).collect();
    if ranges.iter().any(|r| r.starts_with("audio/") && *r != "audio/*") {
        return Container::from_accept(accept)
            .map(Answer::Audio)
            .ok_or_else(|| format!("Accept: none of {accept:?} is a format served (audio/wav, audio/flac, audio/ogg, audio/mpeg)"));
    }
    let json = ["application/json", "application/x-ndjson", "text/event-stream"];
    if ranges.iter().any(|r| json.contains(r)) && !ranges.contains(&"*/*") && !ranges.contains(&"audio/*") {
        return Ok(Answer::Messages);
    }
    Ok(match pb::AudioFormat::try_from(body_format).unwrap_or_default() {
        f @ (pb::AudioFormat::PcmS16le | pb::AudioFormat::PcmF32le) => Answer::Pcm(f),
        f => Answer::Audio(crate::grpc::audio_container(f).unwrap_or(Container::Wav)),
    })
}

/// The gRPC format that produces `answer`.
pub fn grpc_format(answer: Answer) -> Option<pb::AudioFormat> {
    match answer {
        Answer::Audio(c) => Some(crate::grpc::audio_format_of(c)),
        Answer::Pcm(f) => Some(f),
        Answer::Messages => None,
    }
}

/// The audio answer of a started call: waits for its header, then streams the chunks' bytes.
pub async fn respond(mut messages: Messages, answer: Answer, parts: &Parts) -> Response<Body> {
    let header = match messages.next().await {
        Ok(Some(bytes)) => match pb::GenerateResponse::decode(bytes) {
            Ok(pb::GenerateResponse { payload: Some(pb::generate_response::Payload::Header(h)) }) => h,
            _ => return super::refuse(tonic::Code::Internal, "the generation did not start with its header"),
        },
        Ok(None) => return super::refuse(tonic::Code::Internal, "the generation ended before its header"),
        Err(status) => return super::refuse(status.code(), status.message()),
    };
    let peer = crate::grpc::auth::peer_addr(&parts.extensions);
    let request_id = header.request_id.clone();
    let frames = futures::stream::unfold(Some(messages), move |messages| {
        let request_id = request_id.clone();
        async move {
            let mut messages = messages?;
            loop {
                match messages.next().await {
                    Ok(Some(bytes)) => match pb::GenerateResponse::decode(bytes).ok().and_then(|r| r.payload)
                    {
                        Some(pb::generate_response::Payload::Chunk(c)) if !c.data.is_empty() => {
                            return Some((Ok(Frame::data(Bytes::from(c.data))), Some(messages)));
                        }
                        Some(pb::generate_response::Payload::Summary(_)) | None => return None,
                        _ => continue,
                    },
                    Ok(None) => return None,
                    Err(status) => {
                        tracing::warn!(request_id, ?peer, code = ?status.code(), message = status.message(), "an HTTP generation failed after its first bytes: the body ends early");
                        return Some((Err::<Frame<Bytes>, Status>(status), None));
                    }
                }
            }
        }
    });
    let mut response = Response::new(Body::new(http_body_util::StreamBody::new(frames)));
    set_headers(response.headers_mut(), &header, answer);
    response
}

/// `Content-Type` and the header's facts.
fn set_headers(headers: &mut HeaderMap, h: &pb::Header, answer: Answer) {
    let content_type = match answer {
        Answer::Audio(c) => c.mime(),
        _ => "application/octet-stream",
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    let params = h.params.unwrap_or_default();
    let sample_format = match answer {
        Answer::Pcm(pb::AudioFormat::PcmF32le) => "f32le",
        _ => "s16le",
    };
    for (name, value) in [
        ("x-maestro-request-id", h.request_id.clone()),
        ("x-maestro-model", h.model.clone()),
        ("x-maestro-device", h.device.clone()),
        ("x-maestro-sample-rate", h.sample_rate.to_string()),
        ("x-maestro-channels", h.channels.to_string()),
        ("x-maestro-samples", h.expected_samples.to_string()),
        ("x-maestro-sample-format", sample_format.to_string()),
        ("x-maestro-seed", params.seed.to_string()),
        ("x-maestro-guidance-scale", params.guidance_scale.to_string()),
        ("x-maestro-duration-s", params.duration_s.to_string()),
        ("x-maestro-queue-position", h.queue_position.to_string()),
        ("x-maestro-input-conversions", h.input_conversions.join("; ")),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

/// The response headers a browser page may read (CORS `Access-Control-Expose-Headers`).
pub const EXPOSED: [&str; 12] = [
    "x-maestro-request-id",
    "x-maestro-model",
    "x-maestro-device",
    "x-maestro-sample-rate",
    "x-maestro-channels",
    "x-maestro-samples",
    "x-maestro-sample-format",
    "x-maestro-seed",
    "x-maestro-guidance-scale",
    "x-maestro-duration-s",
    "x-maestro-queue-position",
    "x-maestro-input-conversions",
];
