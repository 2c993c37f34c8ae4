//! Server-streaming RPCs over plain HTTP: Server-Sent Events when the client accepts
//! `text/event-stream` (an `EventSource` works unchanged), newline-delimited JSON otherwise.
//!
//! SSE: a `retry:` hint first, then one `data:` event per message with an `id:` counting from 1, a
//! comment line every [`HEARTBEAT`] while nothing is sent (so proxies and clients can tell a quiet
//! stream from a dead one), and `event: error` with the status body if the call fails. NDJSON: one
//! message per line, and a last line `{"error": {...}}` if the call fails. Either ends when the gRPC
//! stream ends: at the client's going away, at the server's drain, or at an error.

use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tonic::Status;

use super::{call::Messages, errors, json};

/// How long an SSE stream stays silent before a heartbeat comment.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// The reconnection delay an SSE stream suggests to `EventSource`, in milliseconds.
pub const RETRY_MS: u32 = 2000;

/// How a stream is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/event-stream`.
    Sse,
    /// `application/x-ndjson`.
    Ndjson,
}

impl Format {
    /// SSE when `accept` names `text/event-stream`, NDJSON otherwise.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.split(',').any(|m| m.trim().starts_with("text/event-stream")) => Format::Sse,
            _ => Format::Ndjson,
        }
    }

    /// The response's content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Sse => "text/event-stream",
            Format::Ndjson => "application/x-ndjson",
        }
    }
}

struct Feed {
    messages: Messages,
    desc: MessageDescriptor,
    format: Format,
    sent: u64,
    started: bool,
    ended: bool,
}

/// The body of a streamed call: its messages as `format`.
pub fn body(messages: Messages, desc: MessageDescriptor, format: Format) -> tonic::body::Body {
    let feed = Feed { messages, desc, format, sent: 0, started: false, ended: false };
    let frames = futures::stream::unfold(feed, |mut feed| async move {
        let bytes = feed.next().await?;
        Some((Ok::<_, Status>(Frame::data(bytes)), feed))
    });
    tonic::body::Body::new(http_body_util::StreamBody::new(frames))
}

impl Feed {
    async fn next(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        if !self.started && self.format == Format::Sse {
            self.started = true;
            return Some(Bytes::from(format!("retry: {RETRY_MS}\n\n")));
        }
        let next = match self.format {
            Format::Ndjson => self.messages.next().await,
            Format::Sse => tokio::select! {
                next = self.messages.next() => next,
                () = tokio::time::sleep(HEARTBEAT) => return Some(Bytes::from_static(b": heartbeat\n\n")),
            },
        };
        match next {
            Ok(Some(bytes)) => Some(self.message(&bytes)),
            Ok(None) => {
                self.ended = true;
                None
            }
            Err(status) => {
                self.ended = true;
                tracing::debug!(code = ?status.code(), message = status.message(), "an HTTP stream ended with an error");
                Some(self.error(&status))
            }
        }
    }

    fn message(&mut self, bytes: &[u8]) -> Bytes {
        let json = match DynamicMessage::decode(self.desc.clone(), bytes) {
            Ok(message) => json::to_json(&message),
            Err(e) => errors::body(tonic::Code::Internal, &format!("an undecodable response message: {e}")),
        };
        self.sent += 1;
        match self.format {
            Format::Sse => Bytes::from(format!("id: {}\ndata: {json}\n\n", self.sent)),
            Format::Ndjson => Bytes::from(format!("{json}\n")),
        }
    }

    fn error(&self, status: &Status) -> Bytes {
        let body = errors::body(status.code(), status.message());
        match self.format {
            Format::Sse => Bytes::from(format!("event: error\ndata: {body}\n\n")),
            Format::Ndjson => Bytes::from(format!("{}\n", serde_json::json!({ "error": body }))),
        }
    }
}
