//! gRPC statuses as HTTP answers, as grpc-gateway maps them: the HTTP status from the code and a
//! `google.rpc.Status`-shaped JSON body, `{"code": <gRPC code number>, "message": "...", "details": []}`.

use http::{header, HeaderValue, Response, StatusCode};
use tonic::Code;

/// The HTTP status for a gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).expect("499 is a valid status"),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Seconds a client should wait before retrying a refusal that may pass later: a full queue or
/// stream budget, memory in use, a draining server.
pub const RETRY_AFTER_S: u32 = 1;

/// The JSON body of an error.
pub fn body(code: Code, message: &str) -> serde_json::Value {
    serde_json::json!({ "code": code as i32, "message": message, "details": [] })
}

/// The whole HTTP answer for a status.
pub fn response<B: From<String>>(code: Code, message: &str) -> Response<B> {
    let mut response = Response::new(B::from(body(code, message).to_string()));
    *response.status_mut() = http_status(code);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if matches!(code, Code::ResourceExhausted | Code::Unavailable) {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
    }
    if code == Code::Unauthenticated {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_as_grpc_gateway_maps_them() {
        for (code, status) in [
            (Code::InvalidArgument, 400),
            (Code::FailedPrecondition, 400),
            (Code::OutOfRange, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::Aborted, 409),
            (Code::ResourceExhausted, 429),
            (Code::Unimplemented, 501),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
            (Code::Internal, 500),
        ] {
            assert_eq!(http_status(code).as_u16(), status, "{code:?}");
        }
        let r: Response<String> = response(Code::ResourceExhausted, "queue full");
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let body: serde_json::Value = serde_json::from_str(r.body()).unwrap();
        assert_eq!(body, serde_json::json!({"code": 8, "message": "queue full", "details": []}));
        let r: Response<String> = response(Code::NotFound, "x");
        assert!(!r.headers().contains_key(header::RETRY_AFTER));
    }
}
