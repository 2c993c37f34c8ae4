//! Exit codes and the one-line error every failed command prints.
//!
//! Scripts branch on the code, so each class of failure has its own: the server could not be
//! reached, the request was wrong, the server refused it for lack of resources, or the credentials
//! did not allow it.

use std::fmt::Display;

use tonic::Code;

/// The command did what was asked.
pub const SUCCESS: u8 = 0;
/// Anything not covered below (an internal server error, a local file that cannot be written).
pub const GENERAL: u8 = 1;
/// Bad command-line usage (clap's own code).
pub const USAGE: u8 = 2;
/// The server could not be reached or is not serving (UNAVAILABLE, DEADLINE_EXCEEDED, connect errors,
/// a TLS handshake either side refused, a connection that broke under the call).
pub const UNAVAILABLE: u8 = 3;
/// The request was refused as wrong: INVALID_ARGUMENT, NOT_FOUND, OUT_OF_RANGE, ALREADY_EXISTS.
pub const INVALID: u8 = 4;
/// The server refused for resources: RESOURCE_EXHAUSTED (not enough memory, queue full, too many
/// streams) or FAILED_PRECONDITION (model in use); also `validate` when the model does not fit.
pub const REFUSED: u8 = 5;
/// The server does not implement this call yet (UNIMPLEMENTED).
pub const UNIMPLEMENTED: u8 = 6;
/// The server refused the credentials: UNAUTHENTICATED (no token, or one it does not accept) or
/// PERMISSION_DENIED (the token's role does not allow the call).
pub const NOT_ALLOWED: u8 = 7;
/// Interrupted by Ctrl-C (`generate` keeps the file of what arrived).
pub const INTERRUPTED: u8 = 130;

/// The exit-code table shown at the end of `maestro --help`.
pub const HELP: &str = "\
Exit codes:
  0    success
  1    other error (internal server error, local I/O)
  2    bad command-line usage
  3    server unavailable (cannot connect, TLS refused, UNAVAILABLE, DEADLINE_EXCEEDED)
  4    invalid input or not found (INVALID_ARGUMENT, NOT_FOUND, OUT_OF_RANGE)
  5    refused for resources (RESOURCE_EXHAUSTED, FAILED_PRECONDITION); `validate`: does not fit
  6    not implemented by this server (UNIMPLEMENTED)
  7    not allowed (UNAUTHENTICATED, PERMISSION_DENIED): missing or wrong token, or too few rights
  130  interrupted by Ctrl-C";

/// A failed command: the exit code and the line to print (empty prints nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The process exit code.
    pub code: u8,
    /// One line, without the `maestro: ` prefix.
    pub message: String,
}

impl Failure {
    /// A failure with `code`, flattening `message` onto one line.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        let message: String = message.into();
        Self { code, message: one_line(&message) }
    }

    /// The server at `addr` could not be reached; `err`'s whole source chain says why.
    pub fn unavailable(addr: &str, err: &(dyn std::error::Error + 'static)) -> Self {
        Self::new(UNAVAILABLE, format!("UNAVAILABLE: cannot connect to {addr}: {}", chain(err)))
    }

    /// A local I/O problem, naming what was being done.
    pub fn io(context: impl Display, err: impl Display) -> Self {
        Self::new(GENERAL, format!("{context}: {err}"))
    }

    /// An exit with `code` and nothing printed (the output already said why).
    pub fn silent(code: u8) -> Self {
        Self { code, message: String::new() }
    }
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        // tonic's own status for a connection that broke under the call (a TLS peer that refused the
        // client certificate, a plaintext client on a TLS port): it carries the transport error as
        // its source, and says UNKNOWN, CANCELLED or INTERNAL, which would read as a server fault or
        // Ctrl-C. A status the server sent has no source.
        if let Some(source) = std::error::Error::source(&status) {
            let transport = [Code::Unknown, Code::Cancelled, Code::Internal, Code::Unavailable];
            if transport.contains(&status.code()) {
                return Self::new(
                    UNAVAILABLE,
                    format!("UNAVAILABLE: the connection failed: {}", chain(source)),
                );
            }
        }
        let mut message = format!("{}: {}", code_name(status.code()), status.message());
        if status.message().is_empty() {
            message.truncate(message.len() - 2);
        }
        Self::new(exit_code(status.code()), message)
    }
}

/// The exit code of a failed call with `code`.
pub fn exit_code(code: Code) -> u8 {
    match code {
        Code::Ok => SUCCESS,
        Code::Unavailable | Code::DeadlineExceeded => UNAVAILABLE,
        Code::InvalidArgument | Code::NotFound | Code::OutOfRange | Code::AlreadyExists => INVALID,
        Code::ResourceExhausted | Code::FailedPrecondition => REFUSED,
        Code::Unimplemented => UNIMPLEMENTED,
        Code::Unauthenticated | Code::PermissionDenied => NOT_ALLOWED,
        Code::Cancelled => INTERRUPTED,
        _ => GENERAL,
    }
}

/// The canonical upper-case name of a gRPC status code, as grpcurl and the specs spell it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// An error and its sources joined with ": " (tonic's transport error alone says only
/// "transport error"; the reason is further down the chain).
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_of_status_has_its_exit_code() {
        assert_eq!(exit_code(Code::Unavailable), UNAVAILABLE);
        assert_eq!(exit_code(Code::InvalidArgument), INVALID);
        assert_eq!(exit_code(Code::NotFound), INVALID);
        assert_eq!(exit_code(Code::ResourceExhausted), REFUSED);
        assert_eq!(exit_code(Code::Unimplemented), UNIMPLEMENTED);
        assert_eq!(exit_code(Code::Unauthenticated), NOT_ALLOWED);
        assert_eq!(exit_code(Code::PermissionDenied), NOT_ALLOWED);
        assert_eq!(exit_code(Code::Internal), GENERAL);
    }

    #[test]
    fn a_status_becomes_one_line_with_its_code() {
        let f = Failure::from(tonic::Status::invalid_argument("batch_size must be\nwithin 1..=64"));
        assert_eq!(f.code, INVALID);
        assert_eq!(f.message, "INVALID_ARGUMENT: batch_size must be within 1..=64");
        assert_eq!(Failure::from(tonic::Status::internal("")).message, "INTERNAL");
    }

    #[test]
    fn a_broken_connection_is_unavailable_not_a_cancellation() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "peer sent a fatal alert");
        let mut status = tonic::Status::cancelled("operation was canceled");
        status.set_source(std::sync::Arc::new(io));
        let f = Failure::from(status);
        assert_eq!(f.code, UNAVAILABLE);
        assert!(f.message.contains("fatal alert"), "{}", f.message);
        assert_eq!(Failure::from(tonic::Status::cancelled("by the server")).code, INTERRUPTED);
    }
}
