//! The bridge into the gRPC stack: an HTTP call becomes a gRPC request (same headers, same peer,
//! the message length-prefixed) sent through the layers every gRPC call goes through, and the gRPC
//! response's length-prefixed messages and trailers are read back.

use bytes::{Buf, Bytes, BytesMut};
use http::{header, request::Parts, HeaderMap, HeaderValue, Request};
use http_body_util::BodyExt;
use tonic::{body::Body, Status};

/// Headers of the HTTP call that do not describe the gRPC call.
const NOT_CARRIED: [header::HeaderName; 6] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::ACCEPT,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
    header::ACCEPT_ENCODING,
];

/// The gRPC request for `path` carrying `message`, with the HTTP call's headers (credentials,
/// origin, host) and extensions (the peer's address).
pub fn grpc_request(parts: &Parts, path: &str, message: Vec<u8>) -> Request<Body> {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.extend_from_slice(&[0]);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    let mut request = Request::new(Body::new(http_body_util::Full::new(framed.freeze())));
    *request.method_mut() = http::Method::POST;
    // A gRPC call as a native client makes it (gRPC-Web's layer passes those through untouched).
    *request.version_mut() = http::Version::HTTP_2;
    let mut uri = http::Uri::builder().path_and_query(path);
    if let (Some(scheme), Some(authority)) = (parts.uri.scheme(), parts.uri.authority()) {
        uri = uri.scheme(scheme.clone()).authority(authority.clone());
    }
    *request.uri_mut() = uri.build().expect("an RPC path is a valid URI");
    let headers = request.headers_mut();
    for (name, value) in &parts.headers {
        if !NOT_CARRIED.contains(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    *request.extensions_mut() = parts.extensions.clone();
    request
}

/// The messages of a gRPC response body, then its status.
pub struct Messages {
    body: Body,
    buffer: BytesMut,
    status: Option<Status>,
    done: bool,
}

impl Messages {
    /// Reads `body`; `headers` are the response's, which hold the status of a trailers-only answer.
    pub fn new(headers: &HeaderMap, body: Body) -> Self {
        Self { body, buffer: BytesMut::new(), status: Status::from_header_map(headers), done: false }
    }

    /// The status a trailers-only answer carried (a call refused before it started).
    pub fn refused(&self) -> Option<&Status> {
        self.status.as_ref().filter(|s| s.code() != tonic::Code::Ok)
    }

    /// The next message; `Ok(None)` once the call ended OK, `Err` with its status otherwise.
    /// Cancel-safe: what has been read stays buffered.
    pub async fn next(&mut self) -> Result<Option<Bytes>, Status> {
        loop {
            if let Some(message) = self.take_message()? {
                return Ok(Some(message));
            }
            if self.done {
                return match self.status.take() {
                    Some(status) if status.code() != tonic::Code::Ok => Err(status),
                    _ if !self.buffer.is_empty() => {
                        Err(Status::internal("the response ended inside a message"))
                    }
                    _ => Ok(None),
                };
            }
            match self.body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buffer.extend_from_slice(&data),
                    Err(frame) => {
                        if let Some(trailers) = frame.trailers_ref() {
                            self.status = Status::from_header_map(trailers);
                        }
                    }
                },
                Some(Err(e)) => {
                    self.done = true;
                    self.status = Some(e);
                }
                None => self.done = true,
            }
        }
    }

    fn take_message(&mut self) -> Result<Option<Bytes>, Status> {
        if self.buffer.len() < 5 {
            return Ok(None);
        }
        if self.buffer[0] != 0 {
            return Err(Status::internal("a compressed response message (none was asked for)"));
        }
        let len =
            u32::from_be_bytes([self.buffer[1], self.buffer[2], self.buffer[3], self.buffer[4]]) as usize;
        if self.buffer.len() < 5 + len {
            return Ok(None);
        }
        self.buffer.advance(5);
        Ok(Some(self.buffer.split_to(len).freeze()))
    }
}
